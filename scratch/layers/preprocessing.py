"""Preprocessing layers that are arithmetic on the input: Rescaling and Normalization.

Both are element-wise affine maps with fixed constants (no trainable weights), so their backward
pass is a scale of ``dy``. Constants written in a config as Python numbers or lists go through a
float32 tensor in Keras (``tf.cast``/``convert_to_tensor`` of a Python float makes a float32
first), so a float64 layer sees them rounded to float32; a config value saved as a NumPy array
(``{"class_name": "__numpy__", ...}``) keeps its own dtype. Scratch does the same.
"""

import numpy as np

from .base import Layer, LayerError

# Keras's backend.epsilon(): the floor of Normalization's standard deviation.
_EPSILON = 1e-7


def config_constant(value, name):
    """A config number/list/``__numpy__`` object -> ndarray with the dtype Keras would give it."""
    if isinstance(value, dict):
        if value.get("class_name") != "__numpy__" or not isinstance(value.get("config"), dict):
            raise LayerError(f"{name} must be a number, a list or a NumPy array. Received: {name}={value!r}")
        cfg = value["config"]
        arr = np.asarray(cfg.get("value"), dtype=np.dtype(cfg.get("dtype", "float32")))
    else:
        arr = np.asarray(value)
        if arr.dtype.kind == "f":
            arr = arr.astype(np.float32)   # a Python float becomes a float32 tensor first
    if arr.dtype.kind not in "fiub":
        raise LayerError(f"{name} must be a number, a list or a NumPy array. Received: {name}={value!r}")
    return arr


class Rescaling(Layer):
    """``y = x * scale + offset``; ``scale`` and ``offset`` are numbers or per-channel arrays.

    Arrays broadcast against the input from the right (channels_last: one value per channel).
    Any shape in, same shape out. No weights. ``dx = dy * scale``.
    """

    supports_masking = True

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = scale
        self.offset = offset
        self._scale = config_constant(scale, "scale")
        self._offset = config_constant(offset, "offset")

    def compute_output_shape(self, input_shape):
        for name, c in (("scale", self._scale), ("offset", self._offset)):
            try:
                np.broadcast_shapes(tuple(d or 1 for d in input_shape), c.shape)
            except ValueError:
                raise LayerError(f"{name} of shape {c.shape} does not broadcast against input shape "
                                 f"{tuple(input_shape)}") from None
        return tuple(input_shape)

    def forward(self, x, training=False):
        x = self.cast(x)
        self.compute_output_shape(x.shape)
        return (x * self._scale.astype(self.dtype) + self._offset.astype(self.dtype)).astype(self.dtype)

    def backward(self, dout):
        dy = self.cast(dout)
        return np.broadcast_to(dy * self._scale.astype(self.dtype), dy.shape).astype(self.dtype)


