"""Digit scenes: the captions say what the picture shows, and the splits keep digit images apart.

The caption check does not reuse the generator's templates: it reads each caption with its own small
grammar (object phrases ``<size> <color> <digit>`` plus the relation words) and compares the result
with the scene description, which itself is checked against the pixels.
"""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from keras_ref.data import array_sha256
from keras_ref.digits import stratified_split
from keras_ref.scenes import cell_targets, digit_crops, load_digit_scenes, slot_targets

SIZES = {"small": "small", "little": "small", "large": "large", "big": "large"}
COLORS = {"red": (1, 0, 0), "green": (0, 1, 0), "blue": (0, 0, 1), "yellow": (1, 1, 0), "white": (1, 1, 1)}
DIGITS = "zero one two three four five six seven eight nine".split()


@pytest.fixture(scope="module")
def scenes():
    return load_digit_scenes(n_train=120, n_val=30, n_test=60, progress=False)


def read_caption(words):
    """Objects of a caption in left-to-right order, as (size, color, digit) triples."""
    phrases, i = [], 0
    while i < len(words):
        if words[i] in SIZES and i + 2 < len(words) and words[i + 1] in COLORS and words[i + 2] in DIGITS:
            phrases.append((SIZES[words[i]], words[i + 1], DIGITS.index(words[i + 2])))
            i += 3
        else:
            i += 1
    text = " ".join(words)
    if "to the right of" in text or ("on the right and" in text and text.index("on the right") < text.index("on the left")):
        phrases = phrases[::-1]          # the first-named object is the right one
    elif "between" in text:
        phrases = [phrases[1], phrases[0], phrases[2]]   # "B between A and C": B is the middle one
    return phrases


def test_every_caption_names_the_scene_left_to_right(scenes):
    for split in scenes.values():
        for objects, caps, toks in zip(split["scenes"], split["captions"], split["tokens"]):
            want = [(o["size"], o["color"], o["digit"]) for o in sorted(objects, key=lambda o: o["x"])]
            assert len(caps) == 5 and len(set(caps)) >= 2
            for caption, tokens in zip(caps, toks):
                assert tokens == caption.split()
                assert read_caption(tokens) == want, caption


def test_the_description_matches_the_pixels(scenes):
    digits = load_digits()
    split = scenes["test"]
    for image, objects in zip(split["images"], split["scenes"]):
        covered = np.zeros(image.shape[:2], bool)
        xs = [o["x"] for o in objects]
        assert xs == sorted(xs)
        for a, b in zip(objects, objects[1:]):
            assert a["x"] + a["px"] < b["x"]                  # side by side, never overlapping
        for k, o in enumerate(objects):                       # the k-th digit inside the k-th third
            assert 21 * k < o["x"] and o["x"] + o["px"] < 21 * (k + 1)
        for o in objects:
            assert o["digit"] == digits.target[o["digit_id"]]
            lo, hi = (11, 13) if o["size"] == "small" else (17, 19)
            assert lo <= o["px"] <= hi
            patch = image[o["y"]:o["y"] + o["px"], o["x"]:o["x"] + o["px"]]
            color = np.array(COLORS[o["color"]], np.float32)
            assert patch.max() > 0.5
            # Every lit pixel is the glyph's gray level times the named color.
            gray = patch.max(axis=-1, keepdims=True)
            np.testing.assert_allclose(patch, gray * color, atol=1e-6)
            covered[o["y"]:o["y"] + o["px"], o["x"]:o["x"] + o["px"]] = True
        assert not image[~covered].any()


def test_test_scenes_use_only_test_digit_images(scenes):
    pools = stratified_split(load_digits().target, seed=0)
    for split, data in scenes.items():
        used = {o["digit_id"] for objs in data["scenes"] for o in objs}
        assert used <= set(pools[split].tolist())


def test_deterministic_and_each_split_has_its_own_stream(scenes):
    again = load_digit_scenes(n_train=7, n_val=0, n_test=60, progress=False)
    assert array_sha256(again["test"]["images"]) == array_sha256(scenes["test"]["images"])
    assert again["test"]["captions"] == scenes["test"]["captions"]
    assert again["test"]["ids"] == scenes["test"]["ids"] == [f"scene-test-{i:05d}" for i in range(60)]
    colors = {s: [o["color"] for objs in scenes[s]["scenes"][:20] for o in objs] for s in ("train", "test")}
    assert colors["train"] != colors["test"]                  # not one stream replayed per split
    other = load_digit_scenes(n_train=0, n_val=0, n_test=60, seed=1, progress=False)
    assert array_sha256(other["test"]["images"]) != array_sha256(scenes["test"]["images"])


def test_object_counts_and_word_order_vary(scenes):
    counts = {len(objs) for objs in scenes["train"]["scenes"]}
    assert counts == {1, 2, 3}
    firsts = {cap.split()[0] + " " + cap.split()[1] for caps in scenes["train"]["captions"] for cap in caps}
    assert len(firsts) > 5


def test_pretraining_targets_follow_the_scene(scenes):
    objs = scenes["val"]["scenes"]
    slots = slot_targets(objs)
    for i, o in enumerate(objs):
        assert slots["digit_0"][i] == o[0]["digit"]
        assert slots["digit_2"][i] == (o[2]["digit"] if len(o) == 3 else 10)
    cells = cell_targets(objs, 64, 8)
    for i, o in enumerate(objs):
        occupied = cells["digit"][i] != 10
        assert occupied.sum() >= len(o)            # every glyph covers a cell center
        for obj in o:
            r, c = (obj["y"] + obj["px"] // 2) // 8, (obj["x"] + obj["px"] // 2) // 8
            assert cells["digit"][i, r, c] == obj["digit"]


def test_digit_crops_are_single_glyphs():
    x, y = digit_crops(20, "val", canvas=24)
    assert x.shape == (20, 24, 24, 3) and set(y.tolist()) <= set(range(10))
    assert all(img.max() > 0.5 for img in x)


def test_canvas_too_small_is_refused():
    with pytest.raises(ValueError, match=r"size must fit three large digits side by side \(>= 63\). Received: size=48"):
        load_digit_scenes(n_train=1, n_val=1, n_test=1, size=48, progress=False)
