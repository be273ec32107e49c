"""Activation layers with a parameter: LeakyReLU, PReLU (a learned slope), ELU.

All are element-wise: any shape in, same shape out, and they pass an incoming mask on unchanged
(Keras sets ``supports_masking``). ReLU and Softmax live in core.py.
"""

import numpy as np

from . import activation_functions as fn
from .base import Layer, LayerError


def _number(name, value, layer):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise LayerError(f"{name} of a {layer} layer must be a float. Received: {name}={value!r}")
    return float(value)


class _Elementwise(Layer):
    supports_masking = True

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


class LeakyReLU(_Elementwise):
    """``y = x`` for x > 0, ``negative_slope * x`` otherwise (``tf.nn.leaky_relu``).

    The slope is rounded to float32 even in float64 (the TF op's ``alpha`` is a 32-bit attribute).
    At x = 0 the output is 0 and the derivative is ``negative_slope``, as TensorFlow's. No weights.
    tf_keras files store the slope as ``alpha``; Keras 3 reads that key too.
    """

    def __init__(self, negative_slope=0.3, alpha=None, **kwargs):
        super().__init__(**kwargs)
        if alpha is not None:
            negative_slope = alpha
        if negative_slope is None or _number("negative_slope", negative_slope, "Leaky ReLU") < 0:
            raise LayerError("The negative_slope value of a Leaky ReLU layer cannot be None or negative value. "
                             f"Received: negative_slope={negative_slope}")
        self.negative_slope = float(negative_slope)

    def forward(self, x, training=False):
        x = self.cast(x)
        self._cache = x
        return fn.leaky_relu(x, self.negative_slope)

    def backward(self, dout):
        return fn.leaky_relu_backward(self._cache, None, self.cast(dout), self.negative_slope)


class ELU(_Elementwise):
    """``y = x`` for x > 0, ``alpha * (exp(x) - 1)`` otherwise. No weights.

    Derivative ``alpha * exp(x)`` for x <= 0 (``alpha`` at 0: TF takes the ``alpha * elu`` branch
    there), 1 above.
    """

    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = _number("alpha", alpha, "ELU")

    def forward(self, x, training=False):
        x = self.cast(x)
        self._cache = x
        return fn.elu(x, self.alpha)

    def backward(self, dout):
        return fn.elu_backward(self._cache, None, self.cast(dout), self.alpha)


class PReLU(_Elementwise):
    """``y = relu(x) - alpha * relu(-x)``: a learned slope per element below zero.

    Input ``(batch, d1, ..., dk)``. Weight ``alpha`` of shape ``(d1, ..., dk)`` with 1 on every
    axis listed in ``shared_axes`` (1-based, the batch axis being 0), broadcast against x.
    Gradients: ``dx = dy * [x > 0] + dy * alpha * [x < 0]`` (0 at x = 0, where both relus have
    slope 0 in TensorFlow) and ``dalpha = -sum(dy * relu(-x))`` over the batch and shared axes.
    """

    weight_names = ("alpha",)

    def __init__(self, shared_axes=None, **kwargs):
        super().__init__(**kwargs)
        axes = [] if shared_axes is None else shared_axes if isinstance(shared_axes, (list, tuple)) else [shared_axes]
        if any(isinstance(a, bool) or not isinstance(a, (int, np.integer)) or a < 1 for a in axes):
            raise LayerError(f"shared_axes must be positive ints (axis 0 is the batch). "
                             f"Received: shared_axes={shared_axes!r}")
        self.shared_axes = None if shared_axes is None else [int(a) for a in axes]

    def _alpha_shape(self, input_shape):
        shape = list(input_shape[1:])
        for a in self.shared_axes or []:
            if a > len(shape):
                raise LayerError(f"shared_axes {self.shared_axes} do not fit input shape {tuple(input_shape)}")
            shape[a - 1] = 1
        if any(d is None for d in shape):
            raise LayerError(f"PReLU needs a known size on every axis it does not share. "
                             f"Received: input_shape={tuple(input_shape)}")
        return tuple(shape)

    def build(self, input_shape, rng=None):
        shape = self._alpha_shape(input_shape)
        alpha = np.zeros(shape) if rng is None else rng.uniform(0.0, 0.5, shape)
        self.weights = {"alpha": alpha.astype(self.dtype)}
        self.input_ndim = len(input_shape)
        self.built = True

    def compute_output_shape(self, input_shape):
        self._alpha_shape(input_shape)
        return tuple(input_shape)

    def forward(self, x, training=False):
        x = self.cast(x)
        alpha = self.weights["alpha"]
        if x.ndim != alpha.ndim + 1:
            raise LayerError(f"PReLU was built for inputs of rank {alpha.ndim + 1}. Received: x.shape={x.shape}")
        negative = np.maximum(-x, 0)
        self._cache = (x, negative)
        return (np.maximum(x, 0) - alpha * negative).astype(self.dtype)

    def backward(self, dout):
        x, negative = self._cache
        dy = self.cast(dout)
        alpha = self.weights["alpha"]
        # Sum over the batch axis and every axis alpha broadcasts along.
        axes = (0, *[i + 1 for i, d in enumerate(alpha.shape) if d == 1 and x.shape[i + 1] != 1])
        self.grads["alpha"] = (-np.sum(dy * negative, axis=axes).reshape(alpha.shape)).astype(self.dtype)
        return (dy * (x > 0) + dy * alpha * (x < 0)).astype(self.dtype)
