"""scratch.layers.reshaping against keras.layers: ZeroPadding1D, Cropping1D/2D, UpSampling1D/2D, Permute,
Identity; gradient checks; errors; and one saved model mixing reshaping, pooling and regularization layers."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import example, given, settings
from hypothesis import strategies as st

import scratch
from parity.compare import effective_reductions
from parity.keras_runner import layer_infos
from parity.tolerance import assert_close
from scratch.layers.base import LayerError
from scratch.layers.reshaping import (Cropping1D, Cropping2D, Identity, Permute, UpSampling1D, UpSampling2D,
                                      ZeroPadding1D)
from tests.support import check_layer_gradients

DTYPES = st.sampled_from(["float32", "float64"])
SEEDS = st.integers(0, 2**31 - 1)


def check_layer(cls, cfg, shape, seed, dtype, reduction=1):
    """Same random input through the Keras layer and its scratch twin built from the Keras config;
    returns (mine, Keras) outputs after checking the output shape and mask support."""
    x = np.random.default_rng(seed).normal(size=shape).astype(dtype)
    k = getattr(keras.layers, cls.__name__)(**cfg, dtype=dtype)
    desired = np.asarray(k(tf.constant(x)))
    mine = cls(**k.get_config())
    batchless = (None, *shape[1:])
    assert mine.compute_output_shape(batchless) == tuple(k.compute_output_shape(batchless))
    assert mine.supports_masking == k.supports_masking
    actual = mine.forward(x)
    assert_close(actual, desired, label=f"{cls.__name__} {cfg} {shape} {dtype}", reduction=reduction)
    return actual, desired


# ---- ZeroPadding1D / Cropping1D / Cropping2D ----------------------------------------------------
PAIR = st.one_of(st.integers(0, 3), st.tuples(st.integers(0, 3), st.integers(0, 3)))


@given(padding=PAIR, steps=st.integers(1, 6), dtype=DTYPES, seed=SEEDS)
@example(padding=0, steps=1, dtype="float32", seed=0)
@example(padding=(0, 3), steps=5, dtype="float64", seed=1)
def test_zero_padding1d_matches_keras(padding, steps, dtype, seed):
    check_layer(ZeroPadding1D, dict(padding=padding), (2, steps, 3), seed, dtype)


@st.composite
def crop1d_cases(draw):
    cropping = draw(PAIR)
    start, end = (cropping, cropping) if isinstance(cropping, int) else cropping
    return cropping, draw(st.integers(start + end + 1, start + end + 5))


@given(case=crop1d_cases(), dtype=DTYPES, seed=SEEDS)
@example(case=((2, 3), 6), dtype="float32", seed=0)        # leaves a single step
@example(case=(1, 3), dtype="float64", seed=1)             # int form, leaves a single step
def test_cropping1d_matches_keras(case, dtype, seed):
    cropping, steps = case
    check_layer(Cropping1D, dict(cropping=cropping), (2, steps, 2), seed, dtype)


@st.composite
def crop2d_cases(draw):
    form = draw(st.sampled_from(["int", "pair", "pairs"]))
    if form == "int":
        c = draw(st.integers(0, 2))
        cropping, per_axis = c, ((c, c), (c, c))
    elif form == "pair":
        cropping = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
        per_axis = tuple((c, c) for c in cropping)
    else:
        per_axis = cropping = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(2))
    hw = tuple(sum(p) + draw(st.integers(1, 4)) for p in per_axis)
    return cropping, (draw(st.integers(1, 2)), *hw, draw(st.integers(1, 3)))


@given(case=crop2d_cases(), dtype=DTYPES, seed=SEEDS)
@example(case=(((1, 2), (0, 3)), (1, 4, 4, 2)), dtype="float32", seed=0)    # leaves 1 x 1
@example(case=((2, 1), (2, 5, 3, 1)), dtype="float64", seed=1)             # symmetric pair, 1 x 1
@example(case=(0, (1, 3, 2, 2)), dtype="float32", seed=2)
def test_cropping2d_matches_keras(case, dtype, seed):
    cropping, shape = case
    check_layer(Cropping2D, dict(cropping=cropping), shape, seed, dtype)


# ---- UpSampling1D / UpSampling2D ---------------------------------------------------------------
@given(size=st.integers(1, 4), steps=st.integers(1, 5), dtype=DTYPES, seed=SEEDS)
@example(size=3, steps=1, dtype="float64", seed=0)
def test_upsampling1d_matches_keras(size, steps, dtype, seed):
    check_layer(UpSampling1D, dict(size=size), (2, steps, 3), seed, dtype)


SIZES = st.one_of(st.integers(1, 4), st.tuples(st.integers(1, 5), st.integers(1, 5)))
UP_PINS = [((2, 3), (2, 3, 5, 2)), ((3, 1), (1, 7, 4, 1)), ((1, 4), (1, 1, 1, 3)), ((5, 2), (1, 9, 11, 2)),
           (1, (1, 2, 2, 1))]


def _up_pins(test):
    for i, (size, shape) in enumerate(UP_PINS):
        test = example(size=size, shape=shape, dtype=["float32", "float64"][i % 2], seed=i)(test)
    return test


@given(size=SIZES, shape=st.tuples(st.integers(1, 2), st.integers(1, 7), st.integers(1, 7), st.integers(1, 3)),
       dtype=DTYPES, seed=SEEDS)
@_up_pins
def test_upsampling2d_nearest_matches_keras(size, shape, dtype, seed):
    check_layer(UpSampling2D, dict(size=size, interpolation="nearest"), shape, seed, dtype)


@given(size=SIZES, shape=st.tuples(st.integers(1, 2), st.integers(1, 12), st.integers(1, 12), st.integers(1, 3)),
       dtype=DTYPES, seed=SEEDS)
@_up_pins
def test_upsampling2d_bilinear_matches_keras(size, shape, dtype, seed):
    """float32: bit for bit TF's ResizeBilinear (same sample positions, same a + (b - a) * t steps).
    float64: TF's kernel computes in float32 even for float64 input (Keras's float64 output is
    exactly float32-valued), so there the float64 result, rounded to float32, is held to the float32
    rule against Keras's; the float64 arithmetic itself is pinned by the gradient check below."""
    x = np.random.default_rng(seed).normal(size=shape).astype(dtype)
    k = keras.layers.UpSampling2D(size, interpolation="bilinear", dtype=dtype)
    desired = np.asarray(k(tf.constant(x)))
    mine = UpSampling2D(**k.get_config())
    assert mine.compute_output_shape((None, *shape[1:])) == tuple(k.compute_output_shape((None, *shape[1:])))
    actual = mine.forward(x)
    if dtype == "float32":
        np.testing.assert_array_equal(actual, desired)
    else:
        assert actual.dtype == desired.dtype == np.float64
        np.testing.assert_array_equal(desired, desired.astype(np.float32))       # TF's float32 arithmetic
        assert_close(actual.astype(np.float32), desired.astype(np.float32), reduction=4,
                     label=f"UpSampling2D bilinear {size} {shape} float64 (TF rounds to float32)")


