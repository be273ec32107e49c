"""2-D pooling layers (channels_last), as Keras's MaxPooling2D, AveragePooling2D and the global pools.

Windowed pools loop over the ph*pw offsets of the pooling window, each offset contributing one
strided slab of shape (N, oh, ow, C); there is no loop over pixels or batch items.
'same' padding follows TensorFlow (see ``scratch.windows``) and, as TF's kernels do:
- max pooling pads with -inf, so a padded cell never wins;
- average pooling divides each window by the number of real (unpadded) cells it covers.
"""

import numpy as np

from . import windows
from .base import Layer, LayerError, as_tuple


class _Pooling2D(Layer):
    kind = None

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        windows.check_channels_last(type(self).__name__, data_format)
        self.pool_size = as_tuple(pool_size, 2, "pool_size")
        self.strides = self.pool_size if strides is None else as_tuple(strides, 2, "strides")
        self.padding = windows.normalize_padding(padding)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 4:
            raise LayerError(
                f"{type(self).__name__} expects input of rank 4 (N, H, W, C). Received: input_shape={input_shape}"
            )
        n, h, w, c = input_shape
        oh, ow = windows.output_hw((h, w), self.pool_size, self.strides, (1, 1), self.padding, type(self).__name__)
        return (n, oh, ow, c)

    def _geometry(self, x):
        _, oh, ow, _ = self.compute_output_shape(x.shape)
        pads = windows.spatial_padding(x.shape[1:3], self.pool_size, self.strides, (1, 1), self.padding)
        slabs = list(windows.offset_slices(self.pool_size, self.strides, (1, 1), (oh, ow)))
        return pads, slabs


class MaxPooling2D(_Pooling2D):
    """``y[n, i, j, c] = max_{a, b} xp[n, i*sh + a, j*sw + b, c]``, xp padded with -inf.

    Input (N, H, W, C) -> output (N, oh, ow, C); strides default to pool_size.
    Output size: 'valid' ``floor((n - p) / s) + 1``; 'same' ``ceil(n / s)``. No weights.
    Gradient: each window's gradient goes to its first maximal cell in row-major window order.
    """

    def forward(self, x, training=False):
        x = self.cast(x)
        pads, slabs = self._geometry(x)
        xp = windows.pad_hw(x, pads, value=-np.inf)
        (_, (rows, cols)), rest = slabs[0], slabs[1:]
        y = xp[:, rows, cols, :].copy()
        for _, (rows, cols) in rest:
            np.maximum(y, xp[:, rows, cols, :], out=y)
        self._cache = (pads, slabs, xp, y)
        return y

    def backward(self, dout):
        pads, slabs, xp, y = self._cache
        dout = self.cast(dout)
        dxp = np.zeros(xp.shape, dtype=self.dtype)
        routed = np.zeros(y.shape, dtype=bool)
        for _, (rows, cols) in slabs:
            win = (xp[:, rows, cols, :] == y) & ~routed
            dxp[:, rows, cols, :] += np.where(win, dout, 0)
            routed |= win
        return np.ascontiguousarray(windows.crop_hw(dxp, pads))


class AveragePooling2D(_Pooling2D):
    """``y[n, i, j, c] = sum_{a, b} xp[n, i*sh + a, j*sw + b, c] / count[i, j]``.

    ``count[i, j]`` is the number of real input cells in window (i, j): ph*pw for 'valid', fewer
    at the borders for 'same' (padded zeros are not counted).
    Input (N, H, W, C) -> output (N, oh, ow, C); strides default to pool_size.
    Output size: 'valid' ``floor((n - p) / s) + 1``; 'same' ``ceil(n / s)``. No weights.
    """

    def _counts(self, hw, pads, out_hw):
        """(oh, ow, 1) number of real cells per window: the product of per-axis overlaps."""
        per_axis = []
        for n, (before, _), k, s, o in zip(hw, pads, self.pool_size, self.strides, out_hw):
            start = np.arange(o) * s - before
            per_axis.append(np.minimum(start + k, n) - np.maximum(start, 0))
        return (per_axis[0][:, None] * per_axis[1][None, :])[:, :, None].astype(self.dtype)

    def forward(self, x, training=False):
        x = self.cast(x)
        pads, slabs = self._geometry(x)
        xp = windows.pad_hw(x, pads)
        (_, (rows, cols)), rest = slabs[0], slabs[1:]
        total = xp[:, rows, cols, :].copy()
        for _, (rows, cols) in rest:
            total += xp[:, rows, cols, :]
        counts = self._counts(x.shape[1:3], pads, total.shape[1:3])
        self._cache = (pads, slabs, xp.shape, counts)
        return total / counts

    def backward(self, dout):
        pads, slabs, xp_shape, counts = self._cache
        share = self.cast(dout) / counts
        dxp = np.zeros(xp_shape, dtype=self.dtype)
        for _, (rows, cols) in slabs:
            dxp[:, rows, cols, :] += share
        return np.ascontiguousarray(windows.crop_hw(dxp, pads))


class _GlobalPooling2D(Layer):
    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        windows.check_channels_last(type(self).__name__, data_format)
        self.keepdims = bool(keepdims)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 4:
            raise LayerError(
                f"{type(self).__name__} expects input of rank 4 (N, H, W, C). Received: input_shape={input_shape}"
            )
        n, _, _, c = input_shape
        return (n, 1, 1, c) if self.keepdims else (n, c)

    def _check(self, x):
        self.compute_output_shape(x.shape)
        return x


class GlobalAveragePooling2D(_GlobalPooling2D):
    """``y[n, c] = mean_{h, w} x[n, h, w, c]``.

    Input (N, H, W, C) -> output (N, C), or (N, 1, 1, C) with keepdims. No weights.
    """

    def forward(self, x, training=False):
        x = self._check(self.cast(x))
        self._shape = x.shape
        return x.mean(axis=(1, 2), keepdims=self.keepdims)

    def backward(self, dout):
        n, h, w, c = self._shape
        share = self.cast(dout).reshape(n, 1, 1, c) / (h * w)
        return np.broadcast_to(share, self._shape).copy()


class GlobalMaxPooling2D(_GlobalPooling2D):
    """``y[n, c] = max_{h, w} x[n, h, w, c]``.

    Input (N, H, W, C) -> output (N, C), or (N, 1, 1, C) with keepdims. No weights.
    Gradient: shared equally by the maximal cells, as TF's ``reduce_max`` gradient does
    (``dout * (x == max) / count(x == max)``); windowed MaxPooling2D instead gives it to one cell.
    """

    def forward(self, x, training=False):
        x = self._check(self.cast(x))
        n, h, w, c = x.shape
        flat = x.reshape(n, h * w, c)
        self._shape = x.shape
        y = np.max(flat, axis=1, keepdims=True)                               # (N, 1, C)
        self._ties = flat == y                                                # (N, HW, C)
        return y.reshape(n, 1, 1, c) if self.keepdims else y.reshape(n, c)

    def backward(self, dout):
        n, h, w, c = self._shape
        share = self.cast(dout).reshape(n, 1, c) / np.sum(self._ties, axis=1, keepdims=True)
        return (self._ties * share).astype(self.dtype).reshape(self._shape)
