"""scratch.layers.regularization against keras.layers: SpatialDropout1D/2D, GaussianNoise, GaussianDropout,
AlphaDropout, ActivityRegularization — identities at inference, Keras's law and arithmetic in training mode
(TF's random streams cannot be reproduced, so training draws are compared by what both must satisfy)."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest, kstest

from parity.tolerance import assert_close, assert_gradient_close, numerical_gradient
from scratch.layers.base import LayerError
from scratch.layers.regularization import (ActivityRegularization, AlphaDropout, GaussianDropout, GaussianNoise,
                                           SpatialDropout1D, SpatialDropout2D)
from tests.support import check_layer_gradients

DTYPES = st.sampled_from(["float32", "float64"])
SEEDS = st.integers(0, 2**31 - 1)
P_FLOOR = 1e-6   # a law test fails only when the draws are wildly unlikely under the stated law

CASES = {   # class -> (constructor kwargs, input shape)
    SpatialDropout1D: (dict(rate=0.3), (3, 4, 5)),
    SpatialDropout2D: (dict(rate=0.3), (2, 3, 4, 5)),
    GaussianNoise: (dict(stddev=0.2), (3, 4)),
    GaussianDropout: (dict(rate=0.3), (3, 4)),
    AlphaDropout: (dict(rate=0.3), (3, 4)),
    ActivityRegularization: (dict(l1=0.01, l2=0.02), (3, 4)),
}


def keras_twin(cls, kwargs, dtype="float32", seed=None):
    extra = {} if cls is ActivityRegularization else {"seed": seed}
    k = getattr(keras.layers, cls.__name__)(**kwargs, **extra, dtype=dtype)
    return k, cls(**k.get_config())


def run_keras(layer, x, **kwargs):
    return np.asarray(layer(tf.constant(x), **kwargs))


# ---- inference: the identity, forward and backward ---------------------------------------------
@given(cls=st.sampled_from(sorted(CASES, key=lambda c: c.__name__)), rate=st.floats(0.0, 1.0), dtype=DTYPES,
       seed=SEEDS)
@example(cls=SpatialDropout2D, rate=1.0, dtype="float32", seed=0)
@example(cls=GaussianDropout, rate=0.0, dtype="float64", seed=1)
@example(cls=AlphaDropout, rate=0.5, dtype="float64", seed=2)
def test_inference_is_the_identity_like_keras(cls, rate, dtype, seed):
    kwargs, shape = CASES[cls]
    kwargs = {name: rate for name in kwargs}
    k, mine = keras_twin(cls, kwargs, dtype, seed)
    x = np.random.default_rng(seed).normal(size=shape).astype(dtype)
    assert_close(mine.forward(x), run_keras(k, x, training=False), label=f"{cls.__name__} inference")
    np.testing.assert_array_equal(mine.backward(np.ones_like(x)), np.ones_like(x))
    batchless = (None, *shape[1:])
    assert mine.compute_output_shape(batchless) == tuple(k.compute_output_shape(batchless))
    assert mine.supports_masking == k.supports_masking is True
    mask = np.ones(shape[:2], bool)
    assert mine.compute_mask(x, mask) is mask


# ---- training: Keras's law and arithmetic ------------------------------------------------------
@given(cls=st.sampled_from([SpatialDropout1D, SpatialDropout2D]), rate=st.floats(0.05, 0.95), dtype=DTYPES,
       seed=SEEDS)
@settings(max_examples=8)
@example(cls=SpatialDropout1D, rate=0.5, dtype="float32", seed=0)
@example(cls=SpatialDropout2D, rate=0.2, dtype="float64", seed=1)
def test_spatial_dropout_drops_whole_channels_like_keras(cls, rate, dtype, seed):
    """Each (item, channel) is kept or dropped whole, kept items are x/(1-rate) with Keras's rounding,
    and the kept share of channels is binomial(1 - rate) on both sides."""
    spatial = (6,) if cls is SpatialDropout1D else (3, 2)
    x = np.random.default_rng(seed).uniform(0.5, 2.0, size=(40, *spatial, 8)).astype(dtype)
    k, mine = keras_twin(cls, dict(rate=rate), dtype, seed)
    theirs, ours = run_keras(k, x, training=True), mine.forward(x, training=True)
    both = (theirs != 0) & (ours != 0)
    assert_close(ours[both], theirs[both], label=f"{cls.__name__} kept items")
    axes = tuple(range(1, x.ndim - 1))
    for keep in (theirs != 0, ours != 0):
        assert (keep.all(axis=axes) == keep.any(axis=axes)).all()     # whole channels only
        channels = keep.any(axis=axes)
        assert binomtest(int(channels.sum()), channels.size, 1 - rate).pvalue > P_FLOOR


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gaussian_noise_adds_normal_noise_like_keras(dtype):
    stddev = 0.3
    x = np.random.default_rng(0).normal(size=(50, 40)).astype(dtype)
    k, mine = keras_twin(GaussianNoise, dict(stddev=stddev), dtype, seed=1)
    for y in (run_keras(k, x, training=True), mine.forward(x, training=True)):
        assert y.dtype == x.dtype
        assert kstest(((y - x) / stddev).ravel().astype(np.float64), "norm").pvalue > P_FLOOR


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gaussian_dropout_multiplies_by_normal_noise_like_keras(dtype):
    rate = 0.4
    stddev = math.sqrt(rate / (1 - rate))
    x = np.random.default_rng(0).uniform(0.5, 2.0, size=(50, 40)).astype(dtype)
    k, mine = keras_twin(GaussianDropout, dict(rate=rate), dtype, seed=1)
    for y in (run_keras(k, x, training=True), mine.forward(x, training=True)):
        assert y.dtype == x.dtype
        assert kstest(((y / x - 1) / stddev).ravel().astype(np.float64), "norm").pvalue > P_FLOOR


@given(rate=st.floats(0.05, 0.95), dtype=DTYPES, seed=SEEDS,
       noise_shape=st.sampled_from([None, (None, 1, None), (1, None, None)]))
@settings(max_examples=8)
@example(rate=0.5, dtype="float32", seed=0, noise_shape=None)
@example(rate=0.1, dtype="float64", seed=1, noise_shape=(None, 1, None))
def test_alpha_dropout_matches_keras_arithmetic(rate, dtype, seed, noise_shape):
    """Kept items are a*x + b and dropped ones a*alpha' + b, each with Keras's rounding; the
    kept share is binomial(1 - rate) over the noise shape on both sides."""
    x = np.random.default_rng(seed).normal(size=(30, 5, 6)).astype(dtype)
    k, mine = keras_twin(AlphaDropout, dict(rate=rate, noise_shape=noise_shape), dtype, seed)
    theirs, ours = run_keras(k, x, training=True), mine.forward(x, training=True)
    keep_m = np.broadcast_to(mine._factor != 0, x.shape)
    t = np.dtype(dtype).type
    alpha_p = -1.6732632423543772848170429916717 * 1.0507009873554804934193349852946
    a = ((1 - rate) * (1 + rate * alpha_p ** 2)) ** -0.5
    dropped_value = t(a) * t(alpha_p) + t(-a * alpha_p * rate)     # Keras's a * alpha' + b, in dtype
    keep_k = theirs != dropped_value
    assert (ours[~keep_m] == dropped_value).all()
    both = keep_k & keep_m
    assert_close(ours[both], theirs[both], label="AlphaDropout kept items")
    n = math.prod(x.shape[i] for i, d in enumerate(noise_shape or (None,) * 3) if d != 1)
    for keep in (keep_k, keep_m):
        for axis, d in enumerate(noise_shape or ()):
            if d == 1:
                assert (keep == keep.take([0], axis=axis)).all()
        assert binomtest(round(keep.mean() * n), n, 1 - rate).pvalue > P_FLOOR


@given(l1=st.floats(0.0, 1.0), l2=st.floats(0.0, 1.0), dtype=DTYPES, seed=SEEDS)
@settings(max_examples=6)
@example(l1=0.0, l2=0.0, dtype="float32", seed=0)
@example(l1=0.01, l2=0.5, dtype="float64", seed=1)
def test_activity_regularization_penalty_matches_keras(l1, l2, dtype, seed):
    x = np.random.default_rng(seed).normal(size=(4, 3, 2)).astype(dtype)
    k, mine = keras_twin(ActivityRegularization, dict(l1=l1, l2=l2), dtype)
    assert_close(mine.forward(x, training=True), run_keras(k, x, training=True), label="ActivityRegularization")
    want = float(np.asarray(k.losses[-1])) if k.losses else 0.0
    assert_close(np.asarray(mine.loss, dtype), np.asarray(want, dtype), label="activity penalty", reduction=x.size)
    mine.forward(x, training=False)
    assert mine.loss == 0.0


@pytest.mark.parametrize("cls", [SpatialDropout1D, GaussianNoise, GaussianDropout, AlphaDropout])
def test_seed_drives_the_noise_sequence(cls):
    kwargs, shape = CASES[cls]
    x = np.ones((8, *shape[1:]))
    a, b = cls(**kwargs, seed=3), cls(**kwargs, seed=3)
    first, second = a.forward(x, training=True), a.forward(x, training=True)
    np.testing.assert_array_equal(first, b.forward(x, training=True))
    assert not np.array_equal(first, second)
    a.reseed(3)
    np.testing.assert_array_equal(a.forward(x, training=True), first)
    assert not np.array_equal(cls(**kwargs, seed=4).forward(x, training=True), first)


# ---- gradients (float64 centered differences, training mode with the noise held fixed) ----------
def frozen(layer):
    """Restart the layer's seed on every forward, so that finite differences see one fixed draw."""
    forward = layer.forward

    def fixed(x, training=False):
        layer.reseed(layer.seed)
        return forward(x, training=training)

    layer.forward = fixed
    return layer


