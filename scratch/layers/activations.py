"""Keras 3 activations and their derivatives.

Each activation is a pair: ``forward(x) -> y`` and ``backward(x, y, dy) -> dx``. Both the input and
the output are passed to ``backward`` so that each derivative can use whichever is cheaper
(sigmoid' = y(1-y), relu' = [x>0]).

Definitions follow ``keras/src/activations`` and the TensorFlow backend ops:
- hard_sigmoid is Keras 3's ``relu6(x + 3) / 6`` (tf_keras's older ``clip(0.2x + 0.5, 0, 1)`` is
  ``hard_sigmoid_tf_keras``, selectable by name for tf_keras files);
- gelu is the erf form (Keras's default ``approximate=False``), written as TF writes it:
  ``0.5 * x * erfc(-x * c)`` where c is 1/sqrt(2) rounded to float32 even in float64, because
  ``tf.nn.gelu`` builds the constant through a float32 tensor;
- selu uses alpha=1.67326324, scale=1.05070098; elu uses alpha=1;
- swish is ``x * sigmoid(x)`` (Keras registers it as an alias of silu);
- softmax works over the last axis unless an axis is given.
"""

import math

import numpy as np

from .base import LayerError

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946

# NumPy has no erfc; math.erfc is exact, and gelu is never on a hot conv path.
_erfc = np.vectorize(math.erfc, otypes=[np.float64])
_GELU_C = float(np.float32(1.0 / math.sqrt(2.0)))


def sigmoid(x):
    # Split by sign so that exp never overflows.
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


def softmax(x, axis=-1):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def _softmax_backward(y, dy, axis=-1):
    return y * (dy - np.sum(dy * y, axis=axis, keepdims=True))


def _gelu(x):
    return (0.5 * x * _erfc(-x * _GELU_C)).astype(x.dtype)


def _gelu_backward(x, y, dy):
    cdf = 0.5 * _erfc(-x * _GELU_C)
    pdf = np.exp(-np.square(x * _GELU_C)) * (_GELU_C / math.sqrt(math.pi))
    return (dy * (cdf + x * pdf)).astype(x.dtype)


def _elu(x):
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


def _selu(x):
    return _SELU_SCALE * np.where(x > 0, x, _SELU_ALPHA * np.expm1(np.minimum(x, 0)))


def _hard_sigmoid(x):
    return np.clip(x + 3.0, 0.0, 6.0) / 6.0


def _hard_sigmoid_tf_keras(x):
    return np.clip(0.2 * x + 0.5, 0.0, 1.0)


def _swish(x):
    return x * sigmoid(x)


def _swish_backward(x, y, dy):
    s = sigmoid(x)
    return dy * (s + x * s * (1.0 - s))


# name -> (forward, backward(x, y, dy))
_ACTIVATIONS = {
    "linear": (lambda x: x, lambda x, y, dy: dy),
    "relu": (lambda x: np.maximum(x, 0), lambda x, y, dy: dy * (x > 0)),
    "sigmoid": (sigmoid, lambda x, y, dy: dy * y * (1.0 - y)),
    "tanh": (np.tanh, lambda x, y, dy: dy * (1.0 - y * y)),
    "softmax": (softmax, lambda x, y, dy: _softmax_backward(y, dy)),
    "elu": (_elu, lambda x, y, dy: dy * np.where(x > 0, 1.0, y + 1.0)),
    # At a kink the derivative is a convention; these take TensorFlow's (SeluGrad uses scale at 0,
    # clip_by_value passes the gradient at its bounds).
    "selu": (_selu, lambda x, y, dy: dy * np.where(x < 0, y + _SELU_SCALE * _SELU_ALPHA, _SELU_SCALE)),
    "gelu": (_gelu, _gelu_backward),
    "swish": (_swish, _swish_backward),
    "silu": (_swish, _swish_backward),
    "hard_sigmoid": (_hard_sigmoid, lambda x, y, dy: dy * ((x > -3.0) & (x < 3.0)) / 6.0),
    "hard_sigmoid_tf_keras": (_hard_sigmoid_tf_keras, lambda x, y, dy: dy * ((x >= -2.5) & (x <= 2.5)) * 0.2),
}

NAMES = tuple(_ACTIVATIONS)


class Activation:
    """A named activation with ``forward(x)`` and ``backward(x, y, dy)``; keeps the input dtype."""

    def __init__(self, name):
        name = normalize_name(name)
        self.name = name
        self._f, self._df = _ACTIVATIONS[name]

    def forward(self, x):
        return np.asarray(self._f(x), dtype=x.dtype)

    def backward(self, x, y, dy):
        return np.asarray(self._df(x, y, dy), dtype=x.dtype)


def normalize_name(name):
    """Accept a name, None (linear), or a serialized Keras activation config."""
    if name is None:
        return "linear"
    if isinstance(name, dict):  # {"module": "keras.activations", "class_name": "function", "config": "relu"}
        name = name.get("config", name.get("class_name"))
    if not isinstance(name, str) or name not in _ACTIVATIONS:
        raise LayerError(f"activation must be one of {sorted(_ACTIVATIONS)}. Received: activation={name!r}")
    return name


def get(name):
    return Activation(name)
