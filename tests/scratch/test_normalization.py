"""scratch.layers.normalization.BatchNormalization against keras.layers.BatchNormalization."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import example, given
from hypothesis import strategies as st

from parity.tolerance import assert_close
from scratch.layers.base import LayerError
from scratch.layers.normalization import BatchNormalization
from tests.support import check_layer_gradients, randomize_keras_weights

DTYPES = st.sampled_from(["float32", "float64"])
SEEDS = st.integers(0, 2**31 - 1)


@st.composite
def bn_cases(draw):
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=2, max_size=4)))
    rank = len(shape)
    axis = draw(st.sampled_from([a for a in range(-rank, rank) if a % rank != 0]))  # never the batch axis
    config = dict(axis=axis, momentum=draw(st.sampled_from([0.99, 0.9, 0.5, 0.0])),
                  epsilon=draw(st.sampled_from([1e-3, 1.001e-5, 0.1])),
                  center=draw(st.booleans()), scale=draw(st.booleans()))
    return shape, config


EXAMPLES = [((4, 3), dict(axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True)),
            ((2, 3, 4, 5), dict(axis=3, momentum=0.9, epsilon=1.001e-5, center=True, scale=True)),
            ((2, 3, 4, 5), dict(axis=1, momentum=0.5, epsilon=0.1, center=False, scale=True)),
            ((3, 2, 4), dict(axis=-2, momentum=0.99, epsilon=1e-3, center=True, scale=False)),
            ((1, 6), dict(axis=1, momentum=0.0, epsilon=1e-3, center=False, scale=False))]


def twins(shape, config, dtype, rng):
    """A built Keras layer with random weights (non-trivial moving statistics) and its scratch copy."""
    k = keras.layers.BatchNormalization(**config, dtype=dtype)
    k.build(shape)
    randomize_keras_weights(k, rng)
    mine = BatchNormalization(**k.get_config())
    mine.build(shape)
    mine.set_weights(k.get_weights())
    return k, mine


def batch_input(shape, dtype, rng):
    # An offset and a spread that differ from the moving statistics, so that modes are told apart.
    return (rng.normal(0.7, 2.0, size=shape)).astype(dtype)


def reduced_count(shape, axis):
    return math.prod(shape) // shape[axis]


def with_examples(test):
    for shape, config in EXAMPLES:
        test = example(case=(shape, config), dtype="float32", seed=0)(test)
        test = example(case=(shape, config), dtype="float64", seed=1)(test)
    return test


@given(case=bn_cases(), dtype=DTYPES, seed=SEEDS)
@with_examples
def test_inference_matches_keras(case, dtype, seed):
    shape, config = case
    rng = np.random.default_rng(seed)
    k, mine = twins(shape, config, dtype, rng)
    x = batch_input(shape, dtype, rng)
    assert mine.active_weight_names() == tuple(w.name for w in k.weights)
    assert mine.trainable_weight_names() == tuple(w.name for w in k.trainable_weights)
    assert mine.count_params() == k.count_params()
    assert mine.compute_output_shape((None, *shape[1:])) == tuple(k.compute_output_shape((None, *shape[1:])))
    assert_close(mine.forward(x), np.asarray(k(x, training=False)), label=f"BN inference {config}")


@given(case=bn_cases(), dtype=DTYPES, seed=SEEDS)
@with_examples
def test_training_matches_keras(case, dtype, seed):
    shape, config = case
    rng = np.random.default_rng(seed)
    k, mine = twins(shape, config, dtype, rng)
    n = reduced_count(shape, config["axis"])
    for step in range(2):  # the second step starts from the updated moving statistics
        x = batch_input(shape, dtype, rng)
        label = f"BN training step {step} {config}"
        assert_close(mine.forward(x, training=True), np.asarray(k(x, training=True)), label=label, reduction=n)
        assert_close(mine.weights["moving_mean"], k.moving_mean.numpy(), label=f"{label} moving_mean", reduction=n)
        assert_close(mine.weights["moving_variance"], k.moving_variance.numpy(), label=f"{label} moving_variance",
                     reduction=n)
    assert_close(mine.forward(x), np.asarray(k(x, training=False)), label="BN inference after training")


@given(shape=st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(1, 4)), dtype=DTYPES, seed=SEEDS)
@example(shape=(2, 5, 3), dtype="float32", seed=0)
@example(shape=(1, 1, 2), dtype="float64", seed=0)
def test_masked_training_matches_keras(shape, dtype, seed):
    """Keras's masked moments (mask = x.shape[:-1]); a fully masked batch must still match (0/1e-7)."""
    rng = np.random.default_rng(seed)
    config = dict(axis=-1, momentum=0.9, epsilon=1e-3, center=True, scale=True)
    k, mine = twins(shape, config, dtype, rng)
    x = batch_input(shape, dtype, rng)
    mask = rng.random(shape[:-1]) < 0.6
    n = reduced_count(shape, -1)
    y_k = np.asarray(k(x, training=True, mask=tf.constant(mask)))
    assert_close(mine.forward(x, training=True, mask=mask), y_k, label="BN masked training", reduction=n)
    assert_close(mine.weights["moving_mean"], k.moving_mean.numpy(), label="masked moving_mean", reduction=n)
    assert_close(mine.weights["moving_variance"], k.moving_variance.numpy(), label="masked moving_var", reduction=n)
    assert mine.compute_mask(x, mask) is mask