@pytest.mark.parametrize("cls", [SpatialDropout1D, SpatialDropout2D, GaussianNoise, GaussianDropout, AlphaDropout])
def test_training_gradients(cls):
    kwargs, shape = CASES[cls]
    rng = np.random.default_rng(6)
    layer = frozen(cls(**kwargs, seed=7, dtype="float64"))
    errors = check_layer_gradients(layer, rng.normal(size=shape), rng=rng, label=cls.__name__,
                                   forward_kwargs={"training": True})
    assert set(errors) == {"dx0"}


def test_activity_regularization_gradient_includes_the_penalty():
    rng = np.random.default_rng(8)
    layer = ActivityRegularization(l1=0.3, l2=0.2, dtype="float64")
    x = rng.normal(size=(3, 4))
    dout = rng.normal(size=x.shape)
    layer.forward(x, training=True)
    dx = layer.backward(dout)

    def objective_terms():   # sum(y * dout) + penalty, as numerical_gradient sums f() * 1
        y = layer.forward(x, training=True)
        return np.sum(y * dout) + layer.loss

    numeric = numerical_gradient(objective_terms, x, 1.0)
    assert_gradient_close(dx, numeric, label="ActivityRegularization training dx")
    layer.forward(x, training=False)
    np.testing.assert_array_equal(layer.backward(dout), dout)


