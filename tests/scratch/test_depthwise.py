"""DepthwiseConv1D/2D and SeparableConv1D/2D against the real Keras layers, plus gradient checks."""

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parity.compare import own_reduction
from scratch.layers import depthwise
from scratch.layers.base import LayerError
from scratch.layers.depthwise import DepthwiseConv1D, DepthwiseConv2D, SeparableConv1D, SeparableConv2D
from tests.scratch.conv_pairs import check_against_keras, check_gradients, pinned

ACTIVATIONS = [None, "relu", "tanh"]
PAIRS = {
    (1, False): (keras.layers.DepthwiseConv1D, DepthwiseConv1D),
    (2, False): (keras.layers.DepthwiseConv2D, DepthwiseConv2D),
    (1, True): (keras.layers.SeparableConv1D, SeparableConv1D),
    (2, True): (keras.layers.SeparableConv2D, SeparableConv2D),
}


@st.composite
def cases(draw):
    rank, separable = draw(st.sampled_from(sorted(PAIRS)))
    k = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    strides = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    # Keras takes strides > 1 with dilation > 1 here (its TF backend subsamples a stride-1 conv).
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(rank))
    if rank == 2 and max(dilation) == 1:
        strides = (strides[0], strides[0])     # TF refuses unequal depthwise strides (tested below)
    padding = draw(st.sampled_from(["valid", "same"]))
    size = [draw(st.integers((kk - 1) * d + 1 if padding == "valid" else 1, 10)) for kk, d in zip(k, dilation)]
    shape = (draw(st.integers(1, 3)), *size, draw(st.integers(1, 3)))
    cfg = dict(kernel_size=k, strides=strides, padding=padding, dilation_rate=dilation,
               depth_multiplier=draw(st.integers(1, 3)), activation=draw(st.sampled_from(ACTIVATIONS)),
               use_bias=draw(st.booleans()))
    if separable:
        cfg["filters"] = draw(st.integers(1, 3))
    return (rank, separable), cfg, shape, draw(st.integers(0, 2**31 - 1))


def _cfg(**kw):
    return dict(dict(kernel_size=3, strides=1, padding="valid", dilation_rate=1, depth_multiplier=1,
                     activation=None, use_bias=True), **kw)


PINS = [
    # odd sizes, 'same', stride 2: the odd padding cell bottom/right
    ((2, False), _cfg(kernel_size=4, strides=2, padding="same"), (2, 7, 9, 3)),
    ((2, True), _cfg(kernel_size=3, strides=2, padding="same", filters=4, activation="relu"), (1, 7, 6, 2)),
    # kernel larger than the stride, and stride larger than the kernel
    ((1, False), _cfg(kernel_size=5, strides=3, padding="same", depth_multiplier=2), (2, 11, 3)),
    ((2, False), _cfg(kernel_size=2, strides=3, padding="valid"), (1, 10, 8, 2)),
    # depth_multiplier > 1: output channel c*dm + m comes from input channel c
    ((2, False), _cfg(kernel_size=(2, 3), depth_multiplier=3, padding="same", activation="tanh"), (2, 5, 6, 2)),
    ((1, True), _cfg(kernel_size=3, depth_multiplier=2, filters=3, padding="same"), (2, 6, 3)),
    # dilation, also together with strides > 1
    ((2, True), _cfg(kernel_size=3, dilation_rate=2, padding="same", filters=2, depth_multiplier=2), (1, 8, 7, 3)),
    ((2, False), _cfg(kernel_size=3, strides=2, dilation_rate=2, padding="same"), (2, 9, 8, 2)),
    ((1, True), _cfg(kernel_size=2, strides=2, dilation_rate=3, padding="valid", filters=2), (1, 9, 2)),
    # unequal strides: TF's depthwise op refuses them, but not its strided-dilated path
    ((2, False), _cfg(kernel_size=2, strides=(2, 3), dilation_rate=(2, 1), padding="same"), (1, 9, 10, 2)),
    ((2, True), _cfg(kernel_size=2, strides=(1, 2), filters=2, dilation_rate=(1, 2), padding="same"), (2, 5, 7, 2)),
    # length-1 sequences and 1x1 images
    ((1, False), _cfg(kernel_size=3, padding="same", depth_multiplier=2), (2, 1, 3)),
    ((1, True), _cfg(kernel_size=1, filters=2, use_bias=False), (1, 1, 2)),
    ((2, True), _cfg(kernel_size=3, strides=2, padding="same", filters=2), (2, 1, 1, 3)),
]