class Normalization(Layer):
    """Standardize with fixed statistics kept per position of ``axis``::

        y = (x - mean) / max(sqrt(variance), 1e-7)          (invert=False)
        y = mean + x * max(sqrt(variance), 1e-7)            (invert=True)

    The epsilon bounds the standard deviation from below (it is not added to the variance).
    ``axis`` (an int, a list, or None = one statistic for everything) names the axes that keep
    their own statistics; every other axis shares them.

    The statistics come either from the config (``mean``/``variance`` given: numbers or arrays whose
    shape matches the trailing kept axes, and the layer has no weights) or from the weights, in
    Keras order: mean, variance (float, shape = the kept axes' sizes), count (int64 scalar, the
    number of samples ``adapt`` saw; counted but unused). Any shape in, same shape out.
    ``dx = dy / max(sqrt(variance), 1e-7)`` (``* ...`` when inverted); nothing is trainable.
    """

    weight_names = ("mean", "variance", "count")
    supports_masking = True

    def __init__(self, axis=-1, mean=None, variance=None, invert=False, **kwargs):
        super().__init__(**kwargs)
        if axis is None:
            axis = ()
        axes = (axis,) if isinstance(axis, (int, np.integer)) and not isinstance(axis, bool) else axis
        if not isinstance(axes, (list, tuple)) or any(isinstance(a, bool) or not isinstance(a, (int, np.integer))
                                                      for a in axes):
            raise LayerError(f"axis must be an int, a list of ints or None. Received: axis={axis!r}")
        self.axis = tuple(int(a) for a in axes)
        if (mean is None) != (variance is None):
            raise LayerError("When setting values directly, both `mean` and `variance` must be set. "
                             f"Received: mean={mean} and variance={variance}")
        self.invert = bool(invert)
        self.input_mean = None if mean is None else config_constant(mean, "mean")
        self.input_variance = None if variance is None else config_constant(variance, "variance")
        if mean is not None:
            if self.input_mean.shape != self.input_variance.shape:
                raise LayerError("When setting values directly, `mean` and `variance` must have the same shape. "
                                 f"Received: mean shape {self.input_mean.shape} and variance shape "
                                 f"{self.input_variance.shape}")
            if self.input_mean.ndim > len(self.axis):
                raise LayerError(f"The rank of `mean` must be less than or equal to the number of axes "
                                 f"({len(self.axis)}). Received: mean shape {self.input_mean.shape} for axis {self.axis}")
        self._input_shape = None

    # ---- weights -------------------------------------------------------------------------
    def active_weight_names(self):
        return () if self.input_mean is not None else self.weight_names

    def trainable_weight_names(self):
        return ()

    def _keep_axes(self, input_shape):
        ndim = len(input_shape)
        if any(not -ndim <= a < ndim for a in self.axis):
            raise LayerError(f"All `axis` values must be in the range [-ndim, ndim). Received inputs with "
                             f"ndim={ndim}, while axis={self.axis}")
        keep = tuple(sorted(a % ndim for a in self.axis))
        if any(input_shape[d] is None for d in keep):
            raise LayerError(f"All `axis` values to be kept must have a known shape. Received axis={self.axis}, "
                             f"inputs.shape={tuple(input_shape)}")
        return keep

    def build(self, input_shape, rng=None):
        keep = self._keep_axes(input_shape)
        self._input_shape = tuple(input_shape)
        if self.input_mean is None:
            shape = tuple(input_shape[d] for d in keep)
            mean = np.zeros(shape) if rng is None else rng.normal(0.0, 1.0, shape)
            var = np.ones(shape) if rng is None else rng.uniform(0.2, 2.0, shape)
            self.weights = {"mean": mean.astype(self.dtype), "variance": var.astype(self.dtype),
                            "count": np.asarray(0, dtype=np.int64)}
        self.built = True

    def expected_weight_shape(self, name):
        if name == "count":
            return ()
        return super().expected_weight_shape(name)

    def set_weights(self, arrays):
        super().set_weights(arrays)
        if "count" in self.weights:   # an integer counter, not a float statistic
            self.weights["count"] = np.asarray(arrays[-1]).astype(np.int64)

    def to_dtype(self, dtype):
        count = self.weights.get("count")
        super().to_dtype(dtype)
        if count is not None:
            self.weights["count"] = count
        return self

    def compute_output_shape(self, input_shape):
        self._keep_axes(input_shape)
        return tuple(input_shape)

    # ---- computation ---------------------------------------------------------------------
    def _statistics(self, shape):
        """mean and variance broadcast to ``shape`` (Keras's ``_broadcast_shape``)."""
        keep = self._keep_axes(shape)
        target = [shape[d] if d in keep else 1 for d in range(len(shape))]
        if self.input_mean is None:
            mean, var = self.weights["mean"], self.weights["variance"]
            return mean.reshape(target), var.reshape(target)
        mean, var = self.input_mean.astype(self.dtype), self.input_variance.astype(self.dtype)
        if mean.ndim:
            # The given statistics fill the kept axes from the right.
            expanded = [1] * len(shape)
            for i in range(1, mean.ndim + 1):
                expanded[keep[-i]] = mean.shape[-i]
            mean, var = mean.reshape(expanded), var.reshape(expanded)
        return np.broadcast_to(mean, target), np.broadcast_to(var, target)

    def forward(self, x, training=False):
        x = self.cast(x)
        mean, var = self._statistics(x.shape)
        std = np.maximum(np.sqrt(var), _EPSILON).astype(self.dtype)
        self._std = std
        y = mean + x * std if self.invert else (x - mean) / std
        return y.astype(self.dtype)

    def backward(self, dout):
        dy = self.cast(dout)
        return (dy * self._std if self.invert else dy / self._std).astype(self.dtype)
