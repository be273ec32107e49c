"""BatchNormalization, at inference and in training mode, with its backward pass."""

import numpy as np

from .. import parallel
from .base import Layer, LayerError

# Keras's backend.epsilon(): guards the masked moments' divisions by the number of kept items.
_MASK_EPSILON = 1e-7


class BatchNormalization(Layer):
    """Normalize each feature along ``axis`` (channels_last: the last axis).

    Inference (or ``trainable=False``, which Keras treats as frozen)::

        y = (x - moving_mean) / sqrt(moving_variance + epsilon) * gamma + beta

    evaluated as TensorFlow's ``tf.nn.batch_normalization`` does it:
    ``inv = gamma / sqrt(var + epsilon)``, ``y = x * inv + (beta - mean * inv)``.

    Training (``forward(x, training=True)``): ``mean`` and ``var`` are the batch moments over every
    axis but ``axis``, ``var`` being the biased one (divide by N, as ``tf.nn.moments``). They
    normalize the batch, and the moving statistics are updated in place::

        moving_mean     <- moving_mean * momentum + mean * (1 - momentum)
        moving_variance <- moving_variance * momentum + var * (1 - momentum)

    With a mask (shape ``x.shape[:-1]``, True = counted), Keras's masked moments are used:
    ``mean = sum(m*x) / (sum(m) + 1e-7)``, ``var = sum(m*(x-mean)^2) / (sum(m) + 1e-7)``; every
    position is still normalized. The mask only matters in training mode.

    Shapes: any rank, output shape = input shape. Weights, each ``(C,)`` with ``C = x.shape[axis]``,
    in Keras order: gamma (absent if ``scale=False``), beta (absent if ``center=False``),
    moving_mean, moving_variance. gamma and beta are trainable; the moving statistics are not.

    Gradients: ``backward`` differentiates through the batch moments after a training forward and
    through fixed statistics after an inference forward. ``grads`` holds gamma and beta only (the
    moving statistics are state, not parameters: they get no gradient), and ``get_gradients()``
    returns them in ``trainable_weight_names()`` order. ``count_params()`` counts all four, as Keras.
    """

    weight_names = ("gamma", "beta", "moving_mean", "moving_variance")
    supports_masking = True
    consumes_mask = True

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True, trainable=True,
                 renorm=False, renorm_clipping=None, renorm_momentum=0.99, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, (list, tuple)):
            # tf.keras 2.x configs store the axis as a one-element list.
            if len(axis) != 1:
                raise LayerError(f"axis must be a single int. Received: axis={list(axis)}")
            axis = axis[0]
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise LayerError(f"axis must be a single int. Received: axis={axis!r}")
        if renorm:
            raise LayerError(f"batch renormalization is not supported. Received: renorm={renorm!r}")
        if not epsilon > 0:
            raise LayerError(f"epsilon must be positive. Received: epsilon={epsilon!r}")
        self.axis = int(axis)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.trainable = bool(trainable)

    # ---- weights -------------------------------------------------------------------------
    def trainable_weight_names(self):
        return tuple(n for n in self.active_weight_names() if n in ("gamma", "beta"))

    def active_weight_names(self):
        names = ("gamma",) * self.scale + ("beta",) * self.center
        return names + ("moving_mean", "moving_variance")

    def build(self, input_shape, rng=None):
        input_shape = tuple(input_shape)
        channels = input_shape[self._channel_axis(len(input_shape))]
        if channels is None:
            raise LayerError(f"BatchNormalization needs a known size on axis {self.axis}. "
                             f"Received: input_shape={input_shape}")
        self.weights = {}
        for name in self.active_weight_names():
            if rng is None:
                w = np.zeros(channels)
            elif name == "moving_variance":
                w = rng.uniform(0.5, 1.5, channels)
            else:
                w = rng.normal(0.0, 0.5, channels) + (1.0 if name == "gamma" else 0.0)
            self.weights[name] = w.astype(self.dtype)
        self.built = True

    def compute_output_shape(self, input_shape):
        self._channel_axis(len(input_shape), input_shape)
        return tuple(input_shape)

    def _channel_axis(self, ndim, input_shape=None):
        if not -ndim <= self.axis < ndim:
            shape = tuple(input_shape) if input_shape is not None else f"of rank {ndim}"
            raise LayerError(f"Axis {self.axis} is out of bounds for input shape {shape}. Received: axis={self.axis}")
        return self.axis % ndim

    # ---- computation ---------------------------------------------------------------------
    # The graph may hand over an input nobody reads again (scratch.models.model, predict only).
    overwrites_input = True

    def forward(self, x, training=False, mask=None, overwrite_input=False):
        x = self.cast(x)
        if mask is not None and np.ndim(mask) != x.ndim - 1:
            raise LayerError("The mask provided should be one dimension less than the inputs. "
                             f"Received: mask.shape={np.shape(mask)}, inputs.shape={x.shape}")
        axis = self._channel_axis(x.ndim)
        reduce_axes = tuple(a for a in range(x.ndim) if a != axis)
        stat_shape = [1] * x.ndim
        stat_shape[axis] = x.shape[axis]
        w = self.weights
        gamma = w["gamma"].reshape(stat_shape) if self.scale else None
        beta = w["beta"].reshape(stat_shape) if self.center else None

        batch = bool(training) and self.trainable
        if batch:
            weight, count = self._mask_weights(mask, x, axis, reduce_axes)
            mean = np.sum(x * weight, axis=reduce_axes, keepdims=True) / count
            centered = x - mean
            var = np.sum(np.square(centered * weight), axis=reduce_axes, keepdims=True) / count
            m = self.momentum
            w["moving_mean"] = (w["moving_mean"] * m + mean.reshape(-1) * (1.0 - m)).astype(self.dtype)
            w["moving_variance"] = (w["moving_variance"] * m + var.reshape(-1) * (1.0 - m)).astype(self.dtype)
        else:
            mean = w["moving_mean"].reshape(stat_shape)
            var = w["moving_variance"].reshape(stat_shape)
            weight = count = None
            centered = None   # only backward needs x - mean: it is formed there, not on every predict

        rstd = 1.0 / np.sqrt(var + self.epsilon)
        inv = rstd if gamma is None else rstd * gamma
        shift = -mean * inv if beta is None else beta - mean * inv
        self._cache = (batch, reduce_axes, (x, mean) if centered is None else centered, rstd, gamma, weight, count)

        def affine(v):   # TF's fused form x * inv + (beta - mean * inv)
            y = v * inv
            y += shift
            return y

        if axis == x.ndim - 1 and inv.dtype == shift.dtype == x.dtype:
            # Both passes per chunk of rows while it is in cache, on both cores; into x itself when
            # the graph hands over an input nobody reads again (predict only: backward reads x).
            def into(chunk, out):
                np.multiply(chunk, inv.reshape(-1), out=out)
                np.add(out, shift.reshape(-1), out=out)
            out = x if overwrite_input and not batch and x.flags.writeable and x.flags.c_contiguous else None
            return parallel.rowwise(affine, x, into=into, out=out)
        return affine(x).astype(self.dtype, copy=False)

    def _mask_weights(self, mask, x, axis, reduce_axes):
        """Per-element weight (1, or the 0/1 mask broadcast over the last axis) and the divisor N."""
        if mask is None:
            n = x.size // x.shape[axis]
            return np.ones((1,) * x.ndim, dtype=self.dtype), np.asarray(n, dtype=self.dtype)
        weight = np.broadcast_to(np.asarray(mask, dtype=bool)[..., None], x.shape).astype(self.dtype)
        count = np.sum(weight, axis=reduce_axes, keepdims=True) + _MASK_EPSILON
        return weight, count.astype(self.dtype)

    def backward(self, dout):
        batch, reduce_axes, centered, rstd, gamma, weight, count = self._cache
        if isinstance(centered, tuple):
            x, mean = centered
            centered = x - mean
        dy = self.cast(dout)
        xhat = centered * rstd
        if self.scale:
            self.grads["gamma"] = np.sum(dy * xhat, axis=reduce_axes).astype(self.dtype)
        if self.center:
            self.grads["beta"] = np.sum(dy, axis=reduce_axes).astype(self.dtype)
        dxhat = dy if gamma is None else dy * gamma
        dx = dxhat * rstd
        if batch:
            # mean and var depend on x: add their paths (weight is 0 on masked items).
            sum_ = lambda a: np.sum(a, axis=reduce_axes, keepdims=True)  # noqa: E731
            dvar = -0.5 * sum_(dxhat * centered) * rstd ** 3
            dmean = -sum_(dxhat) * rstd - 2.0 * dvar * sum_(weight * centered) / count
            dx = dx + (2.0 * dvar * weight * centered + dmean * weight) / count
        return dx.astype(self.dtype)
