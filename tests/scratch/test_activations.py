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
# exponential(100) is inf in float32, in TF as here; comparing two infinities subtracts them.
pytestmark = [pytest.mark.filterwarnings("ignore:You are using a softmax over axis"),
              pytest.mark.filterwarnings("ignore:overflow encountered in exp:RuntimeWarning"),
              pytest.mark.filterwarnings("ignore:invalid value encountered in subtract:RuntimeWarning")]

# Every kink of every activation here, plus magnitudes where exp over/underflows in float32.
KINKS = (0.0, 0.5, -0.5, 1.0, -1.0, 2.5, -2.5, 3.0, -3.0, 6.0)
PINNED = np.array([[*KINKS, 80.0, -80.0, 100.0, -100.0, 1e-8, -1e-8, 7.0, -7.0]])
# Ties and a one-element support for sparsemax (tf.sort breaks ties by position).
TIES = np.array([[1.0, 1.0, 0.0, -0.5], [0.3, 0.2, 0.1, 0.3], [5.0, -1.0, -1.0, -1.0]])

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


def inputs(dtype, name):
    # glu splits the last axis in two halves: it must be even.
    sides = st.tuples(st.integers(1, 6), st.integers(1, 4).map(lambda n: 2 * n) if name == "glu"
                      else st.integers(1, 8))
    return hnp.arrays(dtype, sides, elements=st.floats(-100, 100, width=np.dtype(dtype).itemsize * 8))


# float64 gelu pins a finding: tf.nn.gelu builds its 1/sqrt(2) through a float32 tensor, so Keras's
# float64 gelu is 0.5*x*erfc(-x*0.70710677); the exact constant is ~5e-9 (millions of ulps) away.
NAME_DTYPE = [(n, d) for n in activations.NAMES for d in ("float32", "float64")]


def away_from_kinks(x, gap=1e-3):
    """Move entries within ``gap`` of a kink off it (centered differences must not straddle one)."""
    for k in KINKS:
        near = np.abs(x - k) < gap
        x = np.where(near, k + 10 * gap, x)
    return x


def test_names_cover_every_activation_keras_serializes():
    # threshold is refused on purpose (see test_threshold_is_refused_with_its_reason).
    keras_names = set(keras.src.activations.ALL_OBJECTS_DICT)
    assert set(activations.KERAS_NAMES) | {"threshold"} == keras_names
    assert set(activations.NAMES) - set(activations.KERAS_NAMES) == {"hard_sigmoid_tf_keras"}


@pytest.mark.parametrize("name,dtype", NAME_DTYPE)
@given(data=st.data())
@example(data=None)
def test_forward_matches_keras(name, dtype, data):
    x = PINNED.astype(dtype) if data is None else data.draw(inputs(dtype, name), label="x")
    mine = activations.get(name).forward(x)
    reduction = x.shape[-1] if name in activations.LAST_AXIS else 1
    assert_close(mine, keras_forward(name, x), label=f"{name} {dtype}", reduction=reduction)


def test_hard_sigmoid_variants_differ_where_expected():
    # Keras 3: relu6(x+3)/6 saturates at +-3; tf_keras: clip(0.2x+0.5) saturates at +-2.5.
    x = np.array([[-3.0, -2.5, 0.0, 2.5, 3.0]])
    k3 = activations.get("hard_sigmoid").forward(x)
    tk = activations.get("hard_sigmoid_tf_keras").forward(x)
    np.testing.assert_allclose(k3, [[0.0, 1 / 12, 0.5, 11 / 12, 1.0]], atol=1e-15)
    np.testing.assert_allclose(tk, [[0.0, 0.0, 0.5, 1.0, 1.0]], atol=1e-15)


@pytest.mark.parametrize("name", ["sigmoid", "swish", "silu", "elu", "selu", "gelu", "softmax", "celu", "mish",
                                  "softplus", "log_sigmoid", "log_softmax", "glu", "hard_silu", "sparsemax"])
def test_exponential_activations_do_not_overflow(name):
    x = np.array([[-1000.0, -89.0, 89.0, 1000.0]], dtype=np.float32)   # exponential itself overflows, as in TF
    act = activations.get(name)
    with np.errstate(over="raise", invalid="raise"):
        y = act.forward(x)
        dx = act.backward(x, y, np.ones_like(y))
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))