def test_upsampling2d_bilinear_gradient_matches_tensorflow():
    """The adjoint against tf.GradientTape on TF's own op (non-square factors, odd sizes)."""
    rng = np.random.default_rng(3)
    x = tf.constant(rng.normal(size=(2, 5, 3, 2)).astype("float32"))
    k = keras.layers.UpSampling2D((3, 2), interpolation="bilinear")
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = k(x)
    dout = rng.normal(size=y.shape).astype("float32")
    want = tape.gradient(y, x, output_gradients=tf.constant(dout)).numpy()
    mine = UpSampling2D((3, 2), interpolation="bilinear")
    mine.forward(x.numpy())
    assert_close(mine.backward(dout), want, label="UpSampling2D bilinear dx vs TF", reduction=4 * 6)


# ---- Permute / Identity ------------------------------------------------------------------------
@given(dims=st.permutations([1, 2, 3]), dtype=DTYPES, seed=SEEDS)
@example(dims=[1, 2, 3], dtype="float32", seed=0)
@example(dims=[3, 1, 2], dtype="float64", seed=1)
def test_permute_matches_keras(dims, dtype, seed):
    check_layer(Permute, dict(dims=tuple(dims)), (2, 3, 1, 4), seed, dtype)


@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple), dtype=DTYPES, seed=SEEDS)
@settings(max_examples=5)
def test_identity_matches_keras(shape, dtype, seed):
    check_layer(Identity, {}, (2, *shape), seed, dtype)
    mask = np.array([[True, False]])
    assert Identity().compute_mask(np.zeros((1, 2, 3)), mask) is mask


