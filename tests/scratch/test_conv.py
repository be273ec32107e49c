"""Conv2D, LocallyConnected2D and ZeroPadding2D against the real Keras layers, plus gradient checks."""

import warnings

import keras
import numpy as np
import pytest
import tf_keras
from hypothesis import example, given
from hypothesis import strategies as st

from parity.tolerance import assert_close, compare
from scratch.layers import conv_forward, windows
from scratch.layers.base import LayerError, as_tuple
from scratch.layers.conv import Conv2D, LocallyConnected2D, ZeroPadding2D
from tests.support import check_layer_gradients, randomize_keras_weights

ACTIVATIONS = [None, "relu", "tanh", "sigmoid"]


def run_pair(keras_layer, scratch_cls, shape, seed, dtype="float32"):
    """Same random input and weights through a Keras layer and a scratch layer built from its config."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape).astype(dtype)
    keras_layer.build(shape)
    weights = randomize_keras_weights(keras_layer, rng)
    desired = np.asarray(keras_layer(x))
    layer = scratch_cls(**keras_layer.get_config())
    layer.build((None,) + tuple(shape[1:]), rng=np.random.default_rng(0))
    layer.set_weights(weights)
    unbatched = (None,) + tuple(shape[1:])
    assert layer.compute_output_shape(unbatched) == tuple(keras_layer.compute_output_shape(unbatched))
    assert layer.count_params() == keras_layer.count_params()
    return layer.forward(x), desired, keras_layer, x


def keras_one_image_at_a_time(keras_layer, x):
    return np.concatenate([np.asarray(keras_layer(x[i:i + 1])) for i in range(len(x))])


# TF 2.21's oneDNN float32 conv (on by default on x86) returns uninitialized values for some tiny
# batched inputs: batch >= 2, one input channel, width <= 5, strides (1, >1), kernel width > 1
# (e.g. the pinned (2, 2, 3, 1) case). TF then disagrees with itself run one image at a time, and
# with TF_ENABLE_ONEDNN_OPTS=0 or float64 it is right. Only when Keras is inconsistent with itself
# like that does its per-image output become the reference, with a warning naming the case.
def check_conv(cfg, shape, seed, dtype="float32"):
    actual, desired, keras_layer, x = run_pair(keras.layers.Conv2D(**cfg, dtype=dtype), Conv2D, shape, seed, dtype)
    kh, kw = as_tuple(cfg["kernel_size"], 2, "kernel_size")
    reduction = kh * kw * shape[-1] // cfg.get("groups", 1)
    label = f"Conv2D {cfg} {shape}"
    try:
        assert_close(actual, desired, kind="forward", label=label, reduction=reduction)
    except AssertionError:
        per_image = keras_one_image_at_a_time(keras_layer, x)
        if compare(per_image, desired, reduction=reduction)["passed"]:
            raise
        warnings.warn(f"TF conv2d disagrees with itself batched vs per image on {label}; compared per image")
        assert_close(actual, per_image, kind="forward", label=f"{label} per image", reduction=reduction)


def check_local(cfg, shape, seed, dtype="float32"):
    layer = tf_keras.layers.LocallyConnected2D(**cfg, dtype=dtype)
    actual, desired, _, _ = run_pair(layer, LocallyConnected2D, shape, seed, dtype)
    kh, kw = as_tuple(cfg["kernel_size"], 2, "kernel_size")
    assert_close(actual, desired, kind="forward", label=f"LocallyConnected2D {cfg} {shape}",
                 reduction=kh * kw * shape[-1])


@st.composite
def conv_cases(draw):
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    # Keras refuses strides > 1 together with dilation > 1.
    dilation = (1, 1) if max(strides) > 1 else (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(st.sampled_from(["valid", "same"]))
    groups = draw(st.sampled_from([1, 1, 2]))
    size = [draw(st.integers((kk - 1) * d + 1 if padding == "valid" else 1, 12)) for kk, d in zip(k, dilation)]
    shape = (draw(st.integers(1, 3)), *size, groups * draw(st.integers(1, 2)))
    cfg = dict(filters=groups * draw(st.integers(1, 2)), kernel_size=k, strides=strides, padding=padding,
               dilation_rate=dilation, groups=groups, activation=draw(st.sampled_from(ACTIVATIONS)),
               use_bias=draw(st.booleans()))
    return cfg, shape, draw(st.integers(0, 2**31 - 1))


def _conv(**kw):
    return dict(dict(filters=3, kernel_size=3, strides=1, padding="valid", dilation_rate=1, groups=1,
                     activation=None, use_bias=True), **kw)


CONV_PINS = [
    # odd sizes, 'same', stride 2, odd total padding on both axes (extra cell bottom/right)
    (_conv(kernel_size=4, strides=2, padding="same"), (2, 7, 9, 3)),
    (_conv(kernel_size=3, strides=2, padding="same", activation="relu"), (1, 6, 7, 2)),
    # stride larger than the kernel
    (_conv(kernel_size=2, strides=3, padding="same"), (1, 11, 10, 2)),
    (_conv(kernel_size=(1, 2), strides=(3, 2), padding="valid"), (2, 10, 9, 2)),
    # dilation 2
    (_conv(kernel_size=3, dilation_rate=2, padding="same", activation="tanh"), (2, 8, 7, 2)),
    (_conv(kernel_size=(2, 3), dilation_rate=(2, 1), padding="valid", use_bias=False), (1, 5, 6, 3)),
    # 1x1 inputs
    (_conv(kernel_size=3, strides=2, padding="same"), (2, 1, 1, 3)),
    (_conv(kernel_size=1, filters=2), (1, 1, 1, 2)),
    # kernel equal to the input size
    (_conv(kernel_size=(5, 4), filters=4), (1, 5, 4, 3)),
    # grouped
    (_conv(kernel_size=3, filters=4, groups=2, padding="same", strides=2), (2, 5, 6, 4)),
    # where TF's oneDNN float32 conv is wrong (see check_conv)
    (_conv(filters=1, kernel_size=(1, 2), strides=(1, 2), use_bias=False), (2, 2, 3, 1)),
    # 1x1 kernels run without a patch matrix: strided, 'same', with activation and bias
    (_conv(kernel_size=1, strides=2, filters=4, activation="relu"), (2, 7, 6, 3)),
    (_conv(kernel_size=1, strides=(1, 3), padding="same", activation="sigmoid"), (3, 5, 8, 2)),
    # more than conv_forward.FEW_CHANNELS input channels: patch blocks copied from the window view
    (_conv(kernel_size=3, strides=2, padding="same", filters=4, activation="tanh"), (2, 7, 8, 6)),
    (_conv(kernel_size=(2, 3), dilation_rate=2, padding="same", filters=3), (2, 9, 7, 5)),
]


@given(case=conv_cases())
@example(case=(*CONV_PINS[0], 1))
@example(case=(*CONV_PINS[1], 2))
@example(case=(*CONV_PINS[2], 3))
@example(case=(*CONV_PINS[3], 4))
@example(case=(*CONV_PINS[4], 5))
@example(case=(*CONV_PINS[5], 6))
@example(case=(*CONV_PINS[6], 7))
@example(case=(*CONV_PINS[7], 8))
@example(case=(*CONV_PINS[8], 9))
@example(case=(*CONV_PINS[9], 10))
@example(case=(*CONV_PINS[10], 11))
@example(case=(*CONV_PINS[11], 12))
@example(case=(*CONV_PINS[12], 13))
@example(case=(*CONV_PINS[13], 14))
@example(case=(*CONV_PINS[14], 15))
def test_conv2d_matches_keras(case):
    check_conv(*case)


def test_conv2d_where_tf_onednn_float32_is_wrong():
    # The pinned case on which oneDNN's batched float32 conv misbehaves: scratch must still equal
    # Keras one image at a time, and Keras batched in float64 (no oneDNN there).
    cfg, shape = CONV_PINS[10]
    x = np.random.default_rng(4).normal(size=shape)
    k32, k64 = keras.layers.Conv2D(**cfg), keras.layers.Conv2D(**cfg, dtype="float64")
    k32.build(shape)
    k64.build(shape)
    weights = randomize_keras_weights(k32, np.random.default_rng(5))
    k64.set_weights([w.astype("float64") for w in weights])
    layer = Conv2D(**cfg)
    layer.build(shape)
    layer.set_weights(weights)
    x32 = x.astype("float32")
    assert_close(layer.forward(x32), keras_one_image_at_a_time(k32, x32), kind="forward", label="per image", reduction=2)
    assert_close(layer.to_dtype("float64").forward(x), np.asarray(k64(x)), kind="forward", label="float64",
                 reduction=2)


@pytest.mark.parametrize("cfg, shape", CONV_PINS[:4] + CONV_PINS[4::2])
def test_conv2d_float64_matches_keras(cfg, shape):
    check_conv(cfg, shape, seed=11, dtype="float64")


@st.composite
def local_cases(draw):
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    shape = (draw(st.integers(1, 3)), draw(st.integers(k[0], 10)), draw(st.integers(k[1], 10)),
             draw(st.integers(1, 3)))
    cfg = dict(filters=draw(st.integers(1, 3)), kernel_size=k, strides=strides,
               activation=draw(st.sampled_from(ACTIVATIONS)), use_bias=draw(st.booleans()))
    return cfg, shape, draw(st.integers(0, 2**31 - 1))


LOCAL_PINS = [
    (dict(filters=2, kernel_size=3, strides=2, activation="tanh"), (2, 7, 9, 3)),   # odd sizes, stride 2
    (dict(filters=3, kernel_size=2, strides=3), (1, 11, 8, 2)),                     # stride larger than kernel
    (dict(filters=2, kernel_size=(4, 3)), (2, 4, 3, 2)),                            # kernel equal to input
    (dict(filters=3, kernel_size=1, use_bias=False), (1, 1, 1, 2)),                 # 1x1 input
    (dict(filters=2, kernel_size=(2, 3), strides=(1, 2), activation="relu"), (3, 5, 8, 1)),
]


@given(case=local_cases())
@example(case=(*LOCAL_PINS[0], 1))
@example(case=(*LOCAL_PINS[1], 2))
@example(case=(*LOCAL_PINS[2], 3))
@example(case=(*LOCAL_PINS[3], 4))
@example(case=(*LOCAL_PINS[4], 5))
def test_locally_connected2d_matches_tf_keras(case):
    check_local(*case)


@pytest.mark.parametrize("cfg, shape", LOCAL_PINS[:3])
def test_locally_connected2d_float64_matches_tf_keras(cfg, shape):
    check_local(cfg, shape, seed=12, dtype="float64")


PADDINGS = st.one_of(
    st.integers(0, 3),
    st.tuples(st.integers(0, 3), st.integers(0, 3)),
    st.tuples(st.tuples(st.integers(0, 3), st.integers(0, 3)), st.tuples(st.integers(0, 3), st.integers(0, 3))),
)


@given(padding=PADDINGS, shape=st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6),
                                         st.integers(1, 3)))
@example(padding=((1, 2), (0, 3)), shape=(1, 1, 1, 1))
@example(padding=3, shape=(2, 5, 4, 2))
@example(padding=(0, 2), shape=(1, 3, 3, 1))
def test_zero_padding2d_matches_keras(padding, shape):
    for dtype in ("float32", "float64"):
        actual, desired, _, _ = run_pair(keras.layers.ZeroPadding2D(padding, dtype=dtype), ZeroPadding2D, shape, 5, dtype)
        assert_close(actual, desired, kind="forward", label=f"ZeroPadding2D {padding} {shape} {dtype}")


# ---- gradients (float64 centered differences) --------------------------------------------------
GRADIENT_CASES = [
    ("same-s2-odd", lambda: Conv2D(3, 3, strides=2, padding="same", activation="tanh"), (2, 5, 6, 2)),
    ("same-k4-s2", lambda: Conv2D(2, 4, strides=2, padding="same"), (1, 7, 5, 2)),
    ("dilation2-groups2", lambda: Conv2D(4, (3, 2), dilation_rate=2, padding="same", groups=2,
                                         activation="sigmoid"), (2, 5, 5, 4)),
    ("valid-stride-gt-kernel", lambda: Conv2D(2, 2, strides=3, use_bias=False), (1, 8, 7, 3)),
    ("local-s2", lambda: LocallyConnected2D(2, 3, strides=2, activation="tanh"), (2, 7, 6, 2)),
    ("local-nobias", lambda: LocallyConnected2D(3, (2, 1), strides=(1, 2), use_bias=False), (2, 4, 5, 2)),
    ("zeropad", lambda: ZeroPadding2D(((1, 2), (0, 3))), (2, 3, 4, 2)),
]


@pytest.mark.parametrize("label, make, shape", GRADIENT_CASES, ids=[c[0] for c in GRADIENT_CASES])
def test_gradients(label, make, shape):
    rng = np.random.default_rng(7)
    layer = make().to_dtype("float64")
    layer.build(shape, rng=rng)
    errors = check_layer_gradients(layer, rng.normal(size=shape), rng=rng, label=label)
    assert set(errors) == {"dx0", *layer.active_weight_names()}


# ---- chunked im2col ----------------------------------------------------------------------------
def _forward_backward(layer, x, dout):
    y = layer.forward(x)
    dx = layer.backward(dout)
    return y, dx, {k: v.copy() for k, v in layer.grads.items()}


@pytest.mark.parametrize("make", [
    lambda: Conv2D(5, 3, strides=2, padding="same", activation="tanh", dtype="float64"),
    lambda: Conv2D(4, 3, dilation_rate=2, padding="same", groups=2, dtype="float64"),
    lambda: LocallyConnected2D(3, 3, strides=(2, 1), activation="tanh", dtype="float64"),
], ids=["conv", "conv-groups", "local"])
def test_chunked_patches_match_unchunked(make, monkeypatch):
    rng = np.random.default_rng(3)
    shape = (5, 9, 8, 4)
    layer = make()
    layer.build(shape, rng=rng)
    x = rng.normal(size=shape)
    out_shape = layer.compute_output_shape(shape)
    dout = rng.normal(size=out_shape)
    windows.reset_peak_patch_bytes()
    ref = _forward_backward(layer, x, dout)
    whole = windows.peak_patch_bytes()
    row = whole // (shape[0] * out_shape[1])
    # Two items per block, then one output row per block: both split the batch.
    for limit in (2 * whole // shape[0], row):
        monkeypatch.setattr(windows, "MAX_PATCH_BYTES", limit)
        windows.reset_peak_patch_bytes()
        got = _forward_backward(layer, x, dout)
        assert 0 < windows.peak_patch_bytes() <= limit < whole
        for name, a, b in [("y", got[0], ref[0]), ("dx", got[1], ref[1])] + [
                (k, got[2][k], ref[2][k]) for k in ref[2]]:
            assert_close(a, b, kind="forward", label=f"chunked {name} limit={limit}", reduction=shape[0] * 81)


# ---- contract ----------------------------------------------------------------------------------
def test_conv2d_any_batch_size_and_dtype():
    rng = np.random.default_rng(0)
    layer = Conv2D(2, 3, padding="same")
    layer.build((None, 6, 6, 3), rng=rng)
    assert layer.weights["kernel"].shape == (3, 3, 3, 2) and layer.count_params() == 56
    for n in (1, 4):
        assert layer.forward(rng.normal(size=(n, 6, 6, 3))).shape == (n, 6, 6, 2)
    assert layer.forward(np.zeros((1, 6, 6, 3))).dtype == np.float32
    assert layer.to_dtype("float64").forward(np.zeros((1, 6, 6, 3))).dtype == np.float64
    assert Conv2D(2, 3, use_bias=False).active_weight_names() == ("kernel",)


def test_zeros_before_rng():
    layer = LocallyConnected2D(2, 2)
    layer.build((None, 3, 3, 1))
    assert layer.weights["kernel"].shape == (4, 4, 2) and layer.weights["bias"].shape == (2, 2, 2)
    assert not np.any(layer.get_weights()[0])
    with pytest.raises(LayerError, match=r"weight 'kernel' has shape \(4, 4, 3\), expected \(4, 4, 2\)"):
        layer.set_weights([np.zeros((4, 4, 3)), np.zeros((2, 2, 2))])


# ---- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    (dict(filters=0, kernel_size=3), r"filters must be a positive int. Received: filters=0"),
    (dict(filters=2, kernel_size=0), r"kernel_size must be a positive int or a tuple of 2 positive ints"),
    (dict(filters=2, kernel_size=3, padding="full"), r"padding must be 'valid' or 'same'. Received: padding='full'"),
    (dict(filters=2, kernel_size=3, strides=2, dilation_rate=2),
     r"strides > 1 is not supported together with dilation_rate > 1. Received: strides=\(2, 2\), "
     r"dilation_rate=\(2, 2\)"),
    (dict(filters=2, kernel_size=3, data_format="channels_first"),
     r"Conv2D supports data_format='channels_last' only. Received: data_format='channels_first'"),
    (dict(filters=3, kernel_size=3, groups=2), r"filters must be divisible by groups. Received: filters=3, groups=2"),
    (dict(filters=2, kernel_size=3, activation="swishy"), r"activation 'swishy' is not supported"),
    (dict(filters=2, kernel_size=3, depth_multiplier=2), r"Conv2D got unsupported arguments: \['depth_multiplier'\]"),
])
def test_conv2d_rejects_bad_arguments(kwargs, message):
    with pytest.raises(LayerError, match=message):
        Conv2D(**kwargs)


def test_conv2d_rejects_bad_inputs():
    with pytest.raises(LayerError, match=r"Conv2D 'c' has no weights yet: call build\(input_shape\) or set_weights"):
        Conv2D(1, 2, name="c").forward(np.zeros((1, 4, 4, 1)))
    with pytest.raises(LayerError, match=r"input channels must be divisible by groups. Received: channels=3, groups=2"):
        Conv2D(4, 3, groups=2).build((None, 5, 5, 3))
    with pytest.raises(LayerError, match=r"Conv2D: computed output size would be zero or negative for input size "
                                         r"\(4, 6\), kernel \(5, 5\)"):
        Conv2D(1, 5).build((None, 4, 6, 1))
    layer = Conv2D(1, 2)
    layer.build((None, 4, 4, 2))
    with pytest.raises(LayerError, match=r"Conv2D 'conv2d' was built for 2 input channels"):
        layer.forward(np.zeros((1, 4, 4, 3)))


@pytest.mark.parametrize("kwargs, message", [
    (dict(filters=2, kernel_size=2, implementation=2),
     r"LocallyConnected2D supports implementation=1 only .* Received: implementation=2"),
    (dict(filters=2, kernel_size=2, padding="same"),
     r"LocallyConnected2D with implementation=1 supports padding='valid' only. Received: padding='same'"),
    (dict(filters=2, kernel_size=2, padding="causal"), r"padding must be 'valid' or 'same'. Received: padding='causal'"),
    (dict(filters=2, kernel_size=2, data_format="channels_first"),
     r"LocallyConnected2D supports data_format='channels_last' only"),
])
def test_locally_connected2d_rejects_bad_arguments(kwargs, message):
    with pytest.raises(LayerError, match=message):
        LocallyConnected2D(**kwargs)


def test_locally_connected2d_rejects_bad_inputs():
    with pytest.raises(LayerError, match=r"LocallyConnected2D 'l' has no weights yet"):
        LocallyConnected2D(1, 2, name="l").forward(np.zeros((1, 4, 4, 1)))
    with pytest.raises(LayerError, match=r"needs fully defined spatial dimensions"):
        LocallyConnected2D(1, 2).build((None, None, 4, 1))
    with pytest.raises(LayerError, match=r"computed output size would be zero or negative"):
        LocallyConnected2D(1, 3).build((None, 2, 4, 1))
    layer = LocallyConnected2D(1, 2)
    layer.build((None, 4, 4, 1))
    with pytest.raises(LayerError, match=r"has kernel \(9, 4, 1\), which does not fit input shape \(1, 5, 4, 1\)"):
        layer.forward(np.zeros((1, 5, 4, 1)))


@pytest.mark.parametrize("padding, message", [
    (-1, r"1st entry of padding must be a non-negative int or a tuple of 2 non-negative ints. Received: padding=-1"),
    ((1, 2, 3), r"padding must be an int, a tuple of 2 ints \(height, width\), or a tuple of 2 tuples"),
    (((1, 2), (3,)), r"2nd entry of padding must be a non-negative int or a tuple of 2"),
    ("same", r"padding must be an int, a tuple of 2 ints"),
])
def test_zero_padding2d_rejects_bad_padding(padding, message):
    with pytest.raises(LayerError, match=message):
        ZeroPadding2D(padding)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kernel_size, strides, padding, channels", [(3, 1, "valid", 1), (5, 2, "same", 3),
                                                                     ((2, 3), 1, "same", 4)])
def test_few_channel_bias_in_the_product_is_the_bias_added_after(kernel_size, strides, padding, channels, dtype):
    """Few input channels: the bias rides in the product as a last kernel row against a row of
    ones, so it is added last, as after the product: bit for bit the output without bias, plus it."""
    rng = np.random.default_rng(9)
    x = rng.normal(size=(3, 9, 8, channels)).astype(dtype)
    layer = Conv2D(6, kernel_size, strides=strides, padding=padding).to_dtype(dtype)
    layer.build(x.shape, rng=rng)
    assert channels <= conv_forward.FEW_CHANNELS
    bare = Conv2D(6, kernel_size, strides=strides, padding=padding, use_bias=False).to_dtype(dtype)
    bare.build(x.shape)
    bare.set_weights([layer.weights["kernel"]])
    np.testing.assert_array_equal(layer.forward(x), bare.forward(x) + layer.weights["bias"])
