"""LayerNormalization, GroupNormalization and UnitNormalization against the real Keras layers, forward and backward."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import example, given, settings
from hypothesis import strategies as st

from parity.tolerance import assert_close, tolerance
from scratch.layers.base import LayerError
from scratch.layers.layer_normalization import GroupNormalization, LayerNormalization, UnitNormalization
from tests.support import check_layer_gradients, randomize_keras_weights

pytestmark = pytest.mark.filterwarnings("ignore:You passed `rms_scaling=True`")

DTYPES = st.sampled_from(["float32", "float64"])
SEEDS = st.integers(0, 2**31 - 1)


def keras_value_and_grads(layer, x, dy):
    t = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(t)
        y = layer(t)
    grads = tape.gradient(y, [t, *layer.trainable_weights], output_gradients=tf.constant(dy))
    return y.numpy(), [g.numpy() for g in grads]


def twins(keras_layer, scratch_cls, shape, rng):
    keras_layer.build(shape)
    randomize_keras_weights(keras_layer, rng)
    mine = scratch_cls(**keras_layer.get_config())
    mine.build((None, *shape[1:]))
    assert mine.active_weight_names() == tuple(w.name for w in keras_layer.weights)
    assert mine.count_params() == keras_layer.count_params()
    assert mine.compute_output_shape((None, *shape[1:])) == tuple(keras_layer.compute_output_shape((None, *shape[1:])))
    assert mine.supports_masking == keras_layer.supports_masking
    mine.set_weights(keras_layer.get_weights())
    return mine


def term_scales(x, axes, epsilon, gamma, dy):
    """Magnitudes of the terms that cancel in a normalization, for the tolerance rule's ``scale``.

    ``y = x * inv - mean * inv`` subtracts two terms of size ``|x| * inv`` (inv = gamma / std) to
    leave an O(1) result, so its rounding error is eps * |x| * inv, not eps * |y|: when a sample's
    spread is small against its mean (hypothesis finds such samples), Keras's own float32 output is
    that far from the float64 one. The gradients carry the same factor ``|x| / std``.
    """
    x = x.astype(np.float64)
    rstd = float(np.max(1.0 / np.sqrt(np.var(x, axis=axes, keepdims=True) + epsilon)))
    amp = float(np.max(np.abs(x))) * rstd
    g = 1.0 if gamma is None else max(1.0, float(np.max(np.abs(gamma))))
    d = float(np.max(np.abs(dy)))
    return dict(y=amp * g, dx=d * g * rstd * max(1.0, amp), gamma=d * max(1.0, amp), beta=d)


def check_forward_and_backward(keras_layer, mine, x, rng, label, n, scales=None):
    """Output, dx and every weight gradient against Keras + tf.GradientTape; ``n`` = normalized count.

    ``scales(dy)`` gives the terms' magnitudes (``term_scales``); None: the outputs' own.
    """
    dy = rng.normal(size=x.shape).astype(x.dtype)
    y_k, grads_k = keras_value_and_grads(keras_layer, x, dy)
    sc = scales(dy) if scales else {}

    def atol(key, reduction):
        return tolerance(x.dtype, scale=sc[key], reduction=reduction)[0] if key in sc else None

    assert_close(mine.forward(x), y_k, label=label, reduction=n, atol=atol("y", n))
    assert_close(mine.backward(dy), grads_k[0], label=f"{label} dx", reduction=n, atol=atol("dx", n))
    for name, g in zip(mine.trainable_weight_names(), grads_k[1:]):
        m = n * x.size // g.size
        assert_close(mine.grads[name], g, label=f"{label} d{name}", reduction=m, atol=atol(name, m))


def sample(shape, dtype, rng):
    return rng.normal(0.5, 2.0, size=shape).astype(dtype)


# ---- LayerNormalization -----------------------------------------------------------------------
@st.composite
def ln_cases(draw):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=2, max_size=4)))
    rank = len(shape)
    choices = [a for a in range(-rank, rank) if a % rank != 0]
    axis = draw(st.one_of(st.sampled_from(choices),
                          st.lists(st.sampled_from(choices), min_size=1, max_size=rank - 1, unique_by=lambda a: a % rank)))
    config = dict(axis=axis, epsilon=draw(st.sampled_from([1e-3, 1e-6, 0.5])), center=draw(st.booleans()),
                  scale=draw(st.booleans()), rms_scaling=draw(st.sampled_from([False, False, True])))
    return shape, config


LN_PINS = [((2, 5), dict(axis=-1, epsilon=1e-3, center=True, scale=True, rms_scaling=False)),
           ((2, 3, 4, 2), dict(axis=[-1, 1], epsilon=1e-6, center=True, scale=True, rms_scaling=False)),  # mixed signs
           ((2, 3, 4), dict(axis=[1, 2], epsilon=0.5, center=False, scale=True, rms_scaling=True)),
           ((3, 1), dict(axis=1, epsilon=1e-3, center=True, scale=False, rms_scaling=False)),  # one element: var 0
           ((2, 4, 3), dict(axis=-2, epsilon=1e-3, center=False, scale=False, rms_scaling=True))]


def normalized_count(shape, axis):
    axes = {a % len(shape) for a in (axis if isinstance(axis, list) else [axis])}
    return math.prod(shape[a] for a in axes)


def pinned(cases):
    def wrap(test):
        for i, case in enumerate(cases):
            test = example(case=case, dtype="float32" if i % 2 else "float64", seed=i)(test)
        return test
    return wrap


@settings(max_examples=12)
@given(case=ln_cases(), dtype=DTYPES, seed=SEEDS)
@pinned(LN_PINS)
def test_layer_normalization_matches_keras(case, dtype, seed):
    shape, config = case
    rng = np.random.default_rng(seed)
    k = keras.layers.LayerNormalization(**config, dtype=dtype)
    mine = twins(k, LayerNormalization, shape, rng)
    x = sample(shape, dtype, rng)
    axes = tuple({a % len(shape) for a in np.atleast_1d(config["axis"])})
    gamma = mine.weights.get("gamma")
    check_forward_and_backward(k, mine, x, rng, f"LN {shape} {config} {dtype}", normalized_count(shape, config["axis"]),
                               scales=lambda dy: term_scales(x, axes, config["epsilon"], gamma, dy))


LN_GRADS = [((3, 4), dict()), ((2, 3, 4), dict(axis=[1, 2])), ((2, 3, 2, 2), dict(axis=[-1, 1], epsilon=1e-6)),
            ((3, 4), dict(center=False)), ((3, 4), dict(scale=False, center=False)),
            ((2, 3, 4), dict(axis=[-2, -1], rms_scaling=True)), ((3, 5), dict(rms_scaling=True, scale=False))]


@pytest.mark.parametrize("shape,config", LN_GRADS)
def test_layer_normalization_gradients(shape, config):
    rng = np.random.default_rng(11)
    layer = LayerNormalization(**config, dtype="float64")
    layer.build((None, *shape[1:]), rng=rng)
    errors = check_layer_gradients(layer, sample(shape, "float64", rng), rng=rng, label=f"LN {config}")
    assert set(errors) == {"dx0", *layer.trainable_weight_names()}


def test_layer_normalization_float16_computes_in_float32():
    """Keras computes the moments of a float16 layer in float32 and casts the result back."""
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(4, 64)) * 300).astype("float16")   # squares overflow float16's 65504
    k = keras.layers.LayerNormalization(dtype="float16")
    k.build(x.shape)
    mine = LayerNormalization(**k.get_config())
    mine.set_weights(k.get_weights())
    y = mine.forward(x)
    assert y.dtype == np.float16 and np.all(np.isfinite(y))
    np.testing.assert_allclose(y.astype(np.float64), k(x).numpy().astype(np.float64), atol=2e-3, rtol=2e-3)


# ---- GroupNormalization -----------------------------------------------------------------------
@st.composite
def gn_cases(draw):
    groups = draw(st.sampled_from([1, 2, 3, -1]))
    per_group = draw(st.integers(1, 3))
    channels = (groups if groups > 0 else draw(st.integers(1, 4))) * per_group
    spatial = draw(st.lists(st.integers(1, 3), min_size=0, max_size=2))
    shape = [draw(st.integers(1, 3)), *spatial]
    rank = len(shape) + 1
    axis = draw(st.sampled_from([-1, rank - 1] + ([1, -rank + 1] if rank > 2 else [])))
    shape.insert(axis % rank, channels)
    config = dict(groups=groups, axis=axis, epsilon=draw(st.sampled_from([1e-3, 1e-5, 0.5])),
                  center=draw(st.booleans()), scale=draw(st.booleans()))
    return tuple(shape), config


GN_PINS = [((2, 3, 3, 4), dict(groups=2, axis=-1, epsilon=1e-3, center=True, scale=True)),
           ((2, 6, 3), dict(groups=3, axis=1, epsilon=1e-5, center=True, scale=False)),     # channels first-ish
           ((2, 4), dict(groups=-1, axis=-1, epsilon=1e-3, center=False, scale=True)),      # instance norm, 1 element
           ((1, 2, 2, 3), dict(groups=1, axis=3, epsilon=0.5, center=True, scale=True))]    # one group = LN


@settings(max_examples=12)
@given(case=gn_cases(), dtype=DTYPES, seed=SEEDS)
@pinned(GN_PINS)
def test_group_normalization_matches_keras(case, dtype, seed):
    shape, config = case
    rng = np.random.default_rng(seed)
    k = keras.layers.GroupNormalization(**config, dtype=dtype)
    mine = twins(k, GroupNormalization, shape, rng)
    assert mine.groups == k.get_config()["groups"]   # -1 becomes the channel count, as in Keras
    groups, axis = mine.groups, config["axis"] % len(shape)
    n = math.prod(shape[1:]) // groups
    x = sample(shape, dtype, rng)
    grouped = x.reshape(*shape[:axis], groups, shape[axis] // groups, *shape[axis + 1:])
    axes = tuple(a for a in range(1, grouped.ndim) if a != axis)
    gamma = mine.weights.get("gamma")
    check_forward_and_backward(k, mine, x, rng, f"GN {shape} {config} {dtype}", n,
                               scales=lambda dy: term_scales(grouped, axes, config["epsilon"], gamma, dy))


@pytest.mark.parametrize("shape,config", [((2, 3, 4), dict(groups=2)), ((2, 6, 2), dict(groups=3, axis=1)),
                                          ((2, 2, 2, 4), dict(groups=-1, center=False)),
                                          ((3, 4), dict(groups=2, scale=False))])
def test_group_normalization_gradients(shape, config):
    rng = np.random.default_rng(12)
    layer = GroupNormalization(**config, dtype="float64")
    layer.build((None, *shape[1:]), rng=rng)
    errors = check_layer_gradients(layer, sample(shape, "float64", rng), rng=rng, label=f"GN {config}")
    assert set(errors) == {"dx0", *layer.trainable_weight_names()}


# ---- UnitNormalization ------------------------------------------------------------------------
@settings(max_examples=10)
@given(shape=st.lists(st.integers(1, 4), min_size=2, max_size=4).map(tuple), data=st.data(), dtype=DTYPES,
       seed=SEEDS)
@example(shape=(3, 4), data=None, dtype="float32", seed=0)
@example(shape=(2, 3, 2), data=None, dtype="float64", seed=1)
def test_unit_normalization_matches_keras(shape, data, dtype, seed):
    rank = len(shape)
    axis = -1 if data is None else data.draw(st.one_of(
        st.sampled_from(range(1, rank)), st.lists(st.integers(1, rank - 1), min_size=1, unique=True)), label="axis")
    rng = np.random.default_rng(seed)
    k = keras.layers.UnitNormalization(axis=axis, dtype=dtype)
    mine = UnitNormalization(**k.get_config())
    assert mine.compute_output_shape((None, *shape[1:])) == tuple(k.compute_output_shape((None, *shape[1:])))
    x = sample(shape, dtype, rng)
    x[0] = 0.0 if data is None else x[0]           # a zero vector: the 1e-12 cap is active
    x[-1] *= 1e-14 if data is None else 1.0        # a tiny one: capped too, and not a zero
    dy = rng.normal(size=shape).astype(dtype)
    y_k, (dx_k,) = keras_value_and_grads(k, x, dy)
    n = normalized_count(shape, axis)
    assert_close(mine.forward(x), y_k, label=f"UnitNorm {axis} {dtype}", reduction=n)
    assert_close(mine.backward(dy), dx_k, label=f"UnitNorm {axis} {dtype} dx", reduction=n)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_tf_keras_unit_normalization_floors_the_squared_norm(dtype):
    """tf_keras's layer is tf.linalg.l2_normalize: x / max(||x||, 1e-6), not Keras 3's max(||x||, 1e-12)."""
    import tf_keras

    from scratch.saving.registry import make_layer

    rng = np.random.default_rng(14)
    x = sample((4, 5), dtype, rng)
    x[1] *= 1e-8        # norm ~1e-8: floored in tf_keras only
    x[2] = 0.0
    dy = rng.normal(size=x.shape).astype(dtype)
    k = tf_keras.layers.UnitNormalization(axis=-1, dtype=dtype)
    entry = {"class_name": "UnitNormalization", "config": k.get_config()}
    mine = make_layer(entry, flavor="tf_keras")
    y_k, (dx_k,) = keras_value_and_grads(k, x, dy)
    assert_close(mine.forward(x), y_k, label=f"tf_keras UnitNorm {dtype}", reduction=5)
    assert_close(mine.backward(dy), dx_k, label=f"tf_keras UnitNorm {dtype} dx", reduction=5)
    keras3 = make_layer(entry, flavor="keras3").forward(x)
    assert not np.allclose(keras3[1], y_k[1])   # the two conventions do differ there


@pytest.mark.parametrize("axis", [-1, [1, 2]])
def test_unit_normalization_gradients(axis):
    rng = np.random.default_rng(13)
    layer = UnitNormalization(axis=axis, dtype="float64")
    check_layer_gradients(layer, sample((2, 3, 4), "float64", rng), rng=rng, label=f"UnitNorm {axis}")


# ---- errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize("make,match", [
    (lambda: LayerNormalization(axis="last"), r"axis must be an int or a list of ints\. Received: axis='last'"),
    (lambda: LayerNormalization(axis=[]), r"axis must be an int or a list of ints\. Received: axis=\[\]"),
    (lambda: LayerNormalization(epsilon=-1.0), r"epsilon must be a non-negative float\. Received: epsilon=-1\.0"),
    (lambda: LayerNormalization(axis=3).build((None, 4, 4)),
     r"Axis 3 is out of bounds for input shape \(None, 4, 4\)\. Received: axis=3"),
    (lambda: LayerNormalization(axis=[-1, 2]).build((None, 4, 4)), r"axis names the same axis twice"),
    (lambda: LayerNormalization(axis=0).build((None, 4)), r"normalizing over the batch axis is not supported"),
    (lambda: LayerNormalization().build((None, None)), r"needs a known size on axis -1"),
    (lambda: GroupNormalization(groups=0), r"expected a positive integer \(or `-1` for instance normalization\)\. "
                                           r"Received: groups=0"),
    (lambda: GroupNormalization(groups=4).build((None, 3)),
     r"Number of groups \(4\) cannot be more than the number of channels \(3\)\."),
    (lambda: GroupNormalization(groups=2).build((None, 3)),
     r"Number of groups \(2\) must be a multiple of the number of channels \(3\)\."),
    (lambda: GroupNormalization(groups=1, axis=[1]), r"axis must be a single int\. Received: axis=\[1\]"),
    (lambda: GroupNormalization(groups=1).build((None, None)), r"Axis -1 of input tensor should have a defined"),
    (lambda: UnitNormalization(axis=1.5), r"axis must be an int or a list of ints\. Received: axis=1\.5"),
    (lambda: UnitNormalization(axis=[1, 4]).compute_output_shape((None, 2, 3)), r"Axis 4 is out of bounds"),
])
def test_errors(make, match):
    with pytest.raises(LayerError, match=match):
        make()
