"""``parity.gradcheck`` on a student-style layer (plain forward/backward, no scratch base class)."""

import numpy as np
import pytest

import parity


class StudentDense:
    """y = x @ W + b, as a course's hand-written layer looks."""

    def __init__(self, w, b, wrong_bias_grad=False):
        self.weights = {"W": w, "b": b}
        self.grads = {}
        self.wrong_bias_grad = wrong_bias_grad

    def forward(self, x):
        self.x = x
        return x @ self.weights["W"] + self.weights["b"]

    def backward(self, dout):
        self.grads["W"] = self.x.T @ dout
        self.grads["b"] = dout.mean(axis=0) if self.wrong_bias_grad else dout.sum(axis=0)
        return dout @ self.weights["W"].T


def _layer(**kw):
    rng = np.random.default_rng(1)
    return StudentDense(rng.normal(size=(4, 3)), rng.normal(size=3), **kw)


def test_a_correct_backward_passes_for_input_and_every_weight():
    x = np.random.default_rng(2).normal(size=(5, 4))
    errors = parity.gradcheck(_layer(), x)
    assert set(errors) == {"dx0", "W", "b"}
    assert max(errors.values()) < 1e-7


def test_a_wrong_weight_gradient_is_named():
    x = np.random.default_rng(2).normal(size=(5, 4))
    with pytest.raises(AssertionError, match=r"StudentDense db"):
        parity.gradcheck(_layer(wrong_bias_grad=True), x)


def test_a_weight_without_a_gradient_is_named():
    layer = _layer()
    layer.weights["unused"] = np.zeros(2)
    with pytest.raises(AssertionError, match="no gradient for weight 'unused'"):
        parity.gradcheck(layer, np.ones((2, 4)))
