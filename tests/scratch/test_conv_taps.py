"""Conv2D's tap form (scratch.layers.conv_taps): the stride-1 path without a patch matrix agrees
with Keras and with the im2col path, in whole-item and row blocks, with dilation and padding."""

from unittest import mock

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parity.tolerance import assert_close
from scratch import parallel
from scratch.layers import conv_taps
from scratch.layers.conv import Conv2D
from tests.scratch.conv_pairs import check_against_keras, float64_conv, form_taken, pinned

# (config, input shape): 'same' and 'valid', a non-square kernel, dilation, a 1-row image.
PINS = [
    (dict(filters=5, kernel_size=3, padding="same"), (3, 9, 7, 48)),
    (dict(filters=4, kernel_size=(2, 3), padding="valid", activation="relu"), (2, 7, 13, 50)),
    (dict(filters=3, kernel_size=3, padding="same", dilation_rate=2, use_bias=False), (2, 9, 9, 48)),
    (dict(filters=6, kernel_size=(1, 3), padding="same"), (2, 1, 11, 48)),
]


@st.composite
def tap_cases(draw):
    k = draw(st.tuples(st.integers(1, 3), st.integers(2, 3)))
    cfg = dict(filters=draw(st.integers(1, 6)), kernel_size=k, padding=draw(st.sampled_from(["same", "valid"])),
               dilation_rate=draw(st.sampled_from([1, 2])),
               activation=draw(st.sampled_from([None, "relu"])), use_bias=draw(st.booleans()))
    d = cfg["dilation_rate"]
    h = draw(st.integers((k[0] - 1) * d + 1, 8))
    w = draw(st.integers((k[1] - 1) * d + 1, 8))
    return cfg, (draw(st.integers(1, 3)), h, w, draw(st.integers(48, 56))), draw(st.integers(0, 2**16))


@settings(max_examples=6, deadline=None)
@given(case=tap_cases())
@pinned(PINS)
def test_conv2d_taps_match_keras(case):
    cfg, shape, seed = case
    with mock.patch.object(conv_taps, "TAP_MAX_WASTE", 100.0):   # small test images waste much grid
        layer = Conv2D(**cfg)
        layer.build(shape)
        assert form_taken(conv_taps.use_taps, layer, np.zeros(shape, "float32"))
        check_against_keras(keras.layers.Conv2D, Conv2D, cfg, shape, seed)


@pytest.mark.parametrize("block_bytes", [2**20, 3000, 1])
@pytest.mark.parametrize("cfg, shape", PINS)
def test_conv2d_taps_equal_im2col_in_any_blocks(cfg, shape, block_bytes, monkeypatch):
    # Whole items per block, runs of rows of one item, one row per block: the same numbers as
    # im2col, within the rounding of a kh*kw*C sum taken in another order.
    layer, x = float64_conv(cfg, shape)
    monkeypatch.setattr(conv_taps, "TAP_MAX_WASTE", 0.0)
    im2col = layer.forward(x).copy()
    monkeypatch.setattr(conv_taps, "TAP_MAX_WASTE", 100.0)
    monkeypatch.setattr(conv_taps, "TAP_BLOCK_BYTES", block_bytes)
    assert form_taken(conv_taps.use_taps, layer, x)
    kh, kw = layer.kernel_size
    assert_close(layer.forward(x), im2col, kind="forward", label=f"taps {cfg} {shape}",
                 reduction=kh * kw * shape[-1])


def test_taps_are_the_same_for_any_pool_size(monkeypatch):
    rng = np.random.default_rng(4)
    layer = Conv2D(7, 3, padding="same", activation="relu")
    x = rng.normal(size=(3, 10, 10, 64)).astype("float32")
    layer.build(x.shape, rng=rng)
    monkeypatch.setattr(conv_taps, "TAP_BLOCK_BYTES", 10 * (64 + 14) * 4 * 3)   # 3 rows per block
    outs = {}
    for workers in ("1", "2"):
        monkeypatch.setenv("SCRATCH_NUM_THREADS", workers)
        outs[workers] = layer.forward(x).copy()
    np.testing.assert_array_equal(outs["1"], outs["2"])


def test_taps_only_where_they_are_faster():
    layer = Conv2D(64, 3, padding="same")
    assert conv_taps.use_taps(layer, (8, 58, 58, 64), (56, 56))          # VGG-like: 7% grid waste
    assert not conv_taps.use_taps(layer, (8, 58, 58, 32), (56, 56))      # few channels: im2col
    assert not conv_taps.use_taps(layer, (8, 15, 15, 64), (13, 13))      # 33% of the grid wasted
    assert not conv_taps.use_taps(Conv2D(64, 3, strides=2), (8, 57, 57, 64), (28, 28))
    assert not conv_taps.use_taps(Conv2D(64, 1), (8, 56, 56, 64), (56, 56))
    assert not conv_taps.use_taps(Conv2D(64, 3, groups=2), (8, 58, 58, 64), (56, 56))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cfg, shape", PINS)
def test_taps_through_blas_gemm_round_as_through_a_temporary(cfg, shape, dtype, monkeypatch):
    # BLAS's gemm adds each tap's product into the accumulator (beta = 1); numpy's matmul cannot,
    # and goes through a temporary: each product rounded, then added; the same numbers.
    if parallel.blas_gemm(dtype) is None:
        pytest.skip("no cblas gemm in numpy's BLAS")
    rng = np.random.default_rng(5)
    layer = Conv2D(**cfg).to_dtype(dtype)
    layer.build(shape, rng=rng)
    x = rng.normal(size=shape).astype(dtype)
    monkeypatch.setattr(conv_taps, "TAP_MAX_WASTE", 100.0)
    monkeypatch.setattr(conv_taps, "TAP_BLOCK_BYTES", 3000)   # several blocks, row runs of one item
    assert form_taken(conv_taps.use_taps, layer, x)
    gemm = layer.forward(x).copy()
    monkeypatch.setattr(parallel, "blas_gemm", lambda dtype: None)
    np.testing.assert_array_equal(layer.forward(x), gemm)