@pytest.mark.parametrize("name", activations.NAMES)
def test_backward_matches_numerical_gradient(name):
    rng = np.random.default_rng(sum(map(ord, name)))
    act = activations.get(name)
    x = away_from_kinks(rng.normal(0.0, 3.0, size=(4, 6)))
    if name == "sparsemax":   # a support change is a kink too: keep every gap between entries wide
        x = np.arange(24.0).reshape(4, 6) * 0.05 + rng.permuted(np.tile(np.arange(6.0), (4, 1)), axis=1)
    y = act.forward(x)
    dy = rng.normal(size=y.shape)
    analytic = act.backward(x, y, dy)
    numeric = numerical_gradient(lambda: act.forward(x), x, dy)
    assert_gradient_close(analytic, numeric, label=f"{name} dx")


@pytest.mark.parametrize("name,dtype", NAME_DTYPE)
def test_backward_matches_tensorflow_autodiff(name, dtype):
    rng = np.random.default_rng(7 + len(name))
    x = away_from_kinks(rng.normal(0.0, 4.0, size=(5, 8))).astype(dtype)
    act = activations.get(name)
    dy = rng.normal(size=act.forward(x).shape).astype(dtype)
    mine = act.backward(x, act.forward(x), dy)
    assert_close(mine, keras_gradient(name, x, dy), label=f"{name} {dtype} dx",
                 reduction=x.shape[-1] if name in activations.LAST_AXIS else 1)


# At a kink the derivative is a convention; scratch takes TensorFlow's (activation_functions.py lists
# them: relu's 0 at 0, celu's 2 at 0, clip's pass-through at hard_tanh's bounds, where's picked branch).
@pytest.mark.parametrize("name,dtype", NAME_DTYPE)
def test_kink_derivative_convention_matches_tensorflow(name, dtype):
    x = np.array([KINKS]).astype(dtype)
    act = activations.get(name)
    dy = np.linspace(0.5, 1.5, act.forward(x).size).reshape(act.forward(x).shape).astype(dtype)
    assert_close(act.backward(x, act.forward(x), dy), keras_gradient(name, x, dy), label=f"{name} {dtype} kinks",
                 reduction=x.shape[-1] if name in activations.LAST_AXIS else 1)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sparsemax_matches_keras_on_ties(dtype):
    x, dy = TIES.astype(dtype), np.linspace(-1.0, 1.0, TIES.size).reshape(TIES.shape).astype(dtype)
    act = activations.get("sparsemax")
    assert_close(act.forward(x), keras_forward("sparsemax", x), label=f"sparsemax ties {dtype}", reduction=4)
    assert_close(act.backward(x, act.forward(x), dy), keras_gradient("sparsemax", x, dy),
                 label=f"sparsemax ties {dtype} dx", reduction=4)


def test_sparsemax_follows_keras_not_the_paper():
    """Keras 3.15's sparsemax does not sum to 1: [0.3, 0.2, 0.1] -> [1/6, 1/15, 0], not [0.43, 0.33, 0.23]."""
    y = activations.get("sparsemax").forward(np.array([[0.3, 0.2, 0.1]]))
    np.testing.assert_allclose(y, [[1 / 6, 1 / 15, 0.0]], atol=1e-12)


def test_glu_refuses_an_odd_axis():
    with pytest.raises(LayerError, match=r"glu needs an even size on its axis\. Received: x\.shape=\(2, 3\)"):
        activations.get("glu").forward(np.zeros((2, 3)))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_output_keeps_input_dtype(dtype):
    x = np.linspace(-4, 4, 12, dtype=dtype).reshape(3, 4)
    for name in activations.NAMES:
        act = activations.get(name)
        y = act.forward(x)
        assert y.dtype == np.dtype(dtype), name
        assert act.backward(x, y, np.ones_like(y)).dtype == np.dtype(dtype), name


def test_normalize_name_accepts_none_and_serialized_configs():
    assert activations.normalize_name(None) == "linear"
    assert activations.normalize_name({"module": "keras.activations", "class_name": "function",
                                       "config": "relu"}) == "relu"
    assert activations.normalize_name(keras.activations.serialize(keras.activations.get("gelu"))) == "gelu"


@pytest.mark.parametrize("bad", ["relu7", "foo", 3, {"class_name": "Nope"}, "Relu"])
def test_unknown_activation_is_refused(bad):
    with pytest.raises(LayerError, match=r"activation .* is not supported \(it is not one of Keras's built-in") as err:
        activations.get(bad)
    assert "tf_keras" not in str(err.value)


def test_unknown_activation_message_names_it():
    with pytest.raises(LayerError, match=r"^activation 'foo' is not supported"):
        activations.get("foo")


def test_threshold_is_refused_with_its_reason():
    with pytest.raises(LayerError, match=r"activation 'threshold' is not supported: .*has no defaults"):
        activations.get("threshold")
