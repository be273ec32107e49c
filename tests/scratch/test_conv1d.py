"""Conv1D against the real Keras layer, gradient checks, and a model of every new convolution layer
loaded from .keras and legacy .h5."""

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scratch.layers.base import LayerError
from scratch.layers.conv1d import Conv1D
from tests.scratch.conv_pairs import check_against_keras, check_gradients, pinned
from tests.scratch.test_loader import check_model, randomize, save_all

layers = keras.layers


@st.composite
def cases(draw):
    k = draw(st.integers(1, 5))
    strides = draw(st.integers(1, 3))
    # Keras refuses strides > 1 together with dilation > 1.
    dilation = 1 if strides > 1 else draw(st.integers(1, 3))
    padding = draw(st.sampled_from(["valid", "same", "causal"]))
    groups = draw(st.sampled_from([1, 1, 2]))
    length = draw(st.integers((k - 1) * dilation + 1 if padding == "valid" else 1, 12))
    shape = (draw(st.integers(1, 3)), length, groups * draw(st.integers(1, 2)))
    cfg = dict(filters=groups * draw(st.integers(1, 2)), kernel_size=k, strides=strides, padding=padding,
               dilation_rate=dilation, groups=groups, activation=draw(st.sampled_from([None, "relu", "tanh"])),
               use_bias=draw(st.booleans()))
    return cfg, shape, draw(st.integers(0, 2**31 - 1))


def _cfg(**kw):
    return dict(dict(filters=3, kernel_size=3, strides=1, padding="valid", dilation_rate=1, groups=1,
                     activation=None, use_bias=True), **kw)


PINS = [
    # odd lengths, 'same', stride 2: the odd padding cell on the right
    (_cfg(kernel_size=4, strides=2, padding="same"), (2, 7, 3)),
    (_cfg(kernel_size=3, strides=2, padding="same", activation="relu"), (1, 9, 2)),
    # kernel larger than the stride, stride larger than the kernel
    (_cfg(kernel_size=5, strides=2, padding="valid"), (2, 10, 2)),
    (_cfg(kernel_size=2, strides=3, padding="same"), (1, 11, 2)),
    # causal, with dilation (left padding (k-1)*d) and with strides
    (_cfg(kernel_size=3, dilation_rate=2, padding="causal", activation="tanh"), (2, 8, 2)),
    (_cfg(kernel_size=2, dilation_rate=3, padding="causal", use_bias=False), (1, 5, 3)),
    (_cfg(kernel_size=4, strides=3, padding="causal"), (2, 8, 2)),
    # dilation with 'same', groups
    (_cfg(kernel_size=3, dilation_rate=3, padding="same"), (2, 7, 2)),
    (_cfg(filters=4, kernel_size=3, groups=2, strides=2, padding="same"), (2, 6, 4)),
    # length-1 sequences
    (_cfg(kernel_size=3, padding="causal"), (2, 1, 3)),
    (_cfg(kernel_size=3, strides=2, padding="same"), (1, 1, 2)),
    (_cfg(kernel_size=1, filters=2), (2, 1, 1)),
]


@settings(max_examples=12)
@given(case=cases())
@pinned(PINS)
def test_matches_keras_float32_and_float64(case):
    check_against_keras(layers.Conv1D, Conv1D, *case)


def test_causal_output_never_sees_the_future():
    layer = Conv1D(2, 3, dilation_rate=2, padding="causal")
    layer.build((None, 9, 1), rng=np.random.default_rng(0))
    x = np.random.default_rng(1).normal(size=(1, 9, 1))
    later = x.copy()
    later[:, 5:] += 1.0
    y, y_later = layer.forward(x), layer.forward(later)
    np.testing.assert_array_equal(y[:, :5], y_later[:, :5])
    assert not np.allclose(y[:, 5:], y_later[:, 5:])


# ---- gradients (float64 centered differences) --------------------------------------------------
GRADIENT_CASES = [
    ("causal-dilated", lambda: Conv1D(3, 3, dilation_rate=2, padding="causal", activation="tanh"), (2, 7, 2)),
    ("same-s2-groups", lambda: Conv1D(4, 4, strides=2, padding="same", groups=2), (2, 7, 4)),
    ("valid-nobias", lambda: Conv1D(2, 2, strides=3, use_bias=False), (1, 8, 3)),
]


@pytest.mark.parametrize("label, make, shape", GRADIENT_CASES, ids=[c[0] for c in GRADIENT_CASES])
def test_gradients(label, make, shape):
    check_gradients(make, shape)


# ---- contract and errors -----------------------------------------------------------------------
def test_weights_and_dtypes():
    layer = Conv1D(4, 3, groups=2, padding="causal")
    layer.build((None, 6, 6), rng=np.random.default_rng(0))
    assert [w.shape for w in layer.get_weights()] == [(3, 3, 4), (4,)]
    assert layer.compute_output_shape((None, 6, 6)) == (None, 6, 4)
    assert layer.compute_output_shape((None, None, 6)) == (None, None, 4)
    assert layer.forward(np.zeros((2, 6, 6))).dtype == np.float32
    assert layer.to_dtype("float64").forward(np.zeros((1, 6, 6))).dtype == np.float64


