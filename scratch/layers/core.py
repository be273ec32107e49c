"""Core layers: Dense, Activation, ReLU, Softmax, Flatten, Reshape, Dropout.

All are channels_last and work on inputs of any rank (batch axis first). Masks: Dense,
Activation, ReLU, Softmax and Dropout pass an incoming mask on unchanged, as Keras does;
Flatten and Reshape drop it (Keras leaves their ``compute_mask`` at the default, which makes
``supports_masking`` False). Softmax is the only one here whose output depends on the mask.
"""

import math

import numpy as np

from . import activations
from .. import parallel
from .base import Layer, LayerError, check_choice


class Dense(Layer):
    """``y = act(x @ kernel + bias)``, contracting the last axis of an input of any rank.

    Input ``(batch, ..., in)`` -> output ``(batch, ..., units)``.
    Weights: kernel ``(in, units)``, bias ``(units,)`` (absent when ``use_bias=False``).
    """

    weight_names = ("kernel", "bias")
    supports_masking = True

    def __init__(self, units, activation=None, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units <= 0:
            raise LayerError(f"units must be a positive integer. Received: units={units!r}")
        self.units = int(units)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)

    def active_weight_names(self):
        return ("kernel", "bias") if self.use_bias else ("kernel",)

    def build(self, input_shape, rng=None):
        in_dim = input_shape[-1]
        if in_dim is None:
            raise LayerError(f"Dense needs a known last input dimension. Received: input_shape={tuple(input_shape)}")
        shapes = {"kernel": (in_dim, self.units), "bias": (self.units,)}
        self.weights = {n: _init(shapes[n], rng, self.dtype, scale=1.0 / math.sqrt(in_dim))
                        for n in self.active_weight_names()}
        self.built = True

    def compute_output_shape(self, input_shape):
        return (*tuple(input_shape)[:-1], self.units)

    def forward(self, x, training=False):
        x = self.cast(x)
        kernel = self.weights["kernel"]
        if x.ndim >= 2 and x.shape[-1] == kernel.shape[0]:
            # One product over all leading axes, split over the engine's pool (scratch.parallel).
            # The bias is added to each part of the product while it is still in cache.
            bias = self.weights["bias"] if self.use_bias else None
            finish = None if bias is None else (lambda part, cols: np.add(part, bias[cols], out=part))
            z = parallel.matmul(x.reshape(-1, kernel.shape[0]), kernel, finish=finish)
            z = z.reshape(*x.shape[:-1], self.units)
        else:
            z = x @ kernel   # rank 1, or a shape error worded by numpy
            if self.use_bias:
                z += self.weights["bias"]
        y = self.activation.forward(z)
        self._cache = (x, z, y)
        return y

    def backward(self, dout):
        x, z, y = self._cache
        dz = self.activation.backward(z, y, self.cast(dout))
        kernel = self.weights["kernel"]
        flat_dz = dz.reshape(-1, self.units)
        self.grads["kernel"] = x.reshape(-1, kernel.shape[0]).T @ flat_dz
        if self.use_bias:
            self.grads["bias"] = flat_dz.sum(axis=0)
        return dz @ kernel.T


class Activation(Layer):
    """``y = act(x)`` element-wise (softmax: over the last axis). Any shape in, same shape out."""

    supports_masking = True

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    # The graph may hand over an input nobody reads again (scratch.models.model, predict only).
    overwrites_input = True

    def forward(self, x, training=False, overwrite_input=False):
        x = self.cast(x)
        fn = self.activation.forward
        # Every activation treats rows (the last axis whole) independently: chunks of rows on both
        # cores while they are in cache (swish's five passes over whole arrays were a quarter of
        # EfficientNetB0), written back into x itself when the graph says x dies here.
        if x.ndim < 2 or self.activation.name == "linear":   # one row: softmax spans it whole
            y = fn(x)
        elif overwrite_input and self.activation.name != "glu":   # glu halves the last axis
            y = parallel.rowwise(fn, x, into=lambda chunk, out: np.copyto(out, fn(chunk)), out=x)
        else:
            y = parallel.rowwise(fn, x)
        self._cache = (x, y)
        return y

    def backward(self, dout):
        x, y = self._cache
        return self.activation.backward(x, y, self.cast(dout))


