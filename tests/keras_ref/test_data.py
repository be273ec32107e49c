"""The embedded digits: deterministic, stratified, disjoint splits with stable ids; a portable resize."""

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from keras_ref.data import array_sha256, ids_sha256, load_digits_split
from keras_ref.digits import SPLITS, resize_bilinear, stratified_split


@pytest.fixture(scope="module")
def digits():
    return load_digits_split()


def test_splits_are_disjoint_sorted_and_cover_every_digit_once(digits):
    ids = [digits[s][2] for s in SPLITS]
    for part in ids:
        assert np.all(np.diff(part) > 0)
    together = np.concatenate(ids)
    assert len(together) == len(set(together.tolist())) == 1797
    assert set(together.tolist()) == set(range(1797))


def test_split_is_stratified_60_20_20(digits):
    target = load_digits().target
    for c in range(10):
        n_class = int((target == c).sum())
        counts = {s: int((digits[s][1] == c).sum()) for s in SPLITS}
        assert counts["val"] == round(0.2 * n_class) and counts["test"] == round(0.2 * n_class)
        assert sum(counts.values()) == n_class


def test_labels_and_pixels_belong_to_the_ids(digits):
    bunch = load_digits()
    x, y, ids = digits["test"]
    np.testing.assert_array_equal(y, bunch.target[ids])
    assert x.shape == (len(ids), 32, 32, 1) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    # An 8 -> 32 bilinear upscale keeps each 4x4 block's center region close to the source pixel.
    src = bunch.images[ids[0]] / 16.0
    assert abs(x[0, 13:15, 13:15, 0].mean() - src[3:4, 3:4].mean()) < 0.25


def test_same_seed_same_bits_and_other_seed_other_split(digits):
    again = load_digits_split()
    for s in SPLITS:
        assert array_sha256(again[s][0]) == array_sha256(digits[s][0])
        assert ids_sha256(again[s][2]) == ids_sha256(digits[s][2])
    other = load_digits_split(seed=1)
    assert ids_sha256(other["test"][2]) != ids_sha256(digits["test"][2])


def test_resize_matches_pil_bilinear_on_upscales():
    rng = np.random.default_rng(3)
    for (h, w), (oh, ow) in [((8, 8), (32, 32)), ((8, 8), (13, 13)), ((5, 7), (20, 11))]:
        img = rng.random((h, w)).astype(np.float32)
        want = np.asarray(Image.fromarray(img, mode="F").resize((ow, oh), Image.BILINEAR))
        np.testing.assert_allclose(resize_bilinear(img, oh, ow), want, atol=1e-5)


def test_resize_identity_and_batch_axes():
    img = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(resize_bilinear(img, 3, 4), img)
    batch = np.stack([img, img * 2])
    out = resize_bilinear(batch, 6, 8)
    np.testing.assert_array_equal(out[1], resize_bilinear(img * 2, 6, 8))


def test_fingerprints_follow_the_documented_rule():
    import hashlib

    assert ids_sha256([3, 1, 2]) == hashlib.sha256(b"3\n1\n2").hexdigest()
    assert ids_sha256([1, 2, 3]) != ids_sha256([3, 1, 2])
    x = np.zeros((2, 2), np.float32)
    assert array_sha256(x) != array_sha256(x.astype(np.float64))
    assert array_sha256(x) != array_sha256(x.reshape(4))


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match=r"fractions must be three non-negative numbers summing to 1"):
        stratified_split([0, 1], fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match=r"size must be a positive int. Received: size=0"):
        load_digits_split(size=0)