def test_frozen_layer_runs_in_inference_mode_like_keras():
    rng = np.random.default_rng(4)
    k, _ = twins((4, 3), {}, "float32", rng)
    k.trainable = False
    mine = BatchNormalization(**k.get_config())
    mine.set_weights(k.get_weights())
    before = mine.weights["moving_mean"].copy()
    x = batch_input((4, 3), "float32", rng)
    assert_close(mine.forward(x, training=True), np.asarray(k(x, training=True)), label="frozen BN")
    np.testing.assert_array_equal(mine.weights["moving_mean"], before)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("training", [False, True])
def test_backward_matches_tensorflow_autodiff(dtype, training):
    rng = np.random.default_rng(6)
    shape, config = (3, 4, 2, 5), dict(axis=-1, momentum=0.9, epsilon=1e-3, center=True, scale=True)
    k, mine = twins(shape, config, dtype, rng)
    x, dy = batch_input(shape, dtype, rng), rng.normal(size=shape).astype(dtype)
    t = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(t)
        y = k(t, training=training)
    dx_k, dgamma_k, dbeta_k = tape.gradient(y, [t, k.gamma, k.beta], output_gradients=tf.constant(dy))
    mine.forward(x, training=training)
    n = reduced_count(shape, -1)
    assert_close(mine.backward(dy), dx_k.numpy(), label=f"BN dx training={training}", reduction=n)
    assert_close(mine.grads["gamma"], dgamma_k.numpy(), label="BN dgamma", reduction=n)
    assert_close(mine.grads["beta"], dbeta_k.numpy(), label="BN dbeta", reduction=n)


GRAD_CASES = [((3, 4), dict()), ((2, 3, 4), dict(axis=1)), ((2, 2, 3, 2), dict(axis=-1, epsilon=1.001e-5)),
              ((4, 3), dict(center=False)), ((4, 3), dict(scale=False)), ((4, 3), dict(center=False, scale=False))]


@pytest.mark.parametrize("shape,config", GRAD_CASES)
@pytest.mark.parametrize("training", [False, True])
def test_gradients(shape, config, training):
    rng = np.random.default_rng(8)
    layer = BatchNormalization(**config, dtype="float64")
    layer.build(shape, rng=rng)
    errors = check_layer_gradients(layer, batch_input(shape, "float64", rng), rng=rng,
                                   label=f"BN {config} training={training}", forward_kwargs={"training": training})
    assert set(errors) == {"dx0", *layer.trainable_weight_names()}
    assert set(layer.grads) == set(layer.trainable_weight_names())
    assert len(layer.get_gradients()) == len(layer.trainable_weight_names())


def test_masked_training_gradients():
    rng = np.random.default_rng(9)
    layer = BatchNormalization(dtype="float64")
    layer.build((3, 4, 2), rng=rng)
    mask = np.array([[1, 0, 1, 1], [0, 0, 1, 0], [1, 1, 1, 0]], dtype=bool)
    check_layer_gradients(layer, batch_input((3, 4, 2), "float64", rng), rng=rng,
                          label="BN masked", forward_kwargs={"training": True, "mask": mask})


def test_moving_statistics_get_no_gradient_but_are_counted():
    layer = BatchNormalization(dtype="float64")
    layer.build((None, 3), rng=np.random.default_rng(0))
    layer.forward(np.ones((2, 3)), training=True)
    layer.backward(np.ones((2, 3)))
    assert layer.active_weight_names() == ("gamma", "beta", "moving_mean", "moving_variance")
    assert layer.trainable_weight_names() == ("gamma", "beta")
    assert sorted(layer.grads) == ["beta", "gamma"]
    assert layer.count_params() == 12


def test_accepts_tf_keras_one_element_axis_list():
    layer = BatchNormalization(axis=[3])
    assert layer.axis == 3


@pytest.mark.parametrize("make,match", [
    (lambda: BatchNormalization(axis=[1, 2]), r"axis must be a single int\. Received: axis=\[1, 2\]"),
    (lambda: BatchNormalization(axis="channels"), r"axis must be a single int\. Received: axis='channels'"),
    (lambda: BatchNormalization(renorm=True), r"batch renormalization is not supported\. Received: renorm=True"),
    (lambda: BatchNormalization(epsilon=0), r"epsilon must be positive\. Received: epsilon=0"),
    (lambda: BatchNormalization(groups=2), r"BatchNormalization got unsupported arguments: \['groups'\]"),
    (lambda: BatchNormalization(axis=3).compute_output_shape((None, 4, 4)),
     r"Axis 3 is out of bounds for input shape \(None, 4, 4\)\. Received: axis=3"),
    (lambda: BatchNormalization().build((None, None)), r"needs a known size on axis -1"),
    (lambda: BatchNormalization().forward(np.zeros((2, 3)), mask=np.ones((2, 3), bool)),
     r"The mask provided should be one dimension less than the inputs\. Received: mask\.shape=\(2, 3\)"),
])
def test_errors(make, match):
    with pytest.raises(LayerError, match=match):
        make()


def test_set_weights_checks_shapes_and_count():
    layer = BatchNormalization(center=False)
    layer.build((None, 3))
    with pytest.raises(LayerError, match=r"expects 3 weights \['gamma', 'moving_mean', 'moving_variance'\], "
                                         r"received 4"):
        layer.set_weights([np.ones(3)] * 4)
    with pytest.raises(LayerError, match=r"weight 'moving_mean' has shape \(4,\), expected \(3,\)"):
        layer.set_weights([np.ones(3), np.ones(4), np.ones(3)])