class ReLU(Layer):
    """Keras 3's generalized ReLU (``keras.activations.relu``)::

        y = min(x if x > threshold else 0, max_value) - negative_slope * max(threshold - x, 0)

    i.e. ``x`` above the threshold (capped at ``max_value``), ``negative_slope * (x - threshold)``
    below it, and 0 at the threshold itself. Any shape in, same shape out. No weights. The math,
    its float32-rounded constants and its slopes at the kinks are ``activations.ParametricReLU``'s.
    """

    supports_masking = True

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        super().__init__(**kwargs)
        if max_value is not None and max_value < 0.0:
            raise LayerError(f"max_value of a ReLU layer cannot be a negative value. Received: max_value={max_value}")
        if negative_slope is None or negative_slope < 0.0:
            raise LayerError("negative_slope of a ReLU layer cannot be None or a negative value. "
                             f"Received: negative_slope={negative_slope}")
        if threshold is None or threshold < 0.0:
            raise LayerError(f"threshold of a ReLU layer cannot be None or a negative value. Received: threshold={threshold}")
        self.max_value = None if max_value is None else float(max_value)
        self.negative_slope = float(negative_slope)
        self.threshold = float(threshold)
        self._relu = activations.ParametricReLU(self.negative_slope, self.max_value, self.threshold)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    # The graph may hand over an input nobody reads again (scratch.models.model, predict only).
    overwrites_input = True

    def forward(self, x, training=False, overwrite_input=False):
        x = self.cast(x)
        self._cache = x
        into = self._into(x.dtype)
        if into is None:   # through a temporary per chunk the pool was slower than one pass
            return self._relu.forward(x)
        # Both cores, as TF's Relu; into x itself when the graph says x is dead after this call
        # (the same values, without a fresh output array to fault in).
        out = x if overwrite_input and x.flags.writeable and x.flags.c_contiguous else None
        return parallel.rowwise(self._relu.forward, x, into=into, out=out)

    def _into(self, dtype):
        """The relu (and relu6) as passes written straight into an output chunk: the very passes
        of ``ParametricReLU.forward``, without its temporary."""
        if self.negative_slope != 0.0 or self.threshold != 0.0:
            return None
        zero, cap = dtype.type(0), None if self._relu._cap is None else dtype.type(self._relu._cap)

        def into(chunk, out):
            np.maximum(chunk, zero, out=out)
            if cap is not None:
                np.minimum(out, cap, out=out)
        return into

    def backward(self, dout):
        return self._relu.backward(self._cache, None, self.cast(dout))


class Softmax(Layer):
    """``y = exp(x) / sum(exp(x))`` over ``axis`` (an int, or a list of ints normalized jointly).

    A joint multi-axis softmax is computed as Keras does, ``exp(x - logsumexp(x, axis))``.
    With a mask (broadcastable to x from the right, True/>0.5 = keep), masked inputs become -1e9
    before the softmax and masked outputs become 0. Any shape in, same shape out. No weights.
    """

    supports_masking = True
    consumes_mask = True

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        axes = axis if isinstance(axis, (list, tuple)) else [axis]
        if not axes or any(isinstance(a, bool) or not isinstance(a, (int, np.integer)) for a in axes):
            raise LayerError(f"axis must be an int or a list of ints. Received: axis={axis!r}")
        self.axis = [int(a) for a in axis] if isinstance(axis, (list, tuple)) else int(axis)
        self._axes = tuple(int(a) for a in axes)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, x, mask=None, training=False):
        x = self.cast(x)
        axes = _normalize_axes(self._axes, x.ndim)
        keep = None if mask is None else _softmax_keep(mask, x.shape)
        if keep is not None:
            x = np.where(keep, x, -1e9).astype(self.dtype)
        if len(self._axes) > 1:
            # Keras's multi-axis path: exp(x - logsumexp), with TF's max-shifted logsumexp.
            m = np.max(x, axis=axes, keepdims=True)
            lse = np.log(np.sum(np.exp(x - m), axis=axes, keepdims=True)) + m
            y = np.exp(x - lse)
        else:
            y = activations.softmax(x, axis=axes[0])
        self._cache = (y, axes, keep)
        if keep is not None:
            y = np.where(keep, y, 0).astype(self.dtype)
        return y

    def backward(self, dout):
        y, axes, keep = self._cache
        dy = self.cast(dout)
        if keep is not None:
            dy = np.where(keep, dy, 0)
        dx = y * (dy - np.sum(dy * y, axis=axes, keepdims=True))
        if keep is not None:
            dx = np.where(keep, dx, 0)
        return dx.astype(self.dtype)


