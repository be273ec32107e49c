"""Conv1DTranspose and Conv2DTranspose against the real Keras layers, plus gradient checks."""

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parity.compare import own_reduction
from parity.tolerance import assert_close
from scratch.layers.base import LayerError
from scratch.layers.conv_transpose import Conv1DTranspose, Conv2DTranspose, transpose_axis
from tests.scratch.conv_pairs import check_against_keras, check_gradients, pinned

ACTIVATIONS = [None, "relu", "tanh"]
PAIRS = {1: (keras.layers.Conv1DTranspose, Conv1DTranspose), 2: (keras.layers.Conv2DTranspose, Conv2DTranspose)}


def _tf_accepts(padding, k, s, d, op):
    # TF refuses 'same' when the output's own 'same' conv would not give back the input size:
    # an even dilated kernel with output_padding 0 (see test_refuses_what_tf_refuses).
    return not (padding == "same" and op == 0 and ((k - 1) * d + 1) % 2 == 0)


@st.composite
def cases(draw):
    rank = draw(st.sampled_from([1, 2]))
    k = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    strides = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    # Keras refuses strides > 1 together with dilation > 1.
    dilation = (1,) * rank if max(strides) > 1 else tuple(draw(st.integers(1, 2)) for _ in range(rank))
    padding = draw(st.sampled_from(["valid", "same"]))
    output_padding = None
    if draw(st.booleans()):
        output_padding = tuple(draw(st.integers(0, s - 1)) for s in strides)
        if not all(_tf_accepts(padding, *a) for a in zip(k, strides, dilation, output_padding)):
            output_padding = None
    shape = (draw(st.integers(1, 3)), *[draw(st.integers(1, 6)) for _ in range(rank)], draw(st.integers(1, 3)))
    cfg = dict(filters=draw(st.integers(1, 3)), kernel_size=k, strides=strides, padding=padding,
               output_padding=output_padding, dilation_rate=dilation, activation=draw(st.sampled_from(ACTIVATIONS)),
               use_bias=draw(st.booleans()))
    return rank, cfg, shape, draw(st.integers(0, 2**31 - 1))


def _cfg(**kw):
    return dict(dict(filters=2, kernel_size=3, strides=1, padding="valid", output_padding=None, dilation_rate=1,
                     activation=None, use_bias=True), **kw)


PINS = [
    # odd sizes, 'same', stride 2
    (2, _cfg(kernel_size=3, strides=2, padding="same"), (2, 5, 7, 3)),
    (1, _cfg(kernel_size=4, strides=2, padding="same", activation="relu"), (2, 5, 2)),
    # kernel larger than the stride (overlapping contributions), and stride larger than the kernel
    (2, _cfg(kernel_size=(5, 4), strides=(2, 3), padding="valid"), (1, 3, 4, 2)),
    (2, _cfg(kernel_size=2, strides=3, padding="valid"), (2, 4, 3, 2)),       # None -> max(k, s) - k = 1
    (1, _cfg(kernel_size=2, strides=3, padding="same"), (1, 5, 2)),
    # output_padding at its maximum, stride - 1 ('same' with even and odd kernels, 'valid')
    (2, _cfg(kernel_size=(4, 3), strides=3, padding="same", output_padding=2), (2, 4, 3, 2)),
    (1, _cfg(kernel_size=3, strides=2, padding="valid", output_padding=1, activation="tanh"), (2, 4, 3)),
    (2, _cfg(kernel_size=(2, 5), strides=(2, 3), padding="same", output_padding=(1, 2)), (1, 3, 2, 3)),
    # output_padding 0 ('same' with an odd kernel; 'valid' where None would add max(k, s) - k)
    (1, _cfg(kernel_size=3, strides=2, padding="same", output_padding=0), (2, 5, 2)),
    (2, _cfg(kernel_size=1, strides=2, padding="valid", output_padding=0), (1, 3, 3, 2)),
    # dilation
    (2, _cfg(kernel_size=3, dilation_rate=2, padding="same"), (2, 4, 5, 2)),
    (1, _cfg(kernel_size=2, dilation_rate=3, padding="valid", use_bias=False), (1, 4, 3)),
    # length-1 sequences and 1x1 images
    (1, _cfg(kernel_size=3, strides=2, padding="same"), (2, 1, 3)),
    (2, _cfg(kernel_size=2, strides=2, padding="valid"), (1, 1, 1, 2)),
]


@settings(max_examples=12)
@given(case=cases())
@pinned(PINS)
def test_matches_keras_float32_and_float64(case):
    rank, cfg, shape, seed = case
    # TF's CPU Conv2DBackpropInput has no dilation in float64 (oneDNN runs float32); the float64
    # dilated cases are checked against Keras's Conv2D instead (test_dilated_float64_...).
    dilated = max(np.atleast_1d(cfg["dilation_rate"])) > 1
    check_against_keras(*PAIRS[rank], cfg, shape, seed, dtypes=("float32",) if dilated else ("float32", "float64"))


