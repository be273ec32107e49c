"""Sliding-window helpers: TF's 'same' split, output sizes, window views, chunking and col2im."""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import assume, example, given
from hypothesis import strategies as st

from scratch import parallel
from scratch.layers import windows
from scratch.layers.base import LayerError


@pytest.mark.parametrize("n, k, s, d, expected", [
    (224, 7, 2, 1, (2, 3)),   # ResNet-style stem: TF pads 2 before, 3 after
    (6, 3, 2, 1, (0, 1)),     # odd total: the extra cell goes after
    (7, 3, 2, 1, (1, 1)),
    (7, 4, 2, 1, (1, 2)),
    (5, 3, 1, 2, (2, 2)),     # dilation widens the kernel to 5
    (5, 1, 1, 1, (0, 0)),
    (3, 2, 5, 1, (0, 0)),     # stride beyond the input: one window, no padding needed
    (1, 3, 1, 1, (1, 1)),
])
def test_same_padding_known_values(n, k, s, d, expected):
    assert windows.same_padding(n, k, s, d) == expected


@given(n=st.integers(1, 20), k=st.integers(1, 6), s=st.integers(1, 4), d=st.integers(1, 3))
@example(n=6, k=3, s=2, d=1)
@example(n=224, k=7, s=2, d=1)
def test_same_padding_reproduces_tensorflow_same(n, k, s, d):
    # TF's own 'SAME' conv must equal its 'VALID' conv on our explicitly padded input.
    if s > 1 and d > 1:
        d = 1  # TF refuses strides > 1 with dilation > 1
    rng = np.random.default_rng(n * 1000 + k * 100 + s * 10 + d)
    x = rng.normal(size=(1, n, 1, 1))
    kernel = rng.normal(size=(k, 1, 1, 1))
    same = tf.nn.convolution(x, kernel, strides=(s, 1), padding="SAME", dilations=(d, 1)).numpy()
    before, after = windows.same_padding(n, k, s, d)
    xp = np.pad(x, ((0, 0), (before, after), (0, 0), (0, 0)))
    valid = tf.nn.convolution(xp, kernel, strides=(s, 1), padding="VALID", dilations=(d, 1)).numpy()
    assert same.shape[1] == windows.output_length(n, k, s, d, "same")
    np.testing.assert_allclose(valid, same, rtol=1e-12, atol=1e-12)


@given(n=st.integers(1, 20), k=st.integers(1, 6), s=st.integers(1, 4), d=st.integers(1, 3))
def test_valid_output_length_matches_tensorflow(n, k, s, d):
    if s > 1 and d > 1:
        d = 1
    if (k - 1) * d + 1 > n:
        assert windows.output_length(n, k, s, d, "valid") <= 0
        return
    out = tf.nn.convolution(np.zeros((1, n, 1, 1)), np.zeros((k, 1, 1, 1)), strides=(s, 1), padding="VALID",
                            dilations=(d, 1))
    assert out.shape[1] == windows.output_length(n, k, s, d, "valid")


def test_output_length_keeps_unknown_sizes():
    assert windows.output_length(None, 3, 2, 1, "same") is None
    assert windows.output_hw((None, 5), (3, 3), (1, 1), (1, 1), "valid", "X") == (None, 3)


@given(shape=st.tuples(st.integers(1, 2), st.integers(1, 9), st.integers(1, 9), st.integers(1, 3)),
       kernel=st.tuples(st.integers(1, 3), st.integers(1, 3)), strides=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)))
def test_window_view_indexes_like_the_definition(shape, kernel, strides, dilation):
    x = np.random.default_rng(0).normal(size=shape)
    out_hw = windows.output_hw(shape[1:3], kernel, strides, dilation, "same", "test")
    xp = windows.pad_hw(x, windows.spatial_padding(shape[1:3], kernel, strides, dilation, "same"))
    win = windows.windows(xp, kernel, strides, dilation, out_hw)
    assert win.shape == (shape[0], *out_hw, *kernel, shape[3])
    for i in range(out_hw[0]):
        for j in range(out_hw[1]):
            for a in range(kernel[0]):
                for b in range(kernel[1]):
                    r, c = i * strides[0] + a * dilation[0], j * strides[1] + b * dilation[1]
                    np.testing.assert_array_equal(win[:, i, j, a, b, :], xp[:, r, c, :])


@given(n=st.integers(1, 7), rows=st.integers(1, 9), row_bytes=st.integers(1, 100), limit=st.integers(1, 2000))
@example(n=5, rows=4, row_bytes=10, limit=80)     # two items per block
@example(n=3, rows=9, row_bytes=10, limit=25)     # item too big: two rows per block
@example(n=3, rows=2, row_bytes=50, limit=10)     # one row too big: still one row per block
def test_blocks_cover_everything_once_within_the_limit(n, rows, row_bytes, limit):
    seen = np.zeros((n, rows), dtype=int)
    for bs, rs in windows.blocks(n, rows, row_bytes, limit):
        seen[bs, rs] += 1
        nbytes = (bs.stop - bs.start) * (rs.stop - rs.start) * row_bytes
        assert nbytes <= max(limit, row_bytes)
        assert rs == slice(0, rows) or bs.stop - bs.start == 1
    assert np.all(seen == 1)


@given(shape=st.tuples(st.integers(1, 3), st.integers(3, 9), st.integers(3, 9), st.integers(1, 3)),
       kernel=st.tuples(st.integers(1, 3), st.integers(1, 3)), strides=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       dilation=st.sampled_from([(1, 1), (2, 1), (1, 2)]), limit=st.sampled_from([1, 200, 10**9]))
