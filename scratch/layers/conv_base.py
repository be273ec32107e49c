"""What the 1-D/2-D convolution layers beside conv.py share: Keras's argument checks, and one
computation for both ranks.

Each layer computes in 2-D on (N, H, W, C). Its 1-D twin is the same class with ``rank = 1``: a
sequence (N, L, C) runs as the one-row image (N, 1, L, C), the 1-D kernel (k, ...) as the
(1, k, ...) view of the very array held in ``weights`` (so a weight changed in place is seen by
the next forward), and each gradient is reshaped back to its weight's Keras shape.
"""

import numpy as np

from . import activations, windows
from .base import Layer, LayerError, as_tuple, check_choice


def positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise LayerError(f"{name} must be a positive int. Received: {name}={value!r}")
    return int(value)


def check_stride_dilation(strides, dilation_rate):
    """Keras refuses ``strides > 1`` together with ``dilation_rate > 1`` for Conv and ConvTranspose."""
    if max(strides) > 1 and max(dilation_rate) > 1:
        raise LayerError(
            "strides > 1 is not supported together with dilation_rate > 1. "
            f"Received: strides={strides}, dilation_rate={dilation_rate}"
        )


def check_no_groups(layer_name, groups):
    """tf_keras writes ``groups: 1`` into transposed, depthwise and separable configs; nothing else runs."""
    if groups != 1:
        raise LayerError(f"{layer_name} supports groups=1 only. Received: groups={groups!r}")


def init_weight(rng, shape, fan_in, dtype):
    """Zeros, or N(0, 1/fan_in) from ``rng`` (tests give random weights; files overwrite them)."""
    if rng is None:
        return np.zeros(shape, dtype=dtype)
    return rng.normal(0.0, 1.0 / np.sqrt(max(1, fan_in)), size=shape).astype(dtype)


class SpatialLayer(Layer):
    """A channels_last layer with kernel_size/strides/dilation_rate/padding/activation/use_bias,
    computed in 2-D whatever its rank (see the module docstring)."""

    rank = 2
    paddings = ("valid", "same")

    def _init_spatial(self, kernel_size, strides, padding, data_format, dilation_rate, activation, use_bias):
        windows.check_channels_last(type(self).__name__, data_format)
        self.kernel_size = as_tuple(kernel_size, self.rank, "kernel_size")
        self.strides = as_tuple(strides, self.rank, "strides")
        self.dilation_rate = as_tuple(dilation_rate, self.rank, "dilation_rate")
        self.padding = check_choice("padding", padding.lower() if isinstance(padding, str) else padding,
                                    self.paddings)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)

    # ---- the 2-D view ------------------------------------------------------------------------
    def _as_2d(self, values):
        """A rank-length tuple as the 2-D tuple the computation uses: (k,) -> (1, k)."""
        return (1,) * (2 - self.rank) + tuple(values)

    @property
    def kernel_2d(self):
        return self._as_2d(self.kernel_size)

    @property
    def strides_2d(self):
        return self._as_2d(self.strides)

    @property
    def dilation_2d(self):
        return self._as_2d(self.dilation_rate)

    def check_rank(self, shape):
        if len(shape) != self.rank + 2:
            axes = "N, L, C" if self.rank == 1 else "N, H, W, C"
            raise LayerError(f"{type(self).__name__} expects input of rank {self.rank + 2} ({axes}). "
                             f"Received: input_shape={tuple(shape)}")

    def shape_2d(self, shape):
        """(N, L, C) -> (N, 1, L, C) for a 1-D layer; a 2-D shape is returned unchanged."""
        self.check_rank(shape)
        shape = tuple(shape)
        return shape if self.rank == 2 else (shape[0], 1) + shape[1:]

    def shape_from_2d(self, shape):
        return tuple(shape) if self.rank == 2 else (shape[0],) + tuple(shape[2:])

    def to_2d(self, x):
        self.check_rank(x.shape)
        return x if self.rank == 2 else x[:, None]

    def from_2d(self, y):
        return y if self.rank == 2 else y[:, 0]

    def weight_2d(self, name):
        """A weight as the 2-D computation reads it: 1-D kernels gain a leading axis of 1 (a view)."""
        w = self.weights[name]
        return w[None] if self.rank == 1 and w.ndim == 3 else w

    def set_grad(self, name, grad):
        self.grads[name] = np.ascontiguousarray(grad).reshape(self.weights[name].shape)

    def new_weight(self, rng, name, shape_2d, fan_in):
        shape = shape_2d[1:] if self.rank == 1 and len(shape_2d) == 4 else shape_2d
        self.weights[name] = init_weight(rng, shape, fan_in, self.dtype)

    def check_built(self):
        if not self.built or not self.weights:
            raise LayerError(f"{type(self).__name__} '{self.name}' has no weights yet: call build(input_shape) "
                             "or set_weights first")

    def compute_output_shape(self, input_shape):
        return self.shape_from_2d(self.output_shape_2d(self.shape_2d(input_shape)))

    def output_shape_2d(self, shape_2d):
        raise NotImplementedError