@pytest.mark.parametrize("rank, cfg, shape", [
    (2, _cfg(kernel_size=3, dilation_rate=2, padding="same", activation="tanh"), (2, 4, 5, 2)),
    (2, _cfg(kernel_size=(2, 3), dilation_rate=(3, 1), padding="valid", output_padding=0), (1, 3, 4, 3)),
    (1, _cfg(kernel_size=3, dilation_rate=2, padding="same", output_padding=0), (2, 5, 2)),
])
def test_dilated_float64_is_the_input_gradient_of_keras_conv(rank, cfg, shape):
    # tf.nn.conv_transpose is the input gradient of the convolution whose kernel it shares; TF
    # differentiates its dilated float64 Conv (space-to-batch), though not the transpose op itself.
    import tensorflow as tf

    rng = np.random.default_rng(3)
    layer = PAIRS[rank][1](**cfg).to_dtype("float64")
    layer.build(shape, rng=rng)
    x = rng.normal(size=shape)
    out_shape = layer.compute_output_shape(shape)
    conv_cls = keras.layers.Conv1D if rank == 1 else keras.layers.Conv2D
    conv = conv_cls(shape[-1], cfg["kernel_size"], strides=cfg["strides"], padding=cfg["padding"],
                    dilation_rate=cfg["dilation_rate"], use_bias=False, dtype="float64")
    conv.build(out_shape)
    conv.set_weights([layer.weights["kernel"]])            # (k..., filters, cin) = conv's (k..., in, out)
    u = tf.Variable(np.zeros(out_shape))
    with tf.GradientTape() as tape:
        inner = tf.reduce_sum(conv(u) * x)
    z = tape.gradient(inner, u).numpy() + layer.weights["bias"]
    desired = np.asarray(keras.activations.get(cfg["activation"])(z))
    assert_close(layer.forward(x), desired, kind="forward", label=f"dilated {cfg}",
                 reduction=own_reduction(type(layer).__name__, cfg, shape))


@pytest.mark.parametrize("n, k, s, d, padding, op, size, pads", [
    (5, 3, 2, 1, "same", None, 10, (0, 1)),      # n*s; the forward conv of 10 pads 1 cell, after
    (5, 4, 2, 1, "same", None, 10, (1, 1)),
    (4, 4, 3, 1, "same", 2, 11, (1, 1)),         # (n-1)*s + k%2 + op
    (4, 4, 3, 1, "same", 1, 10, (1, 2)),         # odd total: the extra cell after
    (4, 5, 3, 1, "same", 2, 12, (1, 1)),
    (3, 2, 3, 1, "valid", None, 9, (0, 0)),      # (n-1)*s + k + (max(k, s) - k)
    (3, 2, 3, 1, "valid", 0, 8, (0, 0)),
    (3, 3, 1, 2, "same", None, 3, (2, 2)),       # dilated kernel 5
])
def test_output_size_and_padding_split(n, k, s, d, padding, op, size, pads):
    assert transpose_axis(n, k, s, d, padding, op) == (size, pads)


def test_reductions():
    # An output element gathers ceil(k/s) kernel offsets per axis, each a sum over cin.
    assert own_reduction("Conv2DTranspose", dict(kernel_size=(3, 3), strides=(2, 2), activation=None),
                         (None, 4, 4, 5)) == 4 * 5
    assert own_reduction("Conv1DTranspose", dict(kernel_size=(4,), strides=(1,), activation="relu"),
                         (None, 4, 3)) == 4 * 3 + 1


# ---- gradients (float64 centered differences) --------------------------------------------------
GRADIENT_CASES = [
    ("2d-same-s2", lambda: Conv2DTranspose(3, 3, strides=2, padding="same", activation="tanh"), (2, 3, 4, 2)),
    ("2d-valid-op-max", lambda: Conv2DTranspose(2, (2, 4), strides=3, output_padding=2), (1, 3, 2, 3)),
    ("2d-dilated-nobias", lambda: Conv2DTranspose(2, 3, dilation_rate=(2, 1), padding="same", use_bias=False),
     (2, 3, 3, 2)),
    ("1d-same-op", lambda: Conv1DTranspose(3, 4, strides=2, padding="same", output_padding=1,
                                           activation="sigmoid"), (2, 4, 2)),
    ("1d-valid-stride-gt-kernel", lambda: Conv1DTranspose(2, 2, strides=3), (2, 3, 3)),
]


@pytest.mark.parametrize("label, make, shape", GRADIENT_CASES, ids=[c[0] for c in GRADIENT_CASES])
def test_gradients(label, make, shape):
    check_gradients(make, shape)