@pytest.mark.parametrize("layer", [ZeroPadding1D(), Cropping1D(), UpSampling1D(), Permute((2, 1)),
                                   Cropping2D(1), UpSampling2D()])
def test_reshaping_layers_drop_the_mask_like_keras(layer):
    assert layer.compute_mask(np.zeros((1, 3, 3)), np.array([[True, False, True]])) is None


# ---- gradients (float64 centered differences) --------------------------------------------------
GRADIENT_CASES = [
    ("zeropad1d", lambda: ZeroPadding1D((2, 0)), (2, 3, 2)),
    ("crop1d", lambda: Cropping1D((1, 2)), (2, 5, 2)),
    ("crop2d-pairs", lambda: Cropping2D(((1, 0), (2, 1))), (2, 4, 5, 2)),
    ("crop2d-to-1x1", lambda: Cropping2D(((1, 2), (0, 3))), (1, 4, 4, 2)),
    ("upsample1d", lambda: UpSampling1D(3), (2, 3, 2)),
    ("upsample2d-nearest", lambda: UpSampling2D((2, 3)), (2, 3, 2, 2)),
    ("upsample2d-bilinear", lambda: UpSampling2D((3, 2), interpolation="bilinear"), (2, 5, 3, 2)),
    ("upsample2d-bilinear-1px", lambda: UpSampling2D((2, 5), interpolation="bilinear"), (1, 1, 2, 1)),
    ("permute", lambda: Permute((3, 1, 2)), (2, 3, 1, 4)),
    ("identity", lambda: Identity(), (2, 3)),
]


@pytest.mark.parametrize("label, make, shape", GRADIENT_CASES, ids=[c[0] for c in GRADIENT_CASES])
def test_gradients(label, make, shape):
    rng = np.random.default_rng(4)
    layer = make().to_dtype("float64")
    errors = check_layer_gradients(layer, rng.normal(size=shape), rng=rng, label=label)
    assert set(errors) == {"dx0"}


# ---- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("make, message", [
    (lambda: ZeroPadding1D((1, -1)), r"The `padding` argument must be a tuple of 2 integers. Received "
                                     r"padding=\(1, -1\), including values \{-1\} that do not satisfy `value >= 0`"),
    (lambda: ZeroPadding1D((1, 2, 3)), r"The `padding` argument must be a tuple of 2 integers"),
    (lambda: ZeroPadding1D(data_format="channels_first"), r"ZeroPadding1D supports data_format='channels_last' only"),
    (lambda: Cropping1D("a"), r"The `cropping` argument must be a tuple of 2 integers. Received cropping='a'"),
    (lambda: Cropping2D(-1), r"`cropping` cannot be negative. Received: cropping=-1."),
    (lambda: Cropping2D((1, 2, 3)), r"`cropping` should have two elements. Received: cropping=\(1, 2, 3\)."),
    (lambda: Cropping2D(((1, 2), (1, -2))), r"The `2nd entry of cropping` argument must be a tuple of 2 integers"),
    (lambda: Cropping2D(1.5), r"`cropping` should be either an int, a tuple of 2 ints"),
    (lambda: Cropping2D(data_format="channels_first"), r"Cropping2D supports data_format='channels_last' only. "
                                                       r"Received: data_format='channels_first'"),
    (lambda: UpSampling1D(2.0), r"Expected an integer value for `size`, got <class 'float'>"),
    (lambda: UpSampling1D(0), r"Argument `size` should be a positive integer. Received: size=0"),
    (lambda: UpSampling2D((2, 0)), r"The `size` argument must be a tuple of 2 integers. Received size=\(2, 0\), "
                                   r"including values \{0\} that do not satisfy `value > 0`"),
    (lambda: UpSampling2D(interpolation="bicubic"), r"UpSampling2D supports interpolation='nearest' or 'bilinear' "
                                                    r"only. Received: interpolation='bicubic'"),
    (lambda: UpSampling2D(interpolation="lanczos3"), r"Received: interpolation='lanczos3'"),
    (lambda: Permute((1, 3)), r"Invalid permutation argument `dims` for Permute Layer. The set of indices in `dims` "
                              r"must be consecutive and start from 1. Received dims=\(1, 3\)"),
    (lambda: Identity(bogus=1), r"Identity got unsupported arguments: \['bogus'\]"),
])
def test_bad_arguments_are_refused(make, message):
    with pytest.raises(LayerError, match=message):
        make()