@settings(max_examples=12)
@given(case=cases())
@pinned(PINS)
def test_matches_keras_float32_and_float64(case):
    kind, cfg, shape, seed = case
    check_against_keras(*PAIRS[kind], cfg, shape, seed)


def test_output_channel_order_is_c_times_dm_plus_m():
    # One input channel lit at a time: with a 1x1 kernel, output channel c*dm + m is x_c * K[c, m].
    layer = DepthwiseConv2D(1, depth_multiplier=2, use_bias=False)
    layer.build((None, 1, 1, 3))
    layer.set_weights([np.arange(1.0, 7.0).reshape(1, 1, 3, 2)])
    y = layer.forward(np.array([1.0, 10.0, 100.0]).reshape(1, 1, 1, 3))
    np.testing.assert_array_equal(y.ravel(), [1, 2, 30, 40, 500, 600])


def test_reductions():
    assert own_reduction("DepthwiseConv2D", dict(kernel_size=(3, 3), activation="linear"), (None, 8, 8, 5)) == 9
    assert own_reduction("DepthwiseConv1D", dict(kernel_size=(5,), activation="relu"), (None, 8, 5)) == 6
    assert own_reduction("SeparableConv2D", dict(kernel_size=(3, 3), depth_multiplier=2, activation=None),
                         (None, 8, 8, 5)) == 9 * 5 * 2
    assert own_reduction("SeparableConv1D", dict(kernel_size=(3,), depth_multiplier=1, activation="tanh"),
                         (None, 8, 4)) == 3 * 4 + 1


# ---- gradients (float64 centered differences) --------------------------------------------------
GRADIENT_CASES = [
    ("dw2d-same-s2-dm2", lambda: DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2,
                                                 activation="tanh"), (2, 5, 6, 2)),
    ("dw2d-dilated-strided", lambda: DepthwiseConv2D((2, 3), strides=2, dilation_rate=2, padding="same"),
     (1, 7, 6, 3)),
    ("dw1d-valid-nobias", lambda: DepthwiseConv1D(3, strides=2, use_bias=False), (2, 8, 3)),
    ("sep2d-same-dm2", lambda: SeparableConv2D(3, 3, strides=2, padding="same", depth_multiplier=2,
                                               activation="sigmoid"), (2, 5, 4, 2)),
    ("sep1d-dilated", lambda: SeparableConv1D(2, 2, dilation_rate=2, padding="same", depth_multiplier=3),
     (2, 7, 2)),
    ("sep1d-nobias", lambda: SeparableConv1D(2, 3, use_bias=False), (1, 6, 3)),
]


@pytest.mark.parametrize("label, make, shape", GRADIENT_CASES, ids=[c[0] for c in GRADIENT_CASES])
def test_gradients(label, make, shape):
    check_gradients(make, shape)


# ---- contract and errors -----------------------------------------------------------------------
def test_weights_and_dtypes():
    layer = SeparableConv1D(4, 3, depth_multiplier=2)
    layer.build((None, 9, 3), rng=np.random.default_rng(0))
    assert [w.shape for w in layer.get_weights()] == [(3, 3, 2), (1, 6, 4), (4,)]
    assert SeparableConv1D(4, 3, padding="same").compute_output_shape((None, None, 3)) == (None, None, 4)
    assert DepthwiseConv2D(3, strides=2, depth_multiplier=2, padding="same").compute_output_shape(
        (None, None, 7, 3)) == (None, None, 4, 6)
    assert layer.forward(np.zeros((2, 9, 3))).dtype == np.float32
    assert layer.to_dtype("float64").forward(np.zeros((1, 9, 3))).dtype == np.float64
    dw = DepthwiseConv2D(3, depth_multiplier=2, use_bias=False)
    dw.build((None, 5, 5, 3))
    assert dw.active_weight_names() == ("kernel",) and dw.get_weights()[0].shape == (3, 3, 3, 2)
    with pytest.raises(LayerError, match=r"weight 'kernel' has shape \(3, 3, 2, 2\), expected \(3, 3, 3, 2\)"):
        dw.set_weights([np.zeros((3, 3, 2, 2))])