# ---- contract and errors -----------------------------------------------------------------------
def test_weights_and_dtypes():
    layer = Conv2DTranspose(4, (2, 3), strides=2)
    layer.build((None, 3, 3, 5), rng=np.random.default_rng(0))
    assert [w.shape for w in layer.get_weights()] == [(2, 3, 4, 5), (4,)]     # (kh, kw, filters, cin)
    assert layer.compute_output_shape((None, 3, 3, 5)) == (None, 6, 7, 4)
    assert layer.compute_output_shape((None, None, 3, 5)) == (None, None, 7, 4)
    assert layer.forward(np.zeros((2, 3, 3, 5))).dtype == np.float32
    assert layer.to_dtype("float64").forward(np.zeros((1, 3, 3, 5))).dtype == np.float64
    one = Conv1DTranspose(2, 3, use_bias=False)
    one.build((None, 4, 3))
    assert one.active_weight_names() == ("kernel",) and one.get_weights()[0].shape == (3, 2, 3)


@pytest.mark.parametrize("cls, kwargs, message", [
    (Conv2DTranspose, dict(filters=0, kernel_size=3), r"filters must be a positive int. Received: filters=0"),
    (Conv2DTranspose, dict(filters=2, kernel_size=3, strides=2, output_padding=2),
     r"output_padding must be strictly less than strides for all dimensions. At dimension 0, output_padding is 2 "
     r"but strides is 2. Received: output_padding=\(2, 2\), strides=\(2, 2\)"),
    (Conv1DTranspose, dict(filters=2, kernel_size=3, output_padding=-1),
     r"output_padding must be None, a non-negative int or a tuple of 1 non-negative ints"),
    (Conv2DTranspose, dict(filters=2, kernel_size=3, strides=2, dilation_rate=2),
     r"strides > 1 is not supported together with dilation_rate > 1. Received: strides=\(2, 2\), "
     r"dilation_rate=\(2, 2\)"),
    (Conv1DTranspose, dict(filters=2, kernel_size=3, padding="causal"),
     r"padding must be 'valid' or 'same'. Received: padding='causal'"),
    (Conv2DTranspose, dict(filters=2, kernel_size=3, data_format="channels_first"),
     r"Conv2DTranspose supports data_format='channels_last' only. Received: data_format='channels_first'"),
    (Conv2DTranspose, dict(filters=2, kernel_size=3, groups=2), r"Conv2DTranspose supports groups=1 only. "
                                                               r"Received: groups=2"),
])
def test_rejects_bad_arguments(cls, kwargs, message):
    with pytest.raises(LayerError, match=message):
        cls(**kwargs)


def test_refuses_what_tf_refuses():
    # 'same', even kernel, output_padding 0: O = (n-1)*s, whose 'same' conv has n-1 steps, not n.
    # TF: "Conv2DCustomBackpropInput: Size of out_backprop doesn't match computed".
    layer = Conv2DTranspose(2, 2, strides=2, padding="same", output_padding=0)
    with pytest.raises(LayerError, match=r"Conv2DTranspose: padding='same' with output_padding=0, kernel size 2 "
                                         r"and dilation 1 gives output size 8, whose 'same' convolution with "
                                         r"stride 2 has size 4, not the input size 5: TensorFlow refuses"):
        layer.build((None, 5, 5, 1))
    # The dilated kernel's size decides: k=2, d=3 spans 4 (refused); k=3, d=2 spans 5 (accepted).
    with pytest.raises(LayerError, match=r"Conv1DTranspose: padding='same' with output_padding=0, kernel size 2 "
                                         r"and dilation 3 gives output size 3, whose 'same' convolution with "
                                         r"stride 1 has size 3, not the input size 4"):
        Conv1DTranspose(1, 2, dilation_rate=3, padding="same", output_padding=0).build((None, 4, 1))
    Conv1DTranspose(1, 3, dilation_rate=2, padding="same", output_padding=0).build((None, 4, 1))


def test_rejects_bad_inputs():
    with pytest.raises(LayerError, match=r"Conv2DTranspose 't' has no weights yet"):
        Conv2DTranspose(1, 2, name="t").forward(np.zeros((1, 4, 4, 1)))
    with pytest.raises(LayerError, match=r"Conv1DTranspose expects input of rank 3 \(N, L, C\)"):
        Conv1DTranspose(1, 2).build((None, 4, 4, 1))
    layer = Conv2DTranspose(1, 2)
    layer.build((None, 4, 4, 2))
    with pytest.raises(LayerError, match=r"Conv2DTranspose 'conv2dtranspose' was built for 2 input channels"):
        layer.forward(np.zeros((1, 4, 4, 3)))
