"""Keras 3's activations by name, as ``activation=`` values: ``get("gelu").forward(x)``.

The table covers every name ``keras.activations`` serializes (``ALL_OBJECTS`` of Keras 3.15 and
the aliases ``swish`` = silu, ``hard_swish`` = hard_silu), with the defaults a bare name implies
(leaky_relu slope 0.2, elu/celu alpha 1, soft/hard_shrink threshold 0.5, squareplus b = 4, exact
gelu; softmax, log_softmax, sparsemax and glu act on the last axis). The math and each kink's
derivative convention live in ``activation_functions.py``.

``threshold`` is refused: Keras's ``threshold(x, threshold, default_value)`` has no defaults, so a
bare name cannot be called (Keras itself fails with a TypeError).

One name is the engine's own: ``hard_sigmoid_tf_keras`` is tf_keras's older hard_sigmoid
``clip(0.2x + 0.5, 0, 1)``, which the loader substitutes for 'hard_sigmoid' in tf_keras files. It
is never listed in errors.
"""

import numpy as np

from . import activation_functions as fn
from .activation_functions import ParametricReLU, sigmoid, softmax  # noqa: F401  (re-exported)
from .base import LayerError

_identity = (lambda x: x, lambda x, y, dy: dy)

# name -> (forward(x), backward(x, y, dy))
_ACTIVATIONS = {
    "linear": _identity,
    "relu": (lambda x: np.maximum(x, 0), lambda x, y, dy: dy * (x > 0)),
    "relu6": (lambda x: np.clip(x, 0.0, 6.0), lambda x, y, dy: dy * ((x > 0.0) & (x < 6.0))),
    "leaky_relu": (fn.leaky_relu, fn.leaky_relu_backward),
    "sigmoid": (fn.sigmoid, lambda x, y, dy: dy * y * (1.0 - y)),
    "tanh": (np.tanh, lambda x, y, dy: dy * (1.0 - y * y)),
    "softmax": (fn.softmax, lambda x, y, dy: fn.softmax_backward(y, dy)),
    "log_softmax": (fn.log_softmax, fn.log_softmax_backward),
    "sparsemax": (fn.sparsemax, fn.sparsemax_backward),
    "elu": (fn.elu, fn.elu_backward),
    "selu": (fn.selu, fn.selu_backward),
    "celu": (fn.celu, fn.celu_backward),
    "gelu": (fn.gelu, fn.gelu_backward),
    "glu": (fn.glu, fn.glu_backward),
    "silu": (fn.silu, fn.silu_backward),
    "swish": (fn.silu, fn.silu_backward),
    "mish": (fn.mish, fn.mish_backward),
    "softplus": (fn.softplus, lambda x, y, dy: dy * fn.sigmoid(x)),
    "softsign": (lambda x: x / (1.0 + np.abs(x)), lambda x, y, dy: dy / np.square(1.0 + np.abs(x))),
    "squareplus": (lambda x: (x + np.sqrt(np.square(x) + 4.0)) / 2.0,
                   lambda x, y, dy: dy * (1.0 + x / np.sqrt(np.square(x) + 4.0)) / 2.0),
    "log_sigmoid": (fn.log_sigmoid, lambda x, y, dy: dy * fn.sigmoid(-x)),
    "exponential": (np.exp, lambda x, y, dy: dy * y),
    "tanh_shrink": (lambda x: x - np.tanh(x), lambda x, y, dy: dy * np.square(np.tanh(x))),
    "hard_tanh": (lambda x: np.clip(x, -1.0, 1.0), lambda x, y, dy: dy * ((x >= -1.0) & (x <= 1.0))),
    "hard_sigmoid": (fn.hard_sigmoid, fn.hard_sigmoid_backward),
    "hard_silu": (fn.hard_silu, fn.hard_silu_backward),
    "hard_swish": (fn.hard_silu, fn.hard_silu_backward),
    "sparse_sigmoid": (fn.sparse_sigmoid, fn.sparse_sigmoid_backward),
    "sparse_plus": (fn.sparse_plus, fn.sparse_plus_backward),
    "soft_shrink": (fn.soft_shrink, fn.soft_shrink_backward),
    "hard_shrink": (fn.hard_shrink, fn.hard_shrink_backward),
    "hard_sigmoid_tf_keras": (fn.hard_sigmoid_tf_keras, fn.hard_sigmoid_tf_keras_backward),
}

# Engine-only names: accepted from the loader, never offered to a user.
_INTERNAL = ("hard_sigmoid_tf_keras",)
NAMES = tuple(_ACTIVATIONS)
KERAS_NAMES = tuple(n for n in NAMES if n not in _INTERNAL)
# Activations that mix the entries of the last axis (each output sums over it). glu halves it;
# Keras's Dense and Activation still report the unhalved shape, and so do scratch's.
LAST_AXIS = ("softmax", "log_softmax", "sparsemax", "glu")

_REFUSED = {
    "threshold": "Keras's threshold(x, threshold, default_value) has no defaults, so it cannot be "
                 "an activation given by name",
}


class Activation:
    """A named activation with ``forward(x)`` and ``backward(x, y, dy)``; keeps the input dtype."""

    def __init__(self, name):
        name = normalize_name(name)
        self.name = name
        self._f, self._df = _ACTIVATIONS[name]

    def forward(self, x):
        if self.name == "glu" and np.shape(x)[-1] % 2:
            raise LayerError(f"glu needs an even size on its axis. Received: x.shape={np.shape(x)} with axis=-1")
        return np.asarray(self._f(x), dtype=x.dtype)

    def backward(self, x, y, dy):
        return np.asarray(self._df(x, y, dy), dtype=x.dtype)


def normalize_name(name):
    """Accept a name, None (linear), or a serialized Keras activation config."""
    if name is None:
        return "linear"
    if isinstance(name, dict):  # {"module": "keras.activations", "class_name": "function", "config": "relu"}
        name = name.get("config", name.get("class_name"))
    if isinstance(name, str) and name in _REFUSED:
        raise LayerError(f"activation {name!r} is not supported: {_REFUSED[name]}. Received: activation={name!r}")
    if not isinstance(name, str) or name not in _ACTIVATIONS:
        raise LayerError(f"activation {name!r} is not supported (it is not one of Keras's built-in activations). "
                         f"Received: activation={name!r}")
    return name


def get(name):
    return Activation(name)