@pytest.mark.parametrize("cls, kwargs, message", [
    (DepthwiseConv2D, dict(kernel_size=3, depth_multiplier=0),
     r"depth_multiplier must be a positive int. Received: depth_multiplier=0"),
    (DepthwiseConv2D, dict(kernel_size=0), r"kernel_size must be a positive int or a tuple of 2 positive ints"),
    (DepthwiseConv1D, dict(kernel_size=3, strides=0), r"strides must be a positive int or a tuple of 1 positive"),
    (DepthwiseConv1D, dict(kernel_size=3, padding="causal"),
     r"padding must be 'valid' or 'same'. Received: padding='causal'"),
    (DepthwiseConv2D, dict(kernel_size=3, data_format="channels_first"),
     r"DepthwiseConv2D supports data_format='channels_last' only. Received: data_format='channels_first'"),
    (DepthwiseConv2D, dict(kernel_size=2, strides=(1, 2)),
     r"DepthwiseConv2D: TensorFlow's depthwise convolution supports only equal strides .* "
     r"Received: strides=\(1, 2\)"),
    (SeparableConv2D, dict(filters=2, kernel_size=2, strides=(2, 1), dilation_rate=1),
     r"SeparableConv2D: TensorFlow's depthwise convolution supports only equal strides"),
    (SeparableConv2D, dict(filters=0, kernel_size=3), r"filters must be a positive int. Received: filters=0"),
    (SeparableConv1D, dict(filters=2, kernel_size=3, activation="swishy"),
     r"activation 'swishy' is not supported"),
    (SeparableConv2D, dict(filters=2, kernel_size=3, groups=2),
     r"SeparableConv2D supports groups=1 only. Received: groups=2"),
    (DepthwiseConv1D, dict(kernel_size=3, groups=3), r"DepthwiseConv1D supports groups=1 only. Received: groups=3"),
    (SeparableConv2D, dict(filters=2, kernel_size=3, bogus=1), r"SeparableConv2D got unsupported arguments: "
                                                               r"\['bogus'\]"),
])
def test_rejects_bad_arguments(cls, kwargs, message):
    with pytest.raises(LayerError, match=message):
        cls(**kwargs)


def test_blocks_of_rows_match_one_block(monkeypatch):
    # Cache-sized blocks split the batch and then the output rows; every split must agree.
    rng = np.random.default_rng(5)
    layer = SeparableConv2D(3, 3, strides=2, padding="same", depth_multiplier=2, dtype="float64")
    shape = (3, 9, 8, 2)
    layer.build(shape, rng=rng)
    x, dout = rng.normal(size=shape), rng.normal(size=layer.compute_output_shape(shape))

    def run():
        y = layer.forward(x)
        return [y, layer.backward(dout)] + [layer.grads[n].copy() for n in layer.active_weight_names()]

    whole = run()
    for limit in (1, 200):            # one output row per block; a few rows per block
        monkeypatch.setattr(depthwise, "BLOCK_BYTES", limit)
        for got, want in zip(run(), whole):
            np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)


def test_rejects_bad_inputs():
    with pytest.raises(LayerError, match=r"DepthwiseConv2D 'd' has no weights yet: call build"):
        DepthwiseConv2D(3, name="d").forward(np.zeros((1, 4, 4, 1)))
    with pytest.raises(LayerError, match=r"DepthwiseConv1D expects input of rank 3 \(N, L, C\). "
                                         r"Received: input_shape=\(None, 4, 4, 1\)"):
        DepthwiseConv1D(3).build((None, 4, 4, 1))
    with pytest.raises(LayerError, match=r"SeparableConv2D: computed output size would be zero or negative"):
        SeparableConv2D(2, 5).build((None, 4, 6, 1))
    layer = SeparableConv1D(2, 2)
    layer.build((None, 5, 2))
    with pytest.raises(LayerError, match=r"SeparableConv1D 'separableconv1d' was built for 2 input channels. "
                                         r"Received: input shape \(1, 5, 3\)"):
        layer.forward(np.zeros((1, 5, 3)))