def test_col2im_is_the_adjoint_of_patch_extraction(shape, kernel, strides, dilation, limit):
    # <patches(x), g> == <x, col2im(g)> for every x, g: the defining property of the backward scatter.
    rng = np.random.default_rng(1)
    x = rng.normal(size=shape)
    assume(all((k - 1) * d + 1 <= n for k, d, n in zip(kernel, dilation, shape[1:3])))
    out_hw = windows.output_hw(shape[1:3], kernel, strides, dilation, "valid", "test")
    win = windows.windows(x, kernel, strides, dilation, out_hw)
    g = rng.normal(size=win.shape)
    dx = np.zeros_like(x)
    lhs = 0.0
    row_bytes = out_hw[1] * kernel[0] * kernel[1] * shape[3] * 8
    for bs, rs in windows.blocks(shape[0], out_hw[0], row_bytes, limit):
        patches = windows.patch_block(win, bs, rs)
        lhs += np.sum(patches * g[bs, rs].reshape(patches.shape))
        windows.col2im_add(dx, g[bs, rs], bs, rs, strides, dilation)
    np.testing.assert_allclose(lhs, np.sum(x * dx), rtol=1e-10)


@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 9), st.integers(1, 9), st.integers(1, 4)),
       kernel=st.tuples(st.integers(1, 3), st.integers(1, 3)), strides=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       dilation=st.sampled_from([(1, 1), (2, 1), (1, 2)]), limit=st.sampled_from([1, 200, 10**9]),
       ones_row=st.booleans())
@example(shape=(2, 7, 6, 3), kernel=(3, 2), strides=(2, 1), dilation=(2, 1), limit=1, ones_row=True)
def test_transposed_patch_blocks_are_the_window_view_transposed(shape, kernel, strides, dilation, limit, ones_row):
    # Every block (whole items, or a few output rows of one item) equals its window-view patches,
    # row (a, b, c) per kernel offset and channel, plus the row of ones; the block's buffers are
    # reused, so a wrong staging offset or a stale buffer shows here.
    x = np.random.default_rng(2).normal(size=shape).astype(np.float32)
    out_hw = windows.output_hw(shape[1:3], kernel, strides, dilation, "same", "test")
    xp = windows.pad_hw(x, windows.spatial_padding(shape[1:3], kernel, strides, dilation, "same"))
    win = windows.windows(xp, kernel, strides, dilation, out_hw)
    row_bytes = out_hw[1] * kernel[0] * kernel[1] * shape[3] * 4
    for bs, rs in windows.blocks(shape[0], out_hw[0], row_bytes, limit):
        got = windows.patch_block_transposed(xp, kernel, strides, dilation, out_hw, bs, rs, ones_row=ones_row)
        want = win[bs, rs].reshape(-1, kernel[0] * kernel[1] * shape[3]).T
        np.testing.assert_array_equal(got[:want.shape[0]], want)
        assert got.shape[0] == want.shape[0] + ones_row
        if ones_row:
            assert np.all(got[-1] == 1)


def test_pad_and_crop_round_trip():
    x = np.arange(24, dtype=np.float32).reshape(1, 3, 4, 2)
    pads = ((1, 2), (0, 3))
    xp = windows.pad_hw(x, pads, value=-np.inf)
    assert xp.shape == (1, 6, 7, 2)
    assert np.isneginf(xp[:, 0]).all() and np.isneginf(xp[:, :, 4:]).all()
    np.testing.assert_array_equal(windows.crop_hw(xp, pads), x)
    assert windows.pad_hw(x, ((0, 0), (0, 0))) is x


def test_pad_on_the_pool_is_the_padded_array(monkeypatch):
    # Padded in runs of items on the engine's pool (any work counts as large here), odd pads.
    monkeypatch.setenv("SCRATCH_NUM_THREADS", "2")
    monkeypatch.setattr(parallel, "MIN_PARALLEL_COST", 0)
    x = np.random.default_rng(2).normal(size=(5, 7, 6, 3)).astype(np.float32)
    pads = ((2, 1), (0, 3))
    np.testing.assert_array_equal(windows.pad_hw(x, pads, value=-1.5),
                                  np.pad(x, ((0, 0), *pads, (0, 0)), constant_values=-1.5))


def test_patch_block_records_peak_bytes():
    windows.reset_peak_patch_bytes()
    x = np.zeros((2, 5, 5, 3), np.float32)
    win = windows.windows(x, (3, 3), (1, 1), (1, 1), (3, 3))
    windows.patch_block(win, slice(0, 2), slice(0, 3))
    assert windows.peak_patch_bytes() == 2 * 3 * 3 * 27 * 4
    windows.reset_peak_patch_bytes()
    assert windows.peak_patch_bytes() == 0


def test_errors():
    with pytest.raises(LayerError, match=r"padding must be 'valid' or 'same'. Received: padding='causal'"):
        windows.normalize_padding("causal")
    assert windows.normalize_padding("SAME") == "same"
    with pytest.raises(LayerError, match=r"Foo supports data_format='channels_last' only. "
                                         r"Received: data_format='channels_first'"):
        windows.check_channels_last("Foo", "channels_first")
    with pytest.raises(LayerError, match=r"Bar: computed output size would be zero or negative for input size "
                                         r"\(2, 9\), kernel \(3, 3\), strides \(1, 1\), dilation \(1, 1\), "
                                         r"padding='valid'"):
        windows.output_hw((2, 9), (3, 3), (1, 1), (1, 1), "valid", "Bar")
