"""scratch.activations against keras.activations (and tf_keras's hard_sigmoid), forward and backward."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from parity.tolerance import assert_close, assert_gradient_close, numerical_gradient
from scratch.layers import activations
from scratch.layers.base import LayerError

# Keras warns when a softmax runs over a size-1 axis; hypothesis draws such shapes on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:You are using a softmax over axis")

# Every kink of every activation here, plus magnitudes where exp over/underflows in float32.
KINKS = (0.0, 3.0, -3.0, 2.5, -2.5)
PINNED = np.array([[0.0, 3.0, -3.0, 2.5, -2.5, 80.0, -80.0, 100.0, -100.0, 1e-8, -1e-8, 1.0, -1.0]])


def keras_fn(name):
    if name == "hard_sigmoid_tf_keras":
        return tf_keras.activations.hard_sigmoid
    return keras.activations.get(name)


def keras_forward(name, x):
    return np.asarray(keras_fn(name)(tf.constant(x)))


def keras_gradient(name, x, dy):
    t = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(t)
        y = keras_fn(name)(t)
    return tape.gradient(y, t, output_gradients=tf.constant(dy)).numpy()


def inputs(dtype):
    return hnp.arrays(dtype, hnp.array_shapes(min_dims=2, max_dims=2, max_side=8),
                      elements=st.floats(-100, 100, width=np.dtype(dtype).itemsize * 8))


# float64 gelu pins a finding: tf.nn.gelu builds its 1/sqrt(2) through a float32 tensor, so Keras's
# float64 gelu is 0.5*x*erfc(-x*0.70710677); the exact constant is ~5e-9 (millions of ulps) away.
NAME_DTYPE = [(n, d) for n in activations.NAMES for d in ("float32", "float64")]


def away_from_kinks(x, gap=1e-3):
    """Move entries within ``gap`` of a kink off it (centered differences must not straddle one)."""
    for k in KINKS:
        near = np.abs(x - k) < gap
        x = np.where(near, k + 10 * gap, x)
    return x


def test_names_cover_keras_core_activations():
    assert set(activations.NAMES) == {"linear", "relu", "sigmoid", "tanh", "softmax", "elu", "selu", "gelu",
                                      "swish", "silu", "hard_sigmoid", "hard_sigmoid_tf_keras"}


@pytest.mark.parametrize("name,dtype", NAME_DTYPE)
@given(data=st.data())
@example(data=None)
def test_forward_matches_keras(name, dtype, data):
    x = PINNED.astype(dtype) if data is None else data.draw(inputs(dtype), label="x")
    mine = activations.get(name).forward(x)
    reduction = x.shape[-1] if name == "softmax" else 1
    assert_close(mine, keras_forward(name, x), label=f"{name} {dtype}", reduction=reduction)


def test_hard_sigmoid_variants_differ_where_expected():
    # Keras 3: relu6(x+3)/6 saturates at +-3; tf_keras: clip(0.2x+0.5) saturates at +-2.5.
    x = np.array([[-3.0, -2.5, 0.0, 2.5, 3.0]])
    k3 = activations.get("hard_sigmoid").forward(x)
    tk = activations.get("hard_sigmoid_tf_keras").forward(x)
    np.testing.assert_allclose(k3, [[0.0, 1 / 12, 0.5, 11 / 12, 1.0]], atol=1e-15)
    np.testing.assert_allclose(tk, [[0.0, 0.0, 0.5, 1.0, 1.0]], atol=1e-15)


@pytest.mark.parametrize("name", ["sigmoid", "swish", "silu", "elu", "selu", "gelu", "softmax"])
def test_exponential_activations_do_not_overflow(name):
    x = np.array([[-1000.0, -89.0, 89.0, 1000.0]], dtype=np.float32)
    act = activations.get(name)
    with np.errstate(over="raise", invalid="raise"):
        y = act.forward(x)
        dx = act.backward(x, y, np.ones_like(x))
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))


@pytest.mark.parametrize("name", activations.NAMES)
def test_backward_matches_numerical_gradient(name):
    rng = np.random.default_rng(sum(map(ord, name)))
    act = activations.get(name)
    x = away_from_kinks(rng.normal(0.0, 3.0, size=(4, 6)))
    dy = rng.normal(size=x.shape)
    y = act.forward(x)
    analytic = act.backward(x, y, dy)
    numeric = numerical_gradient(lambda: act.forward(x), x, dy)
    assert_gradient_close(analytic, numeric, label=f"{name} dx")


@pytest.mark.parametrize("name,dtype", NAME_DTYPE)
def test_backward_matches_tensorflow_autodiff(name, dtype):
    rng = np.random.default_rng(7 + len(name))
    x = away_from_kinks(rng.normal(0.0, 4.0, size=(5, 7))).astype(dtype)
    dy = rng.normal(size=x.shape).astype(dtype)
    act = activations.get(name)
    mine = act.backward(x, act.forward(x), dy)
    assert_close(mine, keras_gradient(name, x, dy), label=f"{name} {dtype} dx",
                 reduction=x.shape[-1] if name == "softmax" else 1)


# At a kink the derivative is a convention; scratch takes TensorFlow's. TF's SeluGrad takes the right
# derivative (scale) at 0 and tf.clip_by_value passes the gradient at its bounds, so tf_keras's
# hard_sigmoid has slope 0.2 at +-2.5.
KINKS_AT = [("relu", 0.0), ("elu", 0.0), ("hard_sigmoid", 3.0), ("hard_sigmoid", -3.0),
            ("selu", 0.0), ("hard_sigmoid_tf_keras", 2.5), ("hard_sigmoid_tf_keras", -2.5)]


@pytest.mark.parametrize("name,kink", KINKS_AT)
def test_kink_derivative_convention_matches_tensorflow(name, kink):
    x = np.array([[kink]])
    act = activations.get(name)
    np.testing.assert_allclose(act.backward(x, act.forward(x), np.ones_like(x)),
                               keras_gradient(name, x, np.ones_like(x)), rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_output_keeps_input_dtype(dtype):
    x = np.linspace(-4, 4, 12, dtype=dtype).reshape(3, 4)
    for name in activations.NAMES:
        act = activations.get(name)
        y = act.forward(x)
        assert y.dtype == np.dtype(dtype), name
        assert act.backward(x, y, np.ones_like(x)).dtype == np.dtype(dtype), name


def test_normalize_name_accepts_none_and_serialized_configs():
    assert activations.normalize_name(None) == "linear"
    assert activations.normalize_name({"module": "keras.activations", "class_name": "function",
                                       "config": "relu"}) == "relu"
    assert activations.normalize_name(keras.activations.serialize(keras.activations.get("gelu"))) == "gelu"


@pytest.mark.parametrize("bad", ["relu7", "leaky_relu", 3, {"class_name": "Nope"}])
def test_unknown_activation_is_refused(bad):
    with pytest.raises(LayerError, match=r"activation must be one of \[.*'relu'.*\]\. Received: activation="):
        activations.get(bad)
