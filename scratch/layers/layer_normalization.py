"""Per-sample normalizations: LayerNormalization, GroupNormalization, UnitNormalization.

Unlike BatchNormalization they hold no statistics: each sample is normalized by its own moments
over some axes, the same at inference and in training. All three keep the input shape, pass an
incoming mask on unchanged, and compute in at least float32 (Keras casts float16 inputs up for
the moments and the result back down).
"""

import numpy as np

from .base import Layer, LayerError


def _axes(value, name="axis"):
    """An int or a list of ints -> list of ints (Keras's validation)."""
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if not items or any(isinstance(a, bool) or not isinstance(a, (int, np.integer)) for a in items):
        raise LayerError(f"{name} must be an int or a list of ints. Received: {name}={value!r}")
    return [int(a) for a in items]


def _check_bounds(axes, input_shape, shown):
    ndim = len(input_shape)
    for a in axes:
        if not -ndim <= a < ndim:
            raise LayerError(f"Axis {a} is out of bounds for input shape {tuple(input_shape)}. Received: axis={shown}")
    positive = [a % ndim for a in axes]
    if len(set(positive)) != len(positive):
        raise LayerError(f"axis names the same axis twice. Received: axis={shown}")
    if 0 in positive:
        raise LayerError(f"normalizing over the batch axis is not supported. Received: axis={shown}")
    return positive


def _compute_dtype(dtype):
    return np.promote_types(dtype, np.float32)


def _gamma_beta(names, shape, rng, dtype):
    """Keras's initial gamma (ones) and beta (zeros); with ``rng``, random ones around them (tests)."""
    return {name: (np.full(shape, 1.0 if name == "gamma" else 0.0) if rng is None else
                   rng.normal(1.0 if name == "gamma" else 0.0, 0.5, shape)).astype(dtype) for name in names}


def _centered_backward(dxhat, xhat, rstd, axes):
    """d/dx of ``xhat = (x - mean) * rstd`` with mean/var over ``axes``, given dL/dxhat."""
    mean = lambda a: np.mean(a, axis=axes, keepdims=True)  # noqa: E731
    return rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))


class LayerNormalization(Layer):
    """Normalize each sample over ``axis`` (an int or a list), then scale and shift::

        mean, var = moments of x over axis          (biased variance, as tf.nn.moments)
        inv = gamma / sqrt(var + epsilon)
        y   = x * inv + (beta - mean * inv)

    ``rms_scaling=True`` (deprecated in Keras, kept for files that have it) drops the centering
    and beta: ``y = x / sqrt(var + epsilon) * gamma`` with the same *variance* (not the mean
    square, as Keras's warning says).

    Shapes: any rank, output shape = input shape. Weights, in Keras order: gamma (if ``scale`` or
    ``rms_scaling``), beta (if ``center`` and not ``rms_scaling``), each of shape
    ``tuple(input_shape[a] for a in sorted(axis))``: the axes sorted as *given* (so [-1, 1] stays
    [-1, 1]), and reshaped row-major onto the normalized axes, exactly as Keras does.
    """

    weight_names = ("gamma", "beta")
    supports_masking = True

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True, rms_scaling=False, **kwargs):
        super().__init__(**kwargs)
        self._given_axis = axis
        self.axis = sorted(_axes(axis))
        if not isinstance(epsilon, (int, float, np.floating)) or not epsilon >= 0:
            raise LayerError(f"epsilon must be a non-negative float. Received: epsilon={epsilon!r}")
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.rms_scaling = bool(rms_scaling)

    def active_weight_names(self):
        return ("gamma",) * (self.scale or self.rms_scaling) + ("beta",) * (self.center and not self.rms_scaling)

    def _param_shape(self, input_shape):
        _check_bounds(self.axis, input_shape, self._given_axis)
        shape = tuple(input_shape[a] for a in self.axis)
        if any(d is None for d in shape):
            raise LayerError(f"LayerNormalization needs a known size on axis {self._given_axis}. "
                             f"Received: input_shape={tuple(input_shape)}")
        return shape

    def build(self, input_shape, rng=None):
        self.weights = _gamma_beta(self.active_weight_names(), self._param_shape(input_shape), rng, self.dtype)
        self.built = True

    def compute_output_shape(self, input_shape):
        _check_bounds(self.axis, input_shape, self._given_axis)
        return tuple(input_shape)

    def _broadcast(self, w, ndim, axes, shape):
        # Keras reshapes a weight onto the normalized axes unless the axis is exactly [ndim - 1].
        if self.axis == [ndim - 1]:
            return w
        target = [1] * ndim
        for a in axes:
            target[a] = shape[a]
        return w.reshape(target)

    def forward(self, x, training=False):
        x = self.cast(x)
        cd = _compute_dtype(self.dtype)
        xc = x.astype(cd, copy=False)
        axes = tuple(_check_bounds(self.axis, x.shape, self._given_axis))
        gamma = beta = None
        if "gamma" in self.weights and (self.scale or self.rms_scaling):
            gamma = self._broadcast(self.weights["gamma"].astype(cd), x.ndim, axes, x.shape)
        if self.center and not self.rms_scaling:
            beta = self._broadcast(self.weights["beta"].astype(cd), x.ndim, axes, x.shape)
        mean = np.mean(xc, axis=axes, keepdims=True)
        var = np.mean(np.square(xc - mean), axis=axes, keepdims=True)
        rstd = 1.0 / np.sqrt(var + self.epsilon)
        if self.rms_scaling:
            y = xc * rstd
            if gamma is not None:
                y = y * gamma
        else:
            inv = rstd if gamma is None else rstd * gamma
            shift = -mean * inv if beta is None else beta - mean * inv
            y = xc * inv + shift
        self._cache = (xc, mean, rstd, gamma, axes)
        return y.astype(self.dtype)

    def backward(self, dout):
        xc, mean, rstd, gamma, axes = self._cache
        dy = np.asarray(dout).astype(xc.dtype)
        others = tuple(a for a in range(xc.ndim) if a not in axes)
        g = dy if gamma is None else dy * gamma
        if self.rms_scaling:
            n = np.prod([xc.shape[a] for a in axes])
            dx = g * rstd - rstd ** 3 * np.sum(g * xc, axis=axes, keepdims=True) * (xc - mean) / n
            normalized = xc * rstd
        else:
            normalized = (xc - mean) * rstd
            dx = _centered_backward(g, normalized, rstd, axes)
        if gamma is not None:
            dgamma = np.sum(dy * normalized, axis=others, keepdims=True)
            self.grads["gamma"] = dgamma.reshape(self.weights["gamma"].shape).astype(self.dtype)
        if "beta" in self.active_weight_names():
            self.grads["beta"] = np.sum(dy, axis=others, keepdims=True).reshape(
                self.weights["beta"].shape).astype(self.dtype)
        return dx.astype(self.dtype)


