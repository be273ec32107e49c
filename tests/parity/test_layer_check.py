"""``parity.check_layer`` on hand-written layers: what a student runs against Keras."""

import keras
import numpy as np
import pytest

import parity
from scratch import layers


class StudentDense:
    """A course's Dense: y = x @ W + b, weights in Keras's order, grads by Keras's weight names."""

    def __init__(self, scale_bias_grad=1.0):
        self.grads, self.scale_bias_grad = {}, scale_bias_grad

    def set_weights(self, weights):
        self.W, self.b = weights

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dout):
        self.grads = {"kernel": self.x.T @ dout, "bias": dout.sum(axis=0) * self.scale_bias_grad}
        return dout @ self.W.T


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_correct_dense_passes_forward_and_backward(dtype):
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(dtype)
    result = parity.check_layer(StudentDense(), keras.layers.Dense(3, dtype=dtype), x)
    assert result.passed, str(result)
    assert [what for what, _ in result.rows] == ["forward", "dx", "dkernel", "dbias"]
    assert "PASS" in str(result)


def test_a_wrong_bias_gradient_is_named():
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    result = parity.check_layer(StudentDense(scale_bias_grad=1.01), keras.layers.Dense(3), x)
    assert not result.passed
    assert not result["dbias"]["passed"] and result["dkernel"]["passed"] and result["forward"]["passed"]
    assert "dbias" in str(result) and "FAIL" in str(result)


def test_scratch_conv2d_and_lstm_pass_as_any_layer_would():
    rng = np.random.default_rng(1)
    conv = parity.check_layer(layers.Conv2D(4, 3, padding="same", strides=2),
                              keras.layers.Conv2D(4, 3, padding="same", strides=2), rng.normal(size=(2, 7, 7, 3)))
    assert conv.passed, str(conv)
    lstm = parity.check_layer(layers.LSTM(5), keras.layers.LSTM(5), rng.normal(size=(2, 6, 3)))
    assert lstm.passed, str(lstm)
    assert [w for w, _ in lstm.rows] == ["forward", "dx", "dkernel", "drecurrent_kernel", "dbias"]
