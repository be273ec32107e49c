"""Global pooling (channels_last), as Keras's GlobalAveragePooling1D/2D and GlobalMaxPooling1D/2D.

Each reduces every spatial axis (steps, or H and W) to one value per channel. ``keepdims=True``
keeps the reduced axes with length 1, as ``np.mean(..., keepdims=True)`` does.
"""

import numpy as np

from . import windows
from .base import Layer, LayerError


class _GlobalPooling(Layer):
    rank = 2

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        windows.check_channels_last(type(self).__name__, data_format)
        self.keepdims = bool(keepdims)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != self.rank + 2:
            dims = "(N, steps, C)" if self.rank == 1 else "(N, H, W, C)"
            raise LayerError(f"{type(self).__name__} expects input of rank {self.rank + 2} {dims}. "
                             f"Received: input_shape={tuple(input_shape)}")
        n, c = input_shape[0], input_shape[-1]
        return (n, *(1,) * self.rank, c) if self.keepdims else (n, c)

    def _axes(self):
        return tuple(range(1, self.rank + 1))

    def _check(self, x):
        self.compute_output_shape(x.shape)
        self._shape = x.shape
        return x


class _GlobalAveragePooling(_GlobalPooling):
    def forward(self, x, training=False):
        x = self._check(self.cast(x))
        return x.mean(axis=self._axes(), keepdims=self.keepdims)

    def backward(self, dout):
        n, c = self._shape[0], self._shape[-1]
        share = self.cast(dout).reshape((n,) + (1,) * self.rank + (c,)) / int(np.prod(self._shape[1:-1]))
        return np.broadcast_to(share, self._shape).astype(self.dtype, copy=True)


class _GlobalMaxPooling(_GlobalPooling):
    def forward(self, x, training=False):
        x = self._check(self.cast(x))
        y = x.max(axis=self._axes(), keepdims=True)
        self._cache = (x, y)
        return y if self.keepdims else y.reshape(y.shape[0], y.shape[-1])

    def backward(self, dout):
        """TensorFlow's reduce_max gradient: tied maxima share each channel's gradient equally."""
        x, y = self._cache
        hit = x == y
        count = hit.sum(axis=self._axes(), keepdims=True).astype(self.dtype)
        return np.where(hit, self.cast(dout).reshape(y.shape) / count, 0).astype(self.dtype)


class GlobalAveragePooling2D(_GlobalAveragePooling):
    """``y[n, c] = mean_{h, w} x[n, h, w, c]``.

    Input (N, H, W, C) -> output (N, C), or (N, 1, 1, C) with keepdims. No weights.
    """

    rank = 2


class GlobalMaxPooling2D(_GlobalMaxPooling):
    """``y[n, c] = max_{h, w} x[n, h, w, c]``.

    Input (N, H, W, C) -> output (N, C), or (N, 1, 1, C) with keepdims. No weights.
    Gradient: split equally among the cells equal to the maximum (TensorFlow's reduce_max rule).
    """

    rank = 2


class GlobalMaxPooling1D(_GlobalMaxPooling):
    """``y[n, c] = max_t x[n, t, c]``.

    Input (N, steps, C) -> output (N, C), or (N, 1, C) with keepdims. No weights. Keras's layer
    does not support masking: masked steps take part, and the mask stops here.
    Gradient: split equally among the steps equal to the maximum (TensorFlow's reduce_max rule).
    """

    rank = 1


class GlobalAveragePooling1D(_GlobalAveragePooling):
    """``y[n, c] = sum_t m[n, t] x[n, t, c] / sum_t m[n, t]``; without a mask, ``mean_t x[n, t, c]``.

    Input (N, steps, C) and optional mask (N, steps) -> output (N, C), or (N, 1, C) with keepdims.
    No weights. Masked steps are left out of the average, as in Keras; a row with every step masked
    gives 0/0 = NaN, as Keras does. The mask stops here (Keras's compute_mask returns None).
    """

    rank = 1
    consumes_mask = True

    def forward(self, x, mask=None, training=False):
        if mask is None:
            self._mask = None
            return super().forward(x, training=training)
        x = self._check(self.cast(x))
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != x.shape[:2]:
            raise LayerError(f"GlobalAveragePooling1D: mask shape {mask.shape} does not match the input's "
                             f"(batch, steps) {x.shape[:2]}")
        keep = mask[:, :, None]
        total = np.where(keep, x, 0).astype(self.dtype).sum(axis=1, keepdims=True)
        count = keep.sum(axis=1, keepdims=True).astype(self.dtype)
        with np.errstate(invalid="ignore", divide="ignore"):
            y = total / count
        self._mask = (keep, count)
        return y if self.keepdims else y[:, 0]

    def backward(self, dout):
        if self._mask is None:
            return super().backward(dout)
        keep, count = self._mask
        n, _, c = self._shape
        with np.errstate(invalid="ignore", divide="ignore"):
            share = self.cast(dout).reshape(n, 1, c) / count
        return np.where(keep, share, 0).astype(self.dtype)