class GroupNormalization(Layer):
    """Split the channels (``axis``) into ``groups`` and normalize each sample per group::

        x   -> (..., groups, C // groups, ...)       the channel axis split in two
        mean, var over every axis but batch and group (biased variance)
        y   = x * inv + (beta - mean * inv),  inv = gamma / sqrt(var + epsilon)

    ``groups=-1`` means one group per channel (instance normalization); Keras then stores the
    channel count as ``groups``. Shapes: any rank >= 2, output shape = input shape. Weights, in
    Keras order: gamma (if ``scale``), beta (if ``center``), each ``(C,)``.
    """

    weight_names = ("gamma", "beta")
    supports_masking = True

    def __init__(self, groups=32, axis=-1, epsilon=1e-3, center=True, scale=True, **kwargs):
        if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or (groups <= 0 and groups != -1):
            raise LayerError("Received an invalid value for argument `groups`, expected a positive integer (or "
                             f"`-1` for instance normalization). Received: groups={groups}")
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise LayerError(f"axis must be a single int. Received: axis={axis!r}")
        self.groups = int(groups)
        self.axis = int(axis)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)

    def active_weight_names(self):
        return ("gamma",) * self.scale + ("beta",) * self.center

    def _channels(self, input_shape):
        (axis,) = _check_bounds([self.axis], input_shape, self.axis)
        dim = input_shape[axis]
        if dim is None:
            raise LayerError(f"Axis {self.axis} of input tensor should have a defined dimension but the layer "
                             f"received an input with shape {tuple(input_shape)}.")
        groups = dim if self.groups == -1 else self.groups
        if dim < groups:
            raise LayerError(f"Number of groups ({groups}) cannot be more than the number of channels ({dim}).")
        if dim % groups:
            raise LayerError(f"Number of groups ({groups}) must be a multiple of the number of channels ({dim}).")
        return axis, dim, groups

    def build(self, input_shape, rng=None):
        _, dim, self.groups = self._channels(input_shape)
        self.weights = _gamma_beta(self.active_weight_names(), dim, rng, self.dtype)
        self.built = True

    def compute_output_shape(self, input_shape):
        self._channels(input_shape)
        return tuple(input_shape)

    def forward(self, x, training=False):
        x = self.cast(x)
        axis, dim, groups = self._channels(x.shape)
        cd = _compute_dtype(self.dtype)
        grouped_shape = (*x.shape[:axis], groups, dim // groups, *x.shape[axis + 1:])
        xg = x.astype(cd, copy=False).reshape(grouped_shape)
        axes = tuple(a for a in range(1, xg.ndim) if a != axis)      # all but batch and group
        per_channel = [1] * xg.ndim
        per_channel[axis:axis + 2] = [groups, dim // groups]
        mean = np.mean(xg, axis=axes, keepdims=True)
        var = np.mean(np.square(xg - mean), axis=axes, keepdims=True)
        rstd = 1.0 / np.sqrt(var + self.epsilon)
        gamma = self.weights["gamma"].astype(cd).reshape(per_channel) if self.scale else None
        inv = rstd if gamma is None else rstd * gamma
        shift = -mean * inv
        if self.center:
            shift = shift + self.weights["beta"].astype(cd).reshape(per_channel)
        y = xg * inv + shift
        self._cache = ((xg - mean) * rstd, rstd, gamma, axes, axis, x.shape)
        return y.reshape(x.shape).astype(self.dtype)

    def backward(self, dout):
        xhat, rstd, gamma, axes, axis, shape = self._cache
        dy = np.asarray(dout).astype(xhat.dtype).reshape(xhat.shape)
        others = tuple(a for a in range(xhat.ndim) if a not in (axis, axis + 1))
        if self.scale:
            self.grads["gamma"] = np.sum(dy * xhat, axis=others).reshape(-1).astype(self.dtype)
        if self.center:
            self.grads["beta"] = np.sum(dy, axis=others).reshape(-1).astype(self.dtype)
        dx = _centered_backward(dy if gamma is None else dy * gamma, xhat, rstd, axes)
        return dx.reshape(shape).astype(self.dtype)


class UnitNormalization(Layer):
    """Scale each sample to unit L2 norm over ``axis`` (an int or a list)::

        y = x * min(1 / sqrt(sum(x^2 over axis)), 1 / epsilon),   epsilon = 1e-12 (fixed)

    i.e. ``x / max(||x||, 1e-12)``: Keras 3's ``ops.normalize(order=2)`` caps the inverse norm rather
    than adding epsilon. tf_keras's layer is ``tf.linalg.l2_normalize`` instead, which floors the
    *squared* norm: ``y = x / sqrt(max(sum(x^2), 1e-12))``, i.e. ``x / max(||x||, 1e-6)``; the loader
    asks for it with ``squared_norm_floor=1e-12`` in tf_keras files. Any shape in, same shape out. No
    weights. Gradient: through the norm while the floor is not active, ``dy * inv`` with a constant
    ``inv`` where it is (tf.minimum / tf.maximum send the gradient to the constant then).
    """

    supports_masking = True
    _INV_CAP = 1.0 / 1e-12

    def __init__(self, axis=-1, squared_norm_floor=None, **kwargs):
        super().__init__(**kwargs)
        self.axis = _axes(axis) if isinstance(axis, (list, tuple)) else _axes(axis)[0]
        self.squared_norm_floor = None if squared_norm_floor is None else float(squared_norm_floor)

    def compute_output_shape(self, input_shape):
        _check_bounds(_axes(self.axis), input_shape, self.axis)
        return tuple(input_shape)

    def forward(self, x, training=False):
        x = self.cast(x)
        axes = tuple(_check_bounds(_axes(self.axis), x.shape, self.axis))
        squared = np.sum(np.square(x), axis=axes, keepdims=True)
        if self.squared_norm_floor is not None:       # tf_keras: rsqrt(maximum(sum, floor))
            floored = squared < self.squared_norm_floor
            inv = 1.0 / np.sqrt(np.maximum(squared, self.squared_norm_floor))
        else:                                          # Keras 3: minimum(rsqrt(sum), 1 / epsilon)
            with np.errstate(divide="ignore"):
                inv = 1.0 / np.sqrt(squared)
            floored = inv > self._INV_CAP
            inv = np.where(floored, self._INV_CAP, inv)
        inv = inv.astype(self.dtype)
        self._cache = (x, inv, floored, axes)
        return (x * inv).astype(self.dtype)

    def backward(self, dout):
        x, inv, floored, axes = self._cache
        dy = self.cast(dout)
        through_norm = -x * inv ** 3 * np.sum(dy * x, axis=axes, keepdims=True)
        return (dy * inv + np.where(floored, 0.0, through_norm)).astype(self.dtype)
