"""scratch.core against keras.layers: Dense, Activation, ReLU, Softmax, Flatten, Reshape, Dropout."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import example, given
from hypothesis import strategies as st
from scipy.stats import binomtest

from parity.tolerance import assert_close
from scratch.layers import activations
from scratch.layers.base import LayerError
from scratch.layers.core import Activation, Dense, Dropout, Flatten, ReLU, Reshape, Softmax
from tests.support import check_layer_gradients, randomize_keras_weights

pytestmark = pytest.mark.filterwarnings("ignore:You are using a softmax over axis")

DTYPES = st.sampled_from(["float32", "float64"])
SEEDS = st.integers(0, 2**31 - 1)
# glu halves the last axis and needs it even; test_activations covers it.
KERAS_ACTIVATIONS = [n for n in activations.KERAS_NAMES if n != "glu"]


def shapes(min_rank=1, max_rank=4, max_side=5):
    return st.lists(st.integers(1, max_side), min_size=min_rank, max_size=max_rank).map(tuple)


def from_keras(cls, keras_layer, input_shape):
    """The scratch twin of a built Keras layer: same config (as saved in a file), same weights."""
    mine = cls(**keras_layer.get_config())
    mine.build(input_shape)
    mine.set_weights(keras_layer.get_weights())
    return mine


def run_keras(layer, x, **kwargs):
    return np.asarray(layer(tf.constant(x), **kwargs))


def check_contract(mine, keras_layer, input_shape):
    """Weight order/names, parameter count, output shape and masking agree with Keras."""
    if not keras_layer.built:
        keras_layer.build(input_shape)
    assert mine.active_weight_names() == tuple(w.name for w in keras_layer.weights)
    assert mine.count_params() == keras_layer.count_params()
    batchless = (None, *input_shape[1:])
    assert mine.compute_output_shape(batchless) == tuple(keras_layer.compute_output_shape(batchless))
    assert mine.supports_masking == keras_layer.supports_masking


# ---- Dense ------------------------------------------------------------------------------------
@given(shape=shapes(1, 3), in_dim=st.integers(1, 32), units=st.integers(1, 16),
       activation=st.sampled_from(KERAS_ACTIVATIONS), use_bias=st.booleans(), dtype=DTYPES, seed=SEEDS)
@example(shape=(1,), in_dim=1, units=1, activation="linear", use_bias=True, dtype="float32", seed=0)
@example(shape=(2, 3, 2), in_dim=7, units=5, activation="softmax", use_bias=False, dtype="float64", seed=1)
@example(shape=(3,), in_dim=32, units=16, activation="gelu", use_bias=True, dtype="float32", seed=2)
def test_dense_matches_keras(shape, in_dim, units, activation, use_bias, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(*shape, in_dim)).astype(dtype)
    k = keras.layers.Dense(units, activation=activation, use_bias=use_bias, dtype=dtype)
    k.build(x.shape)
    randomize_keras_weights(k, rng)
    mine = from_keras(Dense, k, x.shape)
    check_contract(mine, k, x.shape)
    assert_close(mine.forward(x), run_keras(k, x), label=f"Dense {activation} {dtype}", reduction=in_dim)


@pytest.mark.parametrize("activation", [n for n in activations.NAMES if n != "glu"])
def test_dense_gradients(activation):
    rng = np.random.default_rng(len(activation))
    layer = Dense(3, activation=activation, dtype="float64")
    layer.build((None, 2, 4), rng=rng)
    x = _dense_input_away_from_kinks(layer, rng, (2, 2, 4))
    check_layer_gradients(layer, x, rng=rng, label=f"Dense {activation}")


def test_dense_gradients_without_bias():
    rng = np.random.default_rng(3)
    layer = Dense(4, use_bias=False, dtype="float64")
    layer.build((None, 5), rng=rng)
    errors = check_layer_gradients(layer, rng.normal(size=(3, 5)), rng=rng, label="Dense no bias")
    assert set(errors) == {"dx0", "kernel"}


def _dense_input_away_from_kinks(layer, rng, shape):
    """Draw inputs until no pre-activation sits within 1e-3 of a kink (0, +-2.5, +-3)."""
    for _ in range(100):
        x = rng.normal(size=shape)
        z = x @ layer.weights["kernel"] + layer.weights["bias"]
        if min(np.min(np.abs(z - k)) for k in (0.0, 2.5, -2.5, 3.0, -3.0)) > 1e-3:
            return x
    raise AssertionError("could not draw an input away from the kinks")


# ---- Activation -------------------------------------------------------------------------------
@given(shape=shapes(2, 4), activation=st.sampled_from(KERAS_ACTIVATIONS), dtype=DTYPES, seed=SEEDS)
@example(shape=(2, 3, 4), activation="softmax", dtype="float32", seed=0)
def test_activation_layer_matches_keras(shape, activation, dtype, seed):
    x = (np.random.default_rng(seed).normal(size=shape) * 4).astype(dtype)
    k = keras.layers.Activation(activation, dtype=dtype)
    mine = Activation(**k.get_config())
    check_contract(mine, k, x.shape)
    assert_close(mine.forward(x), run_keras(k, x), label=f"Activation {activation} {dtype}",
                 reduction=shape[-1] if activation == "softmax" else 1)


@pytest.mark.parametrize("activation", ["tanh", "softmax", "selu"])
def test_activation_layer_gradients(activation):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3, 4)) + 0.01  # keep clear of selu's kink at 0
    check_layer_gradients(Activation(activation, dtype="float64"), x, rng=rng, label=f"Activation {activation}")


# ---- ReLU -------------------------------------------------------------------------------------
relu_max = st.one_of(st.none(), st.floats(0.0, 8.0), st.just(6.0))
relu_slope = st.one_of(st.just(0.0), st.floats(0.0, 2.0))
relu_threshold = st.one_of(st.just(0.0), st.floats(0.0, 4.0))


@given(max_value=relu_max, negative_slope=relu_slope, threshold=relu_threshold, dtype=DTYPES, seed=SEEDS)
@example(max_value=6.0, negative_slope=0.0, threshold=0.0, dtype="float32", seed=0)      # relu6 path
@example(max_value=None, negative_slope=0.3, threshold=0.0, dtype="float32", seed=0)     # leaky_relu path
@example(max_value=None, negative_slope=1.5, threshold=0.0, dtype="float64", seed=0)     # slope > 1
@example(max_value=None, negative_slope=0.41266628173767483, threshold=0.0, dtype="float64", seed=0)  # f32 alpha
@example(max_value=2.0, negative_slope=0.5, threshold=3.0, dtype="float32", seed=0)      # cap below threshold
@example(max_value=0.0, negative_slope=0.0, threshold=0.0, dtype="float64", seed=0)
@example(max_value=5.0, negative_slope=0.2, threshold=1.0, dtype="float32", seed=0)
def test_relu_matches_keras(max_value, negative_slope, threshold, dtype, seed):
    rng = np.random.default_rng(seed)
    kinks = [0.0, threshold] + ([] if max_value is None else [max_value])
    x = np.concatenate([rng.normal(size=40) * 5, kinks, np.nextafter(kinks, 1e9), np.nextafter(kinks, -1e9)])
    x = x.reshape(1, -1).astype(dtype)
    k = keras.layers.ReLU(max_value=max_value, negative_slope=negative_slope, threshold=threshold, dtype=dtype)
    mine = ReLU(**k.get_config())
    check_contract(mine, k, x.shape)
    assert_close(mine.forward(x), run_keras(k, x), label=f"ReLU {max_value} {negative_slope} {threshold}")


@pytest.mark.parametrize("config", [{}, {"max_value": 6.0}, {"negative_slope": 0.3},
                                    {"max_value": 2.0, "negative_slope": 0.5, "threshold": 1.0}])
def test_relu_gradients(config):
    rng = np.random.default_rng(11)
    x = rng.uniform(-8, 8, size=(4, 6))
    for kink in (0.0, 1.0, 2.0, 6.0):
        x = np.where(np.abs(x - kink) < 1e-3, kink + 0.01, x)
    check_layer_gradients(ReLU(**config, dtype="float64"), x, rng=rng, label=f"ReLU {config}")


# ---- Softmax ----------------------------------------------------------------------------------
@st.composite
def softmax_cases(draw):
    shape = draw(shapes(2, 4))
    rank = len(shape)
    if draw(st.booleans()):
        axis = draw(st.integers(-rank, rank - 1))
    else:
        axis = draw(st.lists(st.integers(1, rank - 1), min_size=1, max_size=rank - 1, unique=True)) \
            if rank > 1 else [-1]
    return shape, axis


@given(case=softmax_cases(), dtype=DTYPES, seed=SEEDS)
@example(case=((2, 3, 4), -1), dtype="float32", seed=0)
@example(case=((2, 3, 4), 1), dtype="float32", seed=0)
@example(case=((2, 3, 4), [1, 2]), dtype="float64", seed=0)
@example(case=((2, 3, 4), [2]), dtype="float32", seed=0)
@example(case=((2, 3, 4, 5), [3, 1]), dtype="float32", seed=0)
def test_softmax_matches_keras(case, dtype, seed):
    shape, axis = case
    x = (np.random.default_rng(seed).normal(size=shape) * 5).astype(dtype)
    k = keras.layers.Softmax(axis=axis, dtype=dtype)
    mine = Softmax(**k.get_config())
    check_contract(mine, k, x.shape)
    axes = axis if isinstance(axis, list) else [axis]
    assert_close(mine.forward(x), run_keras(k, x), label=f"Softmax axis={axis} {dtype}",
                 reduction=math.prod(shape[a] for a in axes))


@given(case=softmax_cases(), dtype=DTYPES, seed=SEEDS, float_mask=st.booleans())
@example(case=((2, 3, 4), -1), dtype="float32", seed=0, float_mask=False)
def test_softmax_mask_matches_keras(case, dtype, seed, float_mask):
    shape, axis = case
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=shape) * 5).astype(dtype)
    # A mask broadcastable from the right: a suffix of the input shape, some axes squeezed to 1.
    mshape = tuple(d if rng.random() < 0.7 else 1 for d in shape[rng.integers(0, len(shape)):])
    mask = rng.random(mshape) < 0.6
    mask_in = (mask * rng.uniform(0.51, 1.0, mshape)).astype(dtype) if float_mask else mask
    k = keras.layers.Softmax(axis=axis, dtype=dtype)
    mine = Softmax(**k.get_config())
    axes = axis if isinstance(axis, list) else [axis]
    assert_close(mine.forward(x, mask=mask_in), run_keras(k, x, mask=tf.constant(mask_in)),
                 label=f"Softmax masked axis={axis}", reduction=math.prod(shape[a] for a in axes))
    assert mine.compute_mask(x, mask) is mask  # passed on unchanged


@pytest.mark.parametrize("axis", [-1, 1, [1, 2], [2, 1]])
@pytest.mark.parametrize("masked", [False, True])
def test_softmax_gradients(axis, masked):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 3, 4))
    kwargs = {"mask": rng.random((3, 4)) < 0.7} if masked else {}
    check_layer_gradients(Softmax(axis=axis, dtype="float64"), x, rng=rng, label=f"Softmax {axis}",
                          forward_kwargs=kwargs)


# ---- Flatten / Reshape ------------------------------------------------------------------------
@given(shape=shapes(1, 5), data_format=st.sampled_from(["channels_last", "channels_first"]), dtype=DTYPES)
@example(shape=(2,), data_format="channels_last", dtype="float32")
@example(shape=(2, 3, 4, 5), data_format="channels_last", dtype="float32")
@example(shape=(2, 3, 4, 5), data_format="channels_first", dtype="float64")
def test_flatten_matches_keras(shape, data_format, dtype):
    x = np.arange(math.prod(shape), dtype=dtype).reshape(shape)
    k = keras.layers.Flatten(data_format=data_format, dtype=dtype)
    mine = Flatten(**k.get_config())
    check_contract(mine, k, x.shape)
    assert_close(mine.forward(x), run_keras(k, x), label=f"Flatten {data_format}")


def test_flatten_is_row_major_over_h_w_c():
    x = np.arange(2 * 2 * 3).reshape(1, 2, 2, 3)  # value = ((h * 2) + w) * 3 + c
    np.testing.assert_array_equal(Flatten().forward(x)[0], np.arange(12))


@st.composite
def reshape_cases(draw):
    shape = draw(shapes(1, 4))
    size = math.prod(shape[1:])
    factors, rest = [], size
    for p in (2, 3, 5):
        while rest % p == 0 and draw(st.booleans()):
            factors.append(p)
            rest //= p
    target = draw(st.permutations(factors + [rest]))
    if draw(st.booleans()):
        target[draw(st.integers(0, len(target) - 1))] = -1
    return shape, tuple(target)


@given(case=reshape_cases(), dtype=DTYPES)
@example(case=((2, 12), (3, 4)), dtype="float32")
@example(case=((2, 12), (-1, 2, 2)), dtype="float32")
@example(case=((3, 2, 3), (-1,)), dtype="float64")
def test_reshape_matches_keras(case, dtype):
    shape, target = case
    x = np.arange(math.prod(shape), dtype=dtype).reshape(shape)
    k = keras.layers.Reshape(target, dtype=dtype)
    mine = Reshape(**k.get_config())
    check_contract(mine, k, x.shape)
    assert_close(mine.forward(x), run_keras(k, x), label=f"Reshape {target}")


@pytest.mark.parametrize("layer,shape", [(Flatten(dtype="float64"), (2, 3, 2, 2)),
                                         (Flatten(data_format="channels_first", dtype="float64"), (2, 3, 2, 2)),
                                         (Reshape((-1, 3), dtype="float64"), (2, 2, 3, 2))])
def test_reshaping_gradients(layer, shape):
    rng = np.random.default_rng(0)
    check_layer_gradients(layer, rng.normal(size=shape), rng=rng, label=type(layer).__name__)


# ---- Dropout ----------------------------------------------------------------------------------
@given(rate=st.floats(0.0, 1.0), dtype=DTYPES, seed=SEEDS)
@example(rate=0.0, dtype="float32", seed=0)
@example(rate=1.0, dtype="float32", seed=0)
def test_dropout_is_identity_at_inference(rate, dtype, seed):
    x = np.random.default_rng(seed).normal(size=(3, 5)).astype(dtype)
    k = keras.layers.Dropout(rate, seed=seed, dtype=dtype)
    mine = Dropout(**k.get_config())
    check_contract(mine, k, x.shape)
    assert_close(mine.forward(x), run_keras(k, x, training=False), label="Dropout inference")
    np.testing.assert_array_equal(mine.backward(np.ones_like(x)), np.ones_like(x))


@given(rate=st.floats(0.05, 0.95), dtype=DTYPES, seed=SEEDS,
       noise_shape=st.sampled_from([None, (None, 1, None), (None, 1, 1), (1, None, 1)]))
@example(rate=0.5, dtype="float32", seed=0, noise_shape=None)
@example(rate=0.3, dtype="float64", seed=1, noise_shape=(None, 1, None))
def test_dropout_training_law_matches_keras(rate, dtype, seed, noise_shape):
    """TF's masks cannot be reproduced bit for bit, so compare what both must satisfy: each item is
    0 or x/(1-rate) with Keras's exact scaling, constant along noise_shape's size-1 axes, and kept
    with probability 1-rate."""
    x = (np.random.default_rng(seed).uniform(0.5, 2.0, size=(64, 6, 8))).astype(dtype)
    k = keras.layers.Dropout(rate, noise_shape=noise_shape, seed=seed, dtype=dtype)
    mine = Dropout(**k.get_config())
    theirs, ours = run_keras(k, x, training=True), mine.forward(x, training=True)
    keep_k, keep_m = theirs != 0, ours != 0
    both = keep_k & keep_m
    assert_close(ours[both], theirs[both], label="Dropout kept items")
    for keep in (keep_k, keep_m):
        for axis, d in enumerate(noise_shape or ()):
            if d == 1:
                assert (keep == keep.take([0], axis=axis)).all()
        n = math.prod(x.shape[a] for a, d in enumerate(noise_shape or (None,) * 3) if d != 1)
        kept = round(keep.mean() * n)
        assert binomtest(kept, n, 1 - rate).pvalue > 1e-6, (kept, n, rate)


def test_dropout_rate_one_gives_zeros_like_keras():
    x = np.ones((2, 3), dtype="float32")
    k = keras.layers.Dropout(1.0)
    np.testing.assert_array_equal(Dropout(1.0).forward(x, training=True), run_keras(k, x, training=True))


def test_dropout_seed_drives_the_mask_sequence():
    x = np.ones((4, 50))
    a, b = Dropout(0.5, seed=3), Dropout(0.5, seed=3)
    first, second = a.forward(x, training=True), a.forward(x, training=True)
    np.testing.assert_array_equal(first, b.forward(x, training=True))   # same seed, same masks
    assert not np.array_equal(first, second)                            # each call draws a new mask
    a.reseed(3)
    np.testing.assert_array_equal(a.forward(x, training=True), first)
    assert not np.array_equal(Dropout(0.5, seed=4).forward(x, training=True), first)


def test_dropout_backward_uses_the_forward_mask():
    rng = np.random.default_rng(0)
    layer = Dropout(0.4, seed=9, dtype="float64")
    x = rng.uniform(1, 2, size=(5, 7))
    y = layer.forward(x, training=True)
    dout = rng.normal(size=x.shape)
    np.testing.assert_allclose(layer.backward(dout), dout * y / x, rtol=1e-15)


class _FrozenMaskDropout(Dropout):
    """Restarts the seed on every call so that finite differences see one fixed mask."""

    def forward(self, x, training=False):
        self.reseed(self.seed)
        return super().forward(x, training=training)


@pytest.mark.parametrize("noise_shape", [None, (None, 1, None)])
def test_dropout_gradients(noise_shape):
    rng = np.random.default_rng(1)
    layer = _FrozenMaskDropout(0.3, noise_shape=noise_shape, seed=5, dtype="float64")
    check_layer_gradients(layer, rng.normal(size=(3, 4, 5)), rng=rng, label="Dropout",
                          forward_kwargs={"training": True})


# ---- masks and errors -------------------------------------------------------------------------
@pytest.mark.parametrize("cls,args", [(Dense, (2,)), (Activation, ("relu",)), (ReLU, ()), (Softmax, ()),
                                      (Dropout, (0.5,)), (Flatten, ()), (Reshape, ((-1,),))])
def test_mask_support_matches_keras(cls, args):
    mine, k = cls(*args), getattr(keras.layers, cls.__name__)(*args)
    assert mine.supports_masking == k.supports_masking
    mask = np.array([[True, False, True]])
    expected = mask if k.supports_masking else None
    assert mine.compute_mask(np.zeros((1, 3, 2)), mask) is expected


@pytest.mark.parametrize("make,match", [
    (lambda: Dense(0), r"units must be a positive integer\. Received: units=0"),
    (lambda: Dense(2.5), r"units must be a positive integer\. Received: units=2\.5"),
    (lambda: Dense(2, activation="relu9"), r"activation 'relu9' is not supported"),
    (lambda: Dense(2, kernel_size=3), r"Dense got unsupported arguments: \['kernel_size'\]"),
    (lambda: Activation("nope"), r"Received: activation='nope'"),
    (lambda: ReLU(max_value=-1), r"max_value of a ReLU layer cannot be a negative value\. Received: max_value=-1"),
    (lambda: ReLU(negative_slope=-0.1), r"negative_slope of a ReLU layer cannot be None or a negative value"),
    (lambda: ReLU(threshold=None), r"threshold of a ReLU layer cannot be None or a negative value"),
    (lambda: Softmax(axis="last"), r"axis must be an int or a list of ints\. Received: axis='last'"),
    (lambda: Softmax(axis=[]), r"axis must be an int or a list of ints\. Received: axis=\[\]"),
    (lambda: Flatten(data_format="nhwc"), r"data_format must be 'channels_last' or 'channels_first'\. "
                                          r"Received: data_format='nhwc'"),
    (lambda: Reshape((2, -2)), r"Each dimension in `target_shape` must be a non-negative integer"),
    (lambda: Reshape((-1, -1)), r"There must be at most one unknown dimension \(-1\) in `target_shape`"),
    (lambda: Dropout(1.5), r"Expected a float value between 0 and 1\. Received: rate=1\.5"),
    (lambda: Dropout(0.5, noise_shape="abc"), r"Invalid value received for argument `noise_shape`"),
    (lambda: Dropout(0.5, noise_shape=(2, 0)), r"Invalid value received for argument `noise_shape`"),
])
def test_bad_arguments_are_refused(make, match):
    with pytest.raises(LayerError, match=match):
        make()


def test_bad_inputs_are_refused():
    with pytest.raises(LayerError, match=r"The total size of the tensor must be unchanged\. "
                                         r"Received: input_shape=\(6,\), target_shape=\(4, 2\)"):
        Reshape((4, 2)).forward(np.zeros((1, 6)))
    with pytest.raises(LayerError, match=r"input size cannot by divided by the specified dimensions"):
        Reshape((-1, 4)).forward(np.zeros((1, 6)))
    with pytest.raises(LayerError, match=r"axis 3 is out of bounds for an input of rank 3"):
        Softmax(axis=3).forward(np.zeros((1, 2, 2)))
    with pytest.raises(LayerError, match=r"The `mask` must be broadcastable to `inputs`.*"
                                         r"inputs\.shape=\(2, 3, 4\), mask\.shape=\(2, 3\)"):
        Softmax().forward(np.zeros((2, 3, 4)), mask=np.ones((2, 3), bool))
    with pytest.raises(LayerError, match=r"Dense needs a known last input dimension"):
        Dense(2).build((None, None))
    layer = Dense(2)
    layer.build((None, 3))
    with pytest.raises(LayerError, match=r"weight 'kernel' has shape \(4, 2\), expected \(3, 2\)"):
        layer.set_weights([np.zeros((4, 2)), np.zeros(2)])
