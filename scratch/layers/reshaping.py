"""Shape and resampling layers (channels_last): ZeroPadding1D, Cropping1D/2D, UpSampling1D/2D,
Permute and Identity, as Keras defines them.

None has weights. Padding, cropping, repeating and permuting move values without arithmetic, so
their outputs equal Keras's exactly; bilinear UpSampling2D interpolates as TensorFlow's
``ResizeBilinear`` with half-pixel centers does (``bilinear_axis``). ZeroPadding2D lives in conv.py.
Like Keras's own layers, all but Identity drop an incoming mask.
"""

import numpy as np

from . import windows
from .base import Layer, LayerError


def _int_tuple(value, n, name, minimum):
    """Keras's ``standardize_tuple``: an int or n ints, each >= minimum (0 or 1), with its message."""
    values = (value,) * n if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else value
    message = f"The `{name}` argument must be a tuple of {n} integers. Received {name}={value!r}"
    try:
        values = tuple(values)
    except TypeError:
        raise LayerError(message) from None
    if len(values) != n or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        raise LayerError(message)
    bad = {int(v) for v in values if v < minimum}
    if bad:
        raise LayerError(f"{message}, including values {bad} that do not satisfy `value {'>= 0' if minimum == 0 else '> 0'}`")
    return tuple(int(v) for v in values)


def _check_rank(layer, shape, rank, dims):
    if len(shape) != rank:
        raise LayerError(f"{type(layer).__name__} expects input of rank {rank} {dims}. "
                         f"Received: input_shape={tuple(shape)}")


class ZeroPadding1D(Layer):
    """Zero steps before and after a sequence: ``y[:, left + t] = x[:, t]``, zeros elsewhere.

    Input (N, steps, C) -> output (N, left + steps + right, C). ``padding``: int p (both sides) or
    (left, right). No weights.
    """

    def __init__(self, padding=1, data_format=None, **kwargs):
        super().__init__(**kwargs)
        windows.check_channels_last("ZeroPadding1D", data_format)
        self.padding = _int_tuple(padding, 2, "padding", 0)

    def compute_output_shape(self, input_shape):
        _check_rank(self, input_shape, 3, "(N, steps, C)")
        n, t, c = input_shape
        return (n, None if t is None else t + sum(self.padding), c)

    def forward(self, x, training=False):
        x = self.cast(x)
        self.compute_output_shape(x.shape)
        left, right = self.padding
        out = np.zeros((x.shape[0], x.shape[1] + left + right, x.shape[2]), dtype=self.dtype)
        out[:, left:left + x.shape[1]] = x
        return out

    def backward(self, dout):
        left, right = self.padding
        dout = self.cast(dout)
        return np.ascontiguousarray(dout[:, left:dout.shape[1] - right])


class Cropping1D(Layer):
    """Drop steps at both ends: ``y = x[:, start:steps - end]``.

    Input (N, steps, C) -> output (N, steps - start - end, C); the result must keep at least one
    step. ``cropping``: int (both ends) or (start, end). No weights.
    """

    def __init__(self, cropping=(1, 1), **kwargs):
        super().__init__(**kwargs)
        self.cropping = _int_tuple(cropping, 2, "cropping", 0)

    def compute_output_shape(self, input_shape):
        _check_rank(self, input_shape, 3, "(N, steps, C)")
        n, t, c = input_shape
        if t is not None and t - sum(self.cropping) <= 0:
            raise LayerError("`cropping` parameter of `Cropping1D` layer must be smaller than the input length. "
                             f"Received: input_shape={tuple(input_shape)}, cropping={self.cropping}")
        return (n, None if t is None else t - sum(self.cropping), c)

    def forward(self, x, training=False):
        x = self.cast(x)
        self.compute_output_shape(x.shape)
        self._shape = x.shape
        start, end = self.cropping
        return np.ascontiguousarray(x[:, start:x.shape[1] - end])

    def backward(self, dout):
        start, end = self.cropping
        dx = np.zeros(self._shape, dtype=self.dtype)
        dx[:, start:self._shape[1] - end] = self.cast(dout)
        return dx