@pytest.mark.parametrize("kwargs, message", [
    (dict(filters=0, kernel_size=3), r"filters must be a positive int. Received: filters=0"),
    (dict(filters=2, kernel_size=3, padding="full"),
     r"padding must be 'valid' or 'same' or 'causal'. Received: padding='full'"),
    (dict(filters=2, kernel_size=(3, 3)), r"kernel_size must be a positive int or a tuple of 1 positive ints"),
    (dict(filters=2, kernel_size=3, strides=2, dilation_rate=2),
     r"strides > 1 is not supported together with dilation_rate > 1. Received: strides=\(2,\), dilation_rate=\(2,\)"),
    (dict(filters=3, kernel_size=3, groups=2), r"filters must be divisible by groups. Received: filters=3, groups=2"),
    (dict(filters=2, kernel_size=3, data_format="channels_first"),
     r"Conv1D supports data_format='channels_last' only. Received: data_format='channels_first'"),
])
def test_rejects_bad_arguments(kwargs, message):
    with pytest.raises(LayerError, match=message):
        Conv1D(**kwargs)


def test_rejects_bad_inputs():
    with pytest.raises(LayerError, match=r"Conv1D 'c' has no weights yet"):
        Conv1D(1, 2, name="c").forward(np.zeros((1, 4, 1)))
    with pytest.raises(LayerError, match=r"Conv1D expects input of rank 3 \(N, L, C\)"):
        Conv1D(1, 2).build((None, 4, 4, 1))
    with pytest.raises(LayerError, match=r"input channels must be divisible by groups. Received: channels=3"):
        Conv1D(2, 2, groups=2).build((None, 4, 3))
    with pytest.raises(LayerError, match=r"computed output size would be zero or negative"):
        Conv1D(1, 5).build((None, 4, 1))
    layer = Conv1D(1, 2)
    layer.build((None, 4, 2))
    with pytest.raises(LayerError, match=r"Conv1D 'conv1d' was built for 2 input channels"):
        layer.forward(np.zeros((1, 4, 3)))


# ---- a model of every new convolution, loaded from both formats -------------------------------
def test_model_of_the_new_convolutions_loads_and_predicts(tmp_path):
    inp = keras.Input((12, 3), name="seq")
    h = layers.Conv1D(4, 3, dilation_rate=2, padding="causal", activation="relu", name="causal")(inp)
    h = layers.SeparableConv1D(4, 3, strides=2, padding="same", depth_multiplier=2, name="sep1d")(h)
    h = layers.DepthwiseConv1D(3, depth_multiplier=2, padding="same", activation="tanh", name="dw1d")(h)
    h = layers.Conv1DTranspose(4, 3, strides=2, padding="same", output_padding=1, name="convt1d")(h)  # (12, 4)
    h = layers.Reshape((4, 3, 4))(h)
    h = layers.Conv2DTranspose(3, (3, 2), strides=2, padding="valid", name="convt2d")(h)
    h = layers.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2, name="dw2d")(h)
    h = layers.SeparableConv2D(4, 2, padding="valid", activation="relu", name="sep2d")(h)
    out = layers.Dense(3, name="head")(layers.Flatten()(h))
    model = randomize(keras.Model(inp, out), seed=3)
    x = np.random.default_rng(4).normal(size=(5, 12, 3)).astype("float32")
    check_model(model, x, save_all(model, tmp_path, "convs", formats=("keras", "h5")), label="new convs")


def test_tf_keras_file_of_the_new_convolutions_loads_and_predicts(tmp_path):
    # tf_keras writes groups=1 into transposed/depthwise/separable configs and names the depthwise
    # weight depthwise_kernel; the weights still come in Keras's order.
    import tf_keras

    tl = tf_keras.layers
    model = tf_keras.Sequential([
        tf_keras.Input((10, 2)),
        tl.Conv1D(4, 3, padding="causal", dilation_rate=2, name="causal"),
        tl.DepthwiseConv1D(3, depth_multiplier=2, padding="same", name="dw1d"),
        tl.SeparableConv1D(3, 2, strides=2, name="sep1d"),
        tl.Conv1DTranspose(2, 3, strides=2, padding="same", name="convt1d"),
        tl.Reshape((2, 5, 2)),
        tl.Conv2DTranspose(2, 2, strides=2, name="convt2d"),
        tl.Flatten(),
        tl.Dense(2, name="head"),
    ])
    randomize(model, seed=5)
    x = np.random.default_rng(6).normal(size=(4, 10, 2)).astype("float32")
    check_model(model, x, save_all(model, tmp_path, "tfk", formats=("h5",)), label="tf_keras convs")
