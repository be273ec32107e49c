"""Conv2D's Winograd form (scratch.layers.conv_winograd): F(2x2, 3x3) agrees with Keras within the
same tolerance as the direct forms, in float32 and float64, on odd and even sizes, 'same' and
'valid', and with the im2col path; it is taken only for the layers it is meant for."""

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parity.tolerance import assert_close
from scratch.layers import conv_taps, conv_winograd
from scratch.layers.conv import Conv2D
from tests.scratch.conv_pairs import check_against_keras, float64_conv, form_taken, pinned

# (config, input shape): odd and even outputs, a 1x1 output, one row, one item, 'valid' and 'same'.
PINS = [
    (dict(filters=5, kernel_size=3, padding="same"), (3, 9, 7, 6)),
    (dict(filters=4, kernel_size=3, padding="valid", activation="relu"), (2, 8, 11, 5)),
    (dict(filters=3, kernel_size=3, padding="valid", use_bias=False), (1, 3, 3, 7)),
    (dict(filters=6, kernel_size=(3, 3), padding="same"), (2, 1, 10, 4)),
]


@pytest.fixture(autouse=True)
def small_layers_take_winograd(monkeypatch):
    monkeypatch.setattr(conv_winograd, "WINOGRAD_MIN_CHANNELS", 1)
    monkeypatch.setattr(conv_winograd, "WINOGRAD_MIN_TILES", 1)


@st.composite
def winograd_cases(draw):
    cfg = dict(filters=draw(st.integers(1, 7)), kernel_size=3, padding=draw(st.sampled_from(["same", "valid"])),
               activation=draw(st.sampled_from([None, "relu"])), use_bias=draw(st.booleans()))
    h, w = draw(st.integers(3, 9)), draw(st.integers(3, 9))
    return cfg, (draw(st.integers(1, 3)), h, w, draw(st.integers(1, 9))), draw(st.integers(0, 2**16))


@settings(max_examples=8, deadline=None)
@given(case=winograd_cases())
@pinned(PINS)
def test_conv2d_winograd_matches_keras(case):
    cfg, shape, seed = case
    layer = Conv2D(**cfg)
    layer.build(shape)
    assert form_taken(conv_winograd.use_winograd, layer, np.zeros(shape, "float32"))
    check_against_keras(keras.layers.Conv2D, Conv2D, cfg, shape, seed)


@pytest.mark.parametrize("block_bytes", [2**23, 5000, 1])
@pytest.mark.parametrize("cfg, shape", PINS)
def test_conv2d_winograd_equals_im2col_in_any_blocks(cfg, shape, block_bytes, monkeypatch):
    # Whole items per block, runs of tile rows of one item, one tile row per block.
    layer, x = float64_conv(cfg, shape)
    monkeypatch.setattr(conv_winograd, "WINOGRAD_MIN_CHANNELS", 10**9)
    monkeypatch.setattr(conv_taps, "TAP_MAX_WASTE", 0.0)
    im2col = layer.forward(x).copy()
    monkeypatch.setattr(conv_winograd, "WINOGRAD_MIN_CHANNELS", 1)
    monkeypatch.setattr(conv_winograd, "WINOGRAD_BLOCK_BYTES", block_bytes)
    assert form_taken(conv_winograd.use_winograd, layer, x)
    assert_close(layer.forward(x), im2col, kind="forward", label=f"winograd {cfg} {shape}",
                 reduction=9 * shape[-1])


def test_kernel_transform_is_g_g_gt():
    g = np.random.default_rng(4).normal(size=(3, 3, 2, 5))
    G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
    np.testing.assert_allclose(conv_winograd.transform_kernel(g).reshape(4, 4, 2, 5),
                               np.einsum("ai,ijcf,bj->abcf", G, g, G), rtol=1e-14, atol=1e-14)


def test_winograd_only_where_it_is_meant(monkeypatch):
    monkeypatch.setattr(conv_winograd, "WINOGRAD_MIN_CHANNELS", 256)
    monkeypatch.setattr(conv_winograd, "WINOGRAD_MIN_TILES", 256)
    use = conv_winograd.use_winograd
    assert use(Conv2D(256, 3, padding="same"), (8, 26, 26, 256), (24, 24))        # VGG's 24x24 stage
    assert use(Conv2D(512, 3, padding="same"), (8, 14, 14, 512), (12, 12))
    assert not use(Conv2D(512, 3, padding="same"), (8, 8, 8, 512), (6, 6))        # 72 tiles
    assert not use(Conv2D(128, 3, padding="same"), (8, 50, 50, 128), (48, 48))    # too few channels
    assert not use(Conv2D(128, 3, padding="same"), (8, 26, 26, 256), (24, 24))    # too few filters
    assert not use(Conv2D(256, 3, strides=2), (8, 25, 25, 256), (12, 12))
    assert not use(Conv2D(256, 3, dilation_rate=2), (8, 28, 28, 256), (24, 24))
    assert not use(Conv2D(256, 3, groups=2), (8, 26, 26, 256), (24, 24))
    assert not use(Conv2D(256, 5, padding="same"), (8, 28, 28, 256), (24, 24))


def test_conv2d_winograd_at_vgg_size_matches_keras():
    # The sizes the path is taken for by default (no lowered thresholds): 256 channels, 256 tiles.
    cfg, shape = dict(filters=256, kernel_size=3, padding="same", activation="relu"), (4, 16, 16, 256)
    layer = Conv2D(**cfg)
    layer.build(shape)
    conv_winograd.WINOGRAD_MIN_CHANNELS, conv_winograd.WINOGRAD_MIN_TILES = 256, 256   # restored by the fixture
    assert form_taken(conv_winograd.use_winograd, layer, np.zeros(shape, "float32"))
    stats = check_against_keras(keras.layers.Conv2D, Conv2D, cfg, shape, seed=11)
    assert all(s["passed"] for s in stats.values())
