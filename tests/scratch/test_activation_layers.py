"""LeakyReLU, PReLU and ELU against the real Keras layers (and tf_keras's LeakyReLU config), forward and backward."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from hypothesis import example, given, settings
from hypothesis import strategies as st

from parity.tolerance import assert_close
from scratch.layers.activation_layers import ELU, LeakyReLU, PReLU
from scratch.layers.base import LayerError
from tests.support import check_layer_gradients

DTYPES = st.sampled_from(["float32", "float64"])
SEEDS = st.integers(0, 2**31 - 1)
# x = 0 is every layer's kink; the rest spreads over both branches.
KINKED = np.array([[0.0, -0.0, 1e-8, -1e-8, 1.0, -1.0, 5.0, -5.0]])


def keras_value_and_grads(layer, x, dy):
    t = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(t)
        y = layer(t)
    grads = tape.gradient(y, [t, *layer.trainable_weights], output_gradients=tf.constant(dy))
    return y.numpy(), [g.numpy() for g in grads]


def sample(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 3.0, size=shape).astype(dtype)
    x.flat[:: max(1, x.size // 3)] = 0.0   # kinks on purpose
    return x, rng.normal(size=shape).astype(dtype)


def check_against_keras(keras_layer, mine, x, dy, label):
    y_k, grads_k = keras_value_and_grads(keras_layer, x, dy)
    assert_close(mine.forward(x), y_k, label=label)
    assert_close(mine.backward(dy), grads_k[0], label=f"{label} dx")
    for name, g in zip(mine.trainable_weight_names(), grads_k[1:]):
        assert_close(mine.grads[name], g, label=f"{label} d{name}", reduction=x.size // g.size)


@settings(max_examples=8)
@given(slope=st.sampled_from([0.0, 0.3, 0.01, 0.1, 1.0, 2.5]), dtype=DTYPES, seed=SEEDS)
@example(slope=0.1, dtype="float64", seed=0)   # 0.1 is not a float32: TF rounds it
@example(slope=0.3, dtype="float32", seed=1)
def test_leaky_relu_matches_keras(slope, dtype, seed):
    k = keras.layers.LeakyReLU(negative_slope=slope, dtype=dtype)
    mine = LeakyReLU(**k.get_config())
    assert mine.compute_output_shape((None, 4)) == (None, 4) and mine.supports_masking
    x, dy = sample((3, 5), dtype, seed)
    check_against_keras(k, mine, np.concatenate([x, np.zeros((1, 5), dtype)]),
                        np.concatenate([dy, np.ones((1, 5), dtype)]), f"LeakyReLU {slope} {dtype}")


def test_leaky_relu_reads_tf_keras_alpha():
    cfg = tf_keras.layers.LeakyReLU(alpha=0.2).get_config()
    assert "alpha" in cfg and "negative_slope" not in cfg
    mine = LeakyReLU(**cfg)
    assert mine.negative_slope == pytest.approx(0.2)
    x = KINKED.astype("float32")
    assert_close(mine.forward(x), tf_keras.layers.LeakyReLU(alpha=0.2)(x).numpy(), label="tf_keras LeakyReLU")


@settings(max_examples=8)
@given(alpha=st.sampled_from([1.0, 0.5, 2.0, 0.1, 0.0]), dtype=DTYPES, seed=SEEDS)
@example(alpha=1.0, dtype="float32", seed=0)
@example(alpha=0.5, dtype="float64", seed=1)
def test_elu_matches_keras(alpha, dtype, seed):
    k = keras.layers.ELU(alpha=alpha, dtype=dtype)
    mine = ELU(**k.get_config())
    x, dy = sample((4, 6), dtype, seed)
    check_against_keras(k, mine, x, dy, f"ELU {alpha} {dtype}")


@st.composite
def prelu_cases(draw):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=2, max_size=4)))
    shared = draw(st.one_of(st.none(), st.lists(st.integers(1, len(shape) - 1), max_size=2, unique=True)))
    return shape, shared


@settings(max_examples=10)
@given(case=prelu_cases(), dtype=DTYPES, seed=SEEDS)
@example(case=((2, 3, 4, 5), [1, 2]), dtype="float32", seed=0)   # image PReLU: one slope per channel
@example(case=((3, 4), None), dtype="float64", seed=1)
@example(case=((2, 3, 2), 2), dtype="float64", seed=2)             # a bare int, as Keras accepts
def test_prelu_matches_keras(case, dtype, seed):
    shape, shared = case
    k = keras.layers.PReLU(shared_axes=shared, dtype=dtype)
    k.build(shape)
    rng = np.random.default_rng(seed)
    k.set_weights([rng.uniform(-0.5, 1.5, size=k.alpha.shape).astype(dtype)])
    mine = PReLU(**k.get_config())
    mine.build((None, *shape[1:]))
    assert mine.active_weight_names() == tuple(w.name for w in k.weights) == ("alpha",)
    mine.set_weights(k.get_weights())
    assert mine.count_params() == k.count_params()
    assert mine.compute_output_shape((None, *shape[1:])) == tuple(k.compute_output_shape((None, *shape[1:])))
    x, dy = sample(shape, dtype, seed)
    check_against_keras(k, mine, x, dy, f"PReLU {shape} shared={shared} {dtype}")


@pytest.mark.parametrize("shape,shared", [((3, 4), None), ((2, 3, 4, 2), [1, 2]), ((2, 3, 2), [2])])
def test_prelu_gradients(shape, shared):
    rng = np.random.default_rng(5)
    layer = PReLU(shared_axes=shared, dtype="float64")
    layer.build((None, *shape[1:]), rng=rng)
    x = rng.normal(size=shape)
    x = np.where(np.abs(x) < 1e-3, 0.5, x)   # centered differences must not straddle the kink
    errors = check_layer_gradients(layer, x, rng=rng, label=f"PReLU {shared}")
    assert set(errors) == {"dx0", "alpha"}


@pytest.mark.parametrize("layer", [LeakyReLU(negative_slope=0.2, dtype="float64"), ELU(alpha=0.7, dtype="float64"),
                                   ELU(dtype="float64")], ids=["leaky", "elu0.7", "elu1"])
def test_elementwise_gradients(layer):
    rng = np.random.default_rng(6)
    x = rng.normal(size=(3, 5))
    errors = check_layer_gradients(layer, np.where(np.abs(x) < 1e-3, 0.5, x), rng=rng, label=layer.name)
    assert set(errors) == {"dx0"}


@pytest.mark.parametrize("make,match", [
    (lambda: LeakyReLU(negative_slope=-0.1),
     r"The negative_slope value of a Leaky ReLU layer cannot be None or negative value\. Received: negative_slope=-0\.1"),
    (lambda: LeakyReLU(negative_slope=None), r"cannot be None or negative value\. Received: negative_slope=None"),
    (lambda: LeakyReLU(negative_slope="0.2"), r"negative_slope of a Leaky ReLU layer must be a float\. "
                                              r"Received: negative_slope='0\.2'"),
    (lambda: ELU(alpha=[1.0]), r"alpha of a ELU layer must be a float\. Received: alpha=\[1\.0\]"),
    (lambda: PReLU(shared_axes=[0]), r"shared_axes must be positive ints \(axis 0 is the batch\)\. "
                                     r"Received: shared_axes=\[0\]"),
    (lambda: PReLU(shared_axes=[3]).build((None, 4)), r"shared_axes \[3\] do not fit input shape \(None, 4\)"),
    (lambda: PReLU().build((None, None, 3)), r"PReLU needs a known size on every axis it does not share"),
    (lambda: PReLU(alpha_initializer="zeros", foo=1), r"PReLU got unsupported arguments: \['foo'\]"),
])
def test_errors(make, match):
    with pytest.raises(LayerError, match=match):
        make()