class Flatten(Layer):
    """Row-major flatten of every non-batch axis: ``(batch, d1, ..., dk) -> (batch, d1*...*dk)``.

    A rank-1 input ``(batch,)`` becomes ``(batch, 1)``. With ``data_format='channels_first'`` the
    channel axis is first moved last, so the flat order is always (..., C) as in channels_last.
    """

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = check_choice("data_format", data_format or "channels_last",
                                        ("channels_last", "channels_first"))

    def compute_output_shape(self, input_shape):
        rest = tuple(input_shape)[1:]
        flat = None if any(d is None for d in rest) else math.prod(rest)
        return (input_shape[0], flat)

    def forward(self, x, training=False):
        x = self.cast(x)
        self._cache = x.shape
        if self.data_format == "channels_first" and x.ndim > 1:
            x = np.moveaxis(x, 1, -1)
        return x.reshape(x.shape[0], -1)

    def backward(self, dout):
        shape = self._cache
        dout = self.cast(dout)
        if self.data_format == "channels_first" and len(shape) > 1:
            moved = (shape[0], *shape[2:], shape[1])
            return np.moveaxis(dout.reshape(moved), -1, 1)
        return dout.reshape(shape)


class Reshape(Layer):
    """``(batch, *in_shape) -> (batch, *target_shape)`` in row-major order; one -1 is inferred."""

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        target_shape = tuple(target_shape)
        if any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < -1 for d in target_shape):
            raise LayerError("Each dimension in `target_shape` must be a non-negative integer, or `-1` for a single "
                             f"unknown dimension. Received: target_shape={target_shape}.")
        if target_shape.count(-1) > 1:
            raise LayerError("There must be at most one unknown dimension (-1) in `target_shape`. "
                             f"Received: target_shape={target_shape}.")
        self.target_shape = tuple(int(d) for d in target_shape)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self._resolve(tuple(input_shape)[1:]))

    def _resolve(self, in_shape):
        if any(d is None for d in in_shape):
            return tuple(None if d == -1 else d for d in self.target_shape)
        size = math.prod(in_shape)
        known = math.prod(d for d in self.target_shape if d != -1)
        if -1 not in self.target_shape:
            if known != size:
                raise LayerError("The total size of the tensor must be unchanged. "
                                 f"Received: input_shape={in_shape}, target_shape={self.target_shape}")
            return self.target_shape
        if known == 0 or size % known:
            raise LayerError("The total size of the tensor must be unchanged, however, the input size cannot by "
                             "divided by the specified dimensions in target_shape. "
                             f"Received: input_shape={in_shape}, target_shape={self.target_shape}")
        return tuple(size // known if d == -1 else d for d in self.target_shape)

    def forward(self, x, training=False):
        x = self.cast(x)
        self._cache = x.shape
        return x.reshape(x.shape[0], *self._resolve(x.shape[1:]))

    def backward(self, dout):
        return self.cast(dout).reshape(self._cache)


class Dropout(Layer):
    """Inverted dropout: the identity at inference; in training ``y = x * keep / (1 - rate)``.

    ``keep`` is ``u >= rate`` for ``u ~ U[0, 1)`` drawn with shape ``noise_shape`` (None entries
    take the input's size; size-1 entries broadcast), so each element survives with probability
    ``1 - rate``; ``rate=1`` gives zeros, as in Keras.

    Seeding: the layer owns a ``numpy.random.Generator`` (PCG64) created from ``seed`` at
    construction (OS entropy when seed is None). Every training-mode ``forward`` draws the next
    mask from it, so a given seed yields the same sequence of masks run after run, and
    ``reseed(seed)`` restarts that sequence. The masks are not TensorFlow's (its stateless Philox
    stream cannot be reproduced here); only their law and the scaling match Keras.
    ``backward`` reuses the mask of the last forward. No weights.
    """

    supports_masking = True

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= rate <= 1:
            raise LayerError("Invalid value received for argument `rate`. Expected a float value between 0 and 1. "
                             f"Received: rate={rate}")
        self.rate = float(rate)
        self.noise_shape = check_noise_shape(noise_shape)
        self.seed = seed
        self.reseed(seed)

    def reseed(self, seed):
        self._rng = np.random.default_rng(seed)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, x, training=False):
        x = self.cast(x)
        if not training or self.rate == 0:
            self._cache = None
            return x
        if self.rate == 1:
            scaled_keep = np.zeros((1,) * x.ndim, dtype=self.dtype)
        else:
            keep = self._rng.random(mask_shape(self.noise_shape, x.shape)) >= self.rate
            # Keras (tf.nn.dropout) multiplies by 1/(1-rate) rounded to the input dtype, then by the mask.
            scaled_keep = keep * np.asarray(1.0 / (1.0 - self.rate), dtype=self.dtype)
        self._cache = scaled_keep
        return (x * scaled_keep).astype(self.dtype)

    def backward(self, dout):
        dout = self.cast(dout)
        if self._cache is None:
            return dout
        return (dout * self._cache).astype(self.dtype)