class Cropping2D(Layer):
    """Drop rows and columns at the borders: ``y = x[:, top:H - bottom, left:W - right]``.

    Input (N, H, W, C) -> output (N, H - top - bottom, W - left - right, C); each result axis
    keeps at least one cell. ``cropping``: int c (all sides), (ch, cw) (symmetric) or
    ((top, bottom), (left, right)). No weights.
    """

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        super().__init__(**kwargs)
        windows.check_channels_last("Cropping2D", data_format)
        if isinstance(cropping, (int, np.integer)) and not isinstance(cropping, bool):
            if cropping < 0:
                raise LayerError(f"`cropping` cannot be negative. Received: cropping={cropping}.")
            self.cropping = ((int(cropping),) * 2,) * 2
        elif isinstance(cropping, (tuple, list)):
            if len(cropping) != 2:
                raise LayerError(f"`cropping` should have two elements. Received: cropping={cropping}.")
            self.cropping = (_int_tuple(cropping[0], 2, "1st entry of cropping", 0),
                             _int_tuple(cropping[1], 2, "2nd entry of cropping", 0))
        else:
            raise LayerError("`cropping` should be either an int, a tuple of 2 ints (symmetric_height_crop, "
                             "symmetric_width_crop), or a tuple of 2 tuples of 2 ints ((top_crop, bottom_crop), "
                             f"(left_crop, right_crop)). Received: cropping={cropping}.")

    def compute_output_shape(self, input_shape):
        _check_rank(self, input_shape, 4, "(N, H, W, C)")
        n, h, w, c = input_shape
        if any(d is not None and sum(crop) >= d for d, crop in zip((h, w), self.cropping)):
            raise LayerError("Values in `cropping` argument should be smaller than the corresponding spatial "
                             f"dimension of the input. Received: input_shape={tuple(input_shape)}, "
                             f"cropping={self.cropping}")
        return (n, *(None if d is None else d - sum(crop) for d, crop in zip((h, w), self.cropping)), c)

    def forward(self, x, training=False):
        x = self.cast(x)
        self.compute_output_shape(x.shape)
        self._shape = x.shape
        return np.ascontiguousarray(windows.crop_hw(x, self.cropping))

    def backward(self, dout):
        (top, bottom), (left, right) = self.cropping
        _, h, w, _ = self._shape
        dx = np.zeros(self._shape, dtype=self.dtype)
        dx[:, top:h - bottom, left:w - right] = self.cast(dout)
        return dx


