"""Masking and RepeatVector against the real Keras layers, plus gradient checks."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import example, given
from hypothesis import strategies as st

from parity.tolerance import assert_close
from scratch.layers.base import LayerError
from scratch.layers.sequence import Masking, RepeatVector
from tests.support import check_layer_gradients


@given(mask_value=st.sampled_from([0.0, -1.0, 2.5]), batch=st.integers(1, 4), steps=st.integers(1, 8),
       features=st.integers(1, 4), extra_axis=st.booleans(), dtype=st.sampled_from(["float32", "float64"]),
       seed=st.integers(0, 2**16))
@example(mask_value=0.0, batch=2, steps=5, features=3, extra_axis=False, dtype="float32", seed=0)
@example(mask_value=-1.0, batch=1, steps=1, features=1, extra_axis=True, dtype="float64", seed=1)
def test_masking_matches_keras(mask_value, batch, steps, features, extra_axis, dtype, seed):
    rng = np.random.default_rng(seed)
    shape = (batch, steps, 2, features) if extra_axis else (batch, steps, features)
    x = rng.normal(size=shape).astype(dtype)
    padded = rng.random(shape[:-1]) < 0.4
    partial = rng.random(shape) < 0.3
    partial[..., 0] = False                                  # a partly padded vector stays real
    x[partial] = mask_value
    smooth = x.copy()
    x[padded] = mask_value                                   # whole feature vectors: masked
    k = keras.layers.Masking(mask_value=mask_value, dtype=dtype)
    layer = Masking(**k.get_config())
    desired = k(x)
    assert_close(layer.forward(x), np.asarray(desired), kind="forward", label="Masking")
    np.testing.assert_array_equal(layer.compute_mask(x), np.asarray(desired._keras_mask))
    np.testing.assert_array_equal(layer.compute_mask(x), ~padded)
    assert layer.compute_output_shape((None,) + shape[1:]) == (None,) + shape[1:]

    # The output jumps where a whole vector equals mask_value, so finite differences only apply
    # away from padded steps; at them, compare with TensorFlow's own gradient of the Keras layer.
    layer.to_dtype("float64")
    check_layer_gradients(layer, smooth, rng=rng, label="Masking")
    dout = rng.normal(size=shape)
    xt = tf.constant(x.astype("float64"))
    with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = tf.reduce_sum(keras.layers.Masking(mask_value=mask_value, dtype="float64")(xt) * dout)
    layer.forward(x)
    np.testing.assert_array_equal(layer.backward(dout), tape.gradient(loss, xt).numpy())


@given(n=st.integers(1, 5), batch=st.integers(1, 4), features=st.integers(1, 5),
       dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2**16))
@example(n=1, batch=1, features=1, dtype="float32", seed=0)
def test_repeat_vector_matches_keras(n, batch, features, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, features)).astype(dtype)
    k = keras.layers.RepeatVector(n, dtype=dtype)
    layer = RepeatVector(**k.get_config())
    assert_close(layer.forward(x), np.asarray(k(x)), kind="forward", label="RepeatVector")
    assert layer.compute_output_shape((None, features)) == k.compute_output_shape((None, features))
    # Keras's RepeatVector does not support masking: an incoming mask stops here.
    assert not k.supports_masking and layer.compute_mask(x, np.ones((batch,), bool)) is None
    layer.to_dtype("float64")
    check_layer_gradients(layer, x, rng=rng, label="RepeatVector")


def test_errors():
    with pytest.raises(LayerError, match=r"n must be a positive integer. Received: n=0"):
        RepeatVector(0)
    with pytest.raises(LayerError, match=r"RepeatVector expects input of shape \(batch, features\). "
                                         r"Received: input_shape=\(2, 3, 4\)"):
        RepeatVector(2).forward(np.zeros((2, 3, 4)))
    with pytest.raises(LayerError, match=r"mask_value must be a number. Received: mask_value='pad'"):
        Masking(mask_value="pad")