# ---- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("make, message", [
    (lambda: SpatialDropout1D(1.5), r"Invalid value received for argument `rate`. Expected a float value between 0 "
                                    r"and 1. Received: rate=1.5"),
    (lambda: SpatialDropout2D(0.5, data_format="channels_first"), r"SpatialDropout2D supports "
                                                                  r"data_format='channels_last' only"),
    (lambda: GaussianNoise(-0.1), r"Expected a float value between 0 and 1. Received: stddev=-0.1"),
    (lambda: GaussianNoise("0.1"), r"Received: stddev=0.1"),
    (lambda: GaussianDropout(2), r"Received: rate=2"),
    (lambda: AlphaDropout(-1), r"Received: rate=-1"),
    (lambda: AlphaDropout(0.5, noise_shape=(2, 0)), r"Invalid value received for argument `noise_shape`"),
    (lambda: ActivityRegularization(l1=-1.0), r"Invalid value for argument l1: expected a non-negative float. "
                                              r"Received: l1=-1.0"),
    (lambda: ActivityRegularization(l2=float("inf")), r"Invalid value for argument l2"),
    (lambda: GaussianNoise(0.1, bogus=1), r"GaussianNoise got unsupported arguments: \['bogus'\]"),
])
def test_bad_arguments_are_refused(make, message):
    with pytest.raises(LayerError, match=message):
        make()


@pytest.mark.parametrize("make, x, message", [
    (lambda: SpatialDropout1D(0.5), np.zeros((2, 3)), r"SpatialDropout1D expects input of rank 3 \(N, steps, C\)"),
    (lambda: SpatialDropout2D(0.5), np.zeros((2, 3, 4)), r"SpatialDropout2D expects input of rank 4"),
    (lambda: GaussianDropout(1.0), np.zeros((2, 3)), r"GaussianDropout with rate=1 has an infinite noise stddev"),
    (lambda: AlphaDropout(1.0), np.zeros((2, 3)), r"AlphaDropout with rate=1 has no finite scale"),
    (lambda: AlphaDropout(0.5, noise_shape=(None, 1)), np.zeros((2, 3, 4)), r"noise_shape \(None, 1\) does not "
                                                                             r"match the input rank 3"),
])
def test_bad_training_inputs_are_refused(make, x, message):
    with pytest.raises(LayerError, match=message):
        make().forward(x, training=True)