class UpSampling1D(Layer):
    """Repeat each step ``size`` times: ``y[:, t] = x[:, t // size]``.

    Input (N, steps, C) -> output (N, steps * size, C). No weights. Gradient: the sum over the
    ``size`` copies of each step.
    """

    def __init__(self, size=2, **kwargs):
        super().__init__(**kwargs)
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
            raise LayerError(f"Expected an integer value for `size`, got {type(size)}.")
        if size <= 0:
            raise LayerError(f"Argument `size` should be a positive integer. Received: size={size}")
        self.size = int(size)

    def compute_output_shape(self, input_shape):
        _check_rank(self, input_shape, 3, "(N, steps, C)")
        n, t, c = input_shape
        return (n, None if t is None else t * self.size, c)

    def forward(self, x, training=False):
        x = self.cast(x)
        self.compute_output_shape(x.shape)
        return np.repeat(x, self.size, axis=1)

    def backward(self, dout):
        n, t, c = np.shape(dout)
        return self.cast(dout).reshape(n, t // self.size, self.size, c).sum(axis=2)


class UpSampling2D(Layer):
    """Enlarge an image by integer factors (fh, fw).

    - 'nearest': ``y[:, i, j] = x[:, i // fh, j // fw]`` (Keras repeats rows and columns).
    - 'bilinear': TensorFlow's ``resize`` as Keras calls it (half-pixel centers, no antialias,
      which only acts when shrinking): output cell i reads input coordinate
      ``u = (i + 0.5) * (n / (n * f)) - 0.5``, interpolating between rows ``max(floor(u), 0)`` and
      ``min(ceil(u), n - 1)`` with weight ``u - floor(u)``; columns first, then rows, each as
      ``a + (b - a) * w`` (see ``bilinear_axis``).
    Input (N, H, W, C) -> output (N, H * fh, W * fw, C). No weights.

    TF's ResizeBilinear computes in float32 whatever the input dtype, so Keras's float64 result
    carries float32 rounding. The float64 layer here samples at TF's (float32) positions but
    interpolates in float64: the truth run keeps TF's semantics and drops only its rounding.
    """

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        super().__init__(**kwargs)
        windows.check_channels_last("UpSampling2D", data_format)
        self.size = _int_tuple(size, 2, "size", 1)
        value = interpolation.lower() if isinstance(interpolation, str) else interpolation
        if value not in ("nearest", "bilinear"):
            raise LayerError("UpSampling2D supports interpolation='nearest' or 'bilinear' only. "
                             f"Received: interpolation={interpolation!r}")
        self.interpolation = value

    def compute_output_shape(self, input_shape):
        _check_rank(self, input_shape, 4, "(N, H, W, C)")
        n, h, w, c = input_shape
        return (n, *(None if d is None else d * f for d, f in zip((h, w), self.size)), c)

    def forward(self, x, training=False):
        x = self.cast(x)
        self.compute_output_shape(x.shape)
        self._shape = x.shape
        fh, fw = self.size
        if self.interpolation == "nearest":
            return np.repeat(np.repeat(x, fh, axis=1), fw, axis=2)
        (_, h, w, _) = x.shape
        self._rows, self._cols = bilinear_axis(h, fh, self.dtype), bilinear_axis(w, fw, self.dtype)
        lo, up, weight = self._cols
        left = x[:, :, lo]
        across = left + (x[:, :, up] - left) * weight[:, None]                 # (N, H, W*fw, C)
        lo, up, weight = self._rows
        top = across[:, lo]
        return top + (across[:, up] - top) * weight[:, None, None]

    def backward(self, dout):
        dout = self.cast(dout)
        n, h, w, c = self._shape
        fh, fw = self.size
        if self.interpolation == "nearest":
            return dout.reshape(n, h, fh, w, fw, c).sum(axis=(2, 4))
        # The adjoint of each a + (b - a) * t step: (1 - t) of the gradient to a, t to b.
        lo, up, weight = self._rows
        t = weight[:, None, None]
        d_across = _segment_sum(dout * (1 - t), lo, h, 1) + _segment_sum(dout * t, up, h, 1)
        lo, up, weight = self._cols
        t = weight[:, None]
        return _segment_sum(d_across * (1 - t), lo, w, 2) + _segment_sum(d_across * t, up, w, 2)


def bilinear_axis(n, factor, dtype):
    """(lower index, upper index, weight) per output cell of one axis of TF's half-pixel bilinear
    resize from n to n * factor cells (tensorflow/core/kernels/image/resize_bilinear_op.cc).

    The sample positions are part of what TF's op means, so they are computed as its kernel
    computes them, in float32 whatever the data dtype: scale = n / out in float, then
    ``u = (i + 0.5f) * scale - 0.5f``. The weight ``u - floor(u)`` is then cast to ``dtype``.
    """
    f32 = np.float32
    out = n * factor
    scale = f32(n) / f32(out)
    u = (np.arange(out, dtype=f32) + f32(0.5)) * scale - f32(0.5)
    below = np.floor(u)
    lower = np.maximum(below.astype(np.int64), 0)
    upper = np.minimum(np.ceil(u).astype(np.int64), n - 1)
    return lower, upper, (u - below).astype(dtype)


def _segment_sum(values, index, n, axis):
    """``out[k] = sum of values[i] with index[i] == k`` along ``axis``, for a non-decreasing
    ``index`` that takes every value 0..n-1 (true of both bilinear index arrays when upsampling)."""
    starts = np.searchsorted(index, np.arange(n))
    if not np.array_equal(index[starts], np.arange(n)):
        raise LayerError("UpSampling2D: an input cell has no output cell (only integer upsampling is supported)")
    return np.add.reduceat(values, starts, axis=axis)


class Permute(Layer):
    """Reorder the non-batch axes: ``y = transpose(x, (0,) + dims)``, dims a permutation of 1..r.

    Input (N, d1, ..., dr) -> output (N, d_dims[0], ..., d_dims[r-1]). No weights. Gradient:
    the inverse permutation.
    """

    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        dims = tuple(dims)
        if sorted(dims) != list(range(1, len(dims) + 1)):
            raise LayerError("Invalid permutation argument `dims` for Permute Layer. The set of indices in `dims` "
                             f"must be consecutive and start from 1. Received dims={dims}")
        self.dims = tuple(int(d) for d in dims)

    def compute_output_shape(self, input_shape):
        _check_rank(self, input_shape, len(self.dims) + 1, f"(N + {len(self.dims)} axes, as dims={self.dims})")
        return (input_shape[0], *(input_shape[d] for d in self.dims))

    def forward(self, x, training=False):
        x = self.cast(x)
        self.compute_output_shape(x.shape)
        return np.ascontiguousarray(np.transpose(x, (0,) + self.dims))

    def backward(self, dout):
        return np.ascontiguousarray(np.transpose(self.cast(dout), np.argsort((0,) + self.dims)))


class Identity(Layer):
    """``y = x``, any shape; passes the mask on, as Keras's Identity does. No weights."""

    supports_masking = True

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, x, training=False):
        return self.cast(x)

    def backward(self, dout):
        return self.cast(dout)