def check_noise_shape(noise_shape):
    """A dropout layer's ``noise_shape`` argument as a tuple (None entries kept), or None."""
    if noise_shape is None:
        return None
    if isinstance(noise_shape, str) or any(
            d is not None and (isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d <= 0)
            for d in noise_shape):
        raise LayerError("Invalid value received for argument `noise_shape`. Expected a tuple of positive "
                         f"integers or None. Received: noise_shape={noise_shape!r}")
    return tuple(None if d is None else int(d) for d in noise_shape)


def mask_shape(noise_shape, input_shape):
    """The shape of a dropout mask: ``input_shape`` where ``noise_shape`` is None or has a None entry."""
    if noise_shape is None:
        return tuple(input_shape)
    if len(noise_shape) != len(input_shape):
        raise LayerError(f"noise_shape {noise_shape} does not match the input rank {len(input_shape)}")
    return tuple(n if d is None else d for d, n in zip(noise_shape, input_shape))


def _init(shape, rng, dtype, scale=1.0):
    if rng is None:
        return np.zeros(shape, dtype=dtype)
    return (rng.standard_normal(shape) * scale).astype(dtype)


def _normalize_axes(axes, ndim):
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise LayerError(f"axis {a} is out of bounds for an input of rank {ndim}")
        out.append(a % ndim)
    return tuple(out)


def _softmax_keep(mask, x_shape):
    """Keras's Softmax mask rules: broadcastable from the right, bool or > 0.5 means keep."""
    mask = np.asarray(mask)
    if mask.ndim > len(x_shape) or any(m != 1 and m != i for m, i in zip(mask.shape[::-1], x_shape[::-1])):
        raise LayerError("The `mask` must be broadcastable to `inputs`. Each mask dimension must be 1 or match the "
                         f"corresponding input dimension. Received: inputs.shape={tuple(x_shape)}, "
                         f"mask.shape={mask.shape}")
    return mask if mask.dtype == bool else mask > 0.5