def test_bilinear_upsampling2d_accepts_keras_case():
    assert UpSampling2D(interpolation="Bilinear").interpolation == "bilinear"


@pytest.mark.parametrize("make, x, message", [
    (lambda: Cropping1D((2, 2)), np.zeros((1, 4, 1)), r"`cropping` parameter of `Cropping1D` layer must be smaller "
                                                      r"than the input length. Received: input_shape=\(1, 4, 1\)"),
    (lambda: Cropping2D(((1, 1), (0, 0))), np.zeros((1, 2, 3, 1)), r"Values in `cropping` argument should be smaller"),
    (lambda: ZeroPadding1D(), np.zeros((1, 4)), r"ZeroPadding1D expects input of rank 3 \(N, steps, C\). "
                                                r"Received: input_shape=\(1, 4\)"),
    (lambda: UpSampling2D(), np.zeros((1, 4, 4)), r"UpSampling2D expects input of rank 4 \(N, H, W, C\)"),
    (lambda: Permute((2, 1)), np.zeros((1, 2, 3, 4)), r"Permute expects input of rank 3"),
])
def test_bad_inputs_are_refused(make, x, message):
    with pytest.raises(LayerError, match=message):
        make().forward(x)


# ---- a saved model through scratch.load --------------------------------------------------------
def mixed_model():
    layers = keras.layers
    image = keras.Input((6, 5, 2), name="image")
    x = layers.Cropping2D(((1, 0), (0, 1)))(image)
    x = layers.UpSampling2D((2, 3), interpolation="bilinear")(x)
    x = layers.Conv2D(3, 3, padding="same")(x)
    x = layers.SpatialDropout2D(0.3)(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    x = layers.GaussianNoise(0.1)(x)
    x = layers.Reshape((-1, 3))(x)
    x = layers.Permute((2, 1))(x)
    x = layers.ZeroPadding1D((1, 2))(x)
    x = layers.Cropping1D(1)(x)
    x = layers.UpSampling1D(2)(x)
    x = layers.AveragePooling1D(3, strides=2, padding="same")(x)
    a = layers.GlobalAveragePooling1D()(layers.AlphaDropout(0.2)(x))
    m = layers.GlobalMaxPooling1D(keepdims=True)(layers.MaxPooling1D(2)(x))
    m = layers.Flatten()(layers.Identity()(m))
    y = layers.Dense(4)(layers.Concatenate()([a, layers.GaussianDropout(0.1)(m)]))
    y = layers.ActivityRegularization(l1=0.01)(y)
    return keras.Model(image, y, name="mixed")


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_saved_model_predicts_like_keras(tmp_path, suffix):
    keras.utils.set_random_seed(0)
    model = mixed_model()
    x = np.random.default_rng(5).normal(size=(3, 6, 5, 2)).astype("float32")
    path = tmp_path / f"mixed{suffix}"
    model.save(path)
    want = model.predict(x, verbose=0)
    got = scratch.load(path).predict(x)
    reduction = max(effective_reductions(layer_infos(model)).values())   # parity.compare's chain rule
    assert_close(got, want, label=f"mixed model {suffix}", reduction=reduction)
