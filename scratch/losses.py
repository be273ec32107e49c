"""Keras 3 losses with their gradients with respect to the predictions.

A loss is called as Keras calls it, ``loss(y_true, y_pred, sample_weight=None, mask=None)``, and
``loss.value_and_grad(...)`` also returns ``d loss / d y_pred`` (for reduction ``"none"``: the
gradient of the sum of the per-sample values, as ``tf.GradientTape`` takes a non-scalar target).

Per-sample values (``call``) follow ``keras/src/losses/losses.py`` and the TensorFlow backend:
- probabilities are clipped to ``[eps, 1 - eps]``, ``eps = 1e-7`` (``backend.epsilon()``); the clip
  passes the gradient where the value lies inside the closed interval (TF's ``clip_by_value``);
- CategoricalCrossentropy on probabilities first renormalizes ``p / sum(p, axis)``; on logits it is
  ``softmax_cross_entropy_with_logits``, whose gradient TF defines as ``softmax(z) - y`` (exact only
  when the labels sum to 1, which label smoothing keeps);
- SparseCategoricalCrossentropy on probabilities is ``sparse_softmax_xent(log(clip(p)))``;
  ``ignore_class`` zeroes the ignored items' targets, predictions and values and masks them;
- BinaryCrossentropy is the mean over ``axis`` of the element-wise loss; on logits TF's
  ``max(z, 0) - z*y + log1p(exp(-|z|))`` (gradient ``sigmoid(z) - y``);
- MeanSquaredError, MeanAbsoluteError (gradient ``sign``, 0 at 0) and Huber (quadratic where
  ``|e| <= delta``) average over the last axis.

Reduction (``keras/src/losses/loss.py::reduce_weighted_values``): the weight of each value is
``sample_weight * mask_weight``; ``sum`` adds the weighted values, ``sum_over_batch_size`` divides
that sum by the number of values (0 if there are none), ``none`` returns them. For
``sum_over_batch_size`` a mask becomes ``mask_weight = mask * size / count(mask)`` (0 when nothing is
kept), so the result is ``sum(values * sample_weight over kept items) / count(kept)``. tf_keras
(``apply_valid_mask``, how the committed captioners are trained) does the same: its compile step
multiplies the mask into the sample weight and its Loss then redistributes it the same way. A sample
weight of lower rank than the values is broadcast over their trailing axes (tf_keras's reading;
Keras 3 would align a ``(B,)`` weight with the values' last axis).
"""

import numpy as np

from .errors import ScratchError

EPSILON = 1e-7   # keras.backend.epsilon()

REDUCTIONS = ("sum_over_batch_size", "sum", "none", "mean", "mean_with_sample_weight")


class LossError(ScratchError, ValueError):
    """A loss got arguments or arrays it cannot use."""


class Loss:
    """Base class: ``call`` gives per-sample values, ``call_backward`` their gradient."""

    def __init__(self, reduction="sum_over_batch_size", name=None, dtype=None):
        if reduction is None:
            reduction = "none"
        if reduction not in REDUCTIONS:
            raise LossError(f"Invalid value for argument `reduction`. Expected one of {set(REDUCTIONS)}. "
                            f"Received: reduction={reduction}")
        self.reduction = reduction
        self.name = name or _snake(type(self).__name__)
        self.dtype = None if dtype is None else np.dtype(dtype)

    # ---- the public calls ---------------------------------------------------------------------
    def __call__(self, y_true, y_pred, sample_weight=None, mask=None):
        return self.value_and_grad(y_true, y_pred, sample_weight, mask, grad=False)[0]

    def value_and_grad(self, y_true, y_pred, sample_weight=None, mask=None, grad=True):
        """``(value, d value / d y_pred)``; the gradient is None when ``grad=False``."""
        y_pred = np.asarray(y_pred)
        dtype = self.dtype or (y_pred.dtype if y_pred.dtype.kind == "f" else np.dtype(np.float32))
        y_pred = y_pred.astype(dtype)
        values, own_mask = self.call(y_true, y_pred)
        mask = _and_masks(mask, own_mask)
        weight = self._weights(values, sample_weight, mask)
        weighted = values if weight is None else values * weight
        if self.reduction == "none":
            value, dvalues = weighted, np.ones_like(weighted)
        else:
            total = np.sum(weighted, dtype=dtype)
            divisor = self._divisor(weighted, weight)
            value = (total / divisor if divisor else np.zeros((), dtype)) if divisor is not None else total
            dvalues = np.full(weighted.shape, 0.0 if divisor == 0 else 1.0 / (divisor or 1.0), dtype)
        if weight is not None:
            dvalues = dvalues * weight
        dvalues = _unbroadcast(dvalues, values.shape)
        value = np.asarray(value, dtype=dtype)
        return value, (self.call_backward(y_true, y_pred, dvalues.astype(dtype)).astype(dtype) if grad else None)

    # ---- reduction ----------------------------------------------------------------------------
    def _weights(self, values, sample_weight, mask):
        dtype = values.dtype
        weight = None if sample_weight is None else _match_rank(np.asarray(sample_weight, dtype), values.ndim)
        if mask is not None:
            mask = np.asarray(mask, bool)
            float_mask = mask.astype(dtype)
            if self.reduction in ("sum_over_batch_size", "mean"):
                valid = float(np.sum(float_mask))
                float_mask = np.where(mask, (mask.size / valid) if valid else 0.0, 0.0).astype(dtype)
            float_mask = _match_rank(float_mask, values.ndim)
            weight = float_mask if weight is None else weight * float_mask
        return weight

    def _divisor(self, weighted, weight):
        if self.reduction == "sum":
            return None
        if self.reduction == "mean_with_sample_weight" and weight is not None:
            return float(np.sum(weight))
        return float(weighted.size)

    # ---- per-sample values --------------------------------------------------------------------
    def call(self, y_true, y_pred):
        """``(values, mask or None)``."""
        raise NotImplementedError

    def call_backward(self, y_true, y_pred, dvalues):
        raise NotImplementedError

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction}

    def __repr__(self):
        return f"{type(self).__name__}({self.get_config()})"


class CategoricalCrossentropy(Loss):
    """``-sum(y * log(p), axis)`` with one-hot (or soft) ``y``; shapes ``(..., C)`` -> ``(...)``.

    ``label_smoothing`` s: ``y <- y * (1 - s) + s / C``.
    """

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size",
                 name="categorical_crossentropy", dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise LossError(f"`axis` must be of type `int`. Received: axis={axis} of type {type(axis)}")
        if not 0 <= label_smoothing <= 1:
            raise LossError(f"label_smoothing must be in [0, 1]. Received: label_smoothing={label_smoothing}")
        self.from_logits, self.label_smoothing, self.axis = bool(from_logits), float(label_smoothing), int(axis)

    def _target(self, y_true, y_pred):
        y = np.asarray(y_true).astype(y_pred.dtype)
        if y.shape != y_pred.shape:
            raise LossError("Arguments `target` and `output` must have the same shape. "
                            f"Received: target.shape={y.shape}, output.shape={y_pred.shape}")
        if self.label_smoothing:
            y = y * (1.0 - self.label_smoothing) + self.label_smoothing / y.shape[-1]
        return y

    def call(self, y_true, y_pred):
        y, ax = self._target(y_true, y_pred), self.axis
        if self.from_logits:
            shifted = y_pred - np.max(y_pred, axis=ax, keepdims=True)
            lse = np.log(np.sum(np.exp(shifted), axis=ax, keepdims=True))
            return np.sum(y * (lse - shifted), axis=ax), None
        q = np.clip(y_pred / np.sum(y_pred, axis=ax, keepdims=True), EPSILON, 1.0 - EPSILON)
        return -np.sum(y * np.log(q), axis=ax), None

    def call_backward(self, y_true, y_pred, dvalues):
        y, ax = self._target(y_true, y_pred), self.axis
        d = np.expand_dims(dvalues, ax)
        if self.from_logits:
            e = np.exp(y_pred - np.max(y_pred, axis=ax, keepdims=True))
            return d * (e / np.sum(e, axis=ax, keepdims=True) - y)
        s = np.sum(y_pred, axis=ax, keepdims=True)
        q = y_pred / s
        inside = (q >= EPSILON) & (q <= 1.0 - EPSILON)
        dq = np.where(inside, -d * y / np.clip(q, EPSILON, 1.0 - EPSILON), 0.0)
        # through q = p / sum(p): dp_j = (dq_j - sum_k dq_k q_k) / s
        return (dq - np.sum(dq * q, axis=ax, keepdims=True)) / s

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits, "label_smoothing": self.label_smoothing,
                "axis": self.axis}


class SparseCategoricalCrossentropy(Loss):
    """``-log(p[y])`` with integer ``y`` of shape ``(...)`` or ``(..., 1)``; ``y_pred`` ``(..., C)``.

    ``ignore_class``: items whose target equals it contribute 0 and are masked out (so Keras 3's
    ``sum_over_batch_size`` averages over the other items).
    """

    def __init__(self, from_logits=False, ignore_class=None, axis=-1, reduction="sum_over_batch_size",
                 name="sparse_categorical_crossentropy", dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        if axis != -1:
            raise LossError(f"Only axis=-1 is currently supported. Received: axis={axis}")
        self.from_logits, self.ignore_class, self.axis = bool(from_logits), ignore_class, -1

    def _prepare(self, y_true, y_pred):
        y = np.asarray(y_true)
        if y.ndim == y_pred.ndim and y.shape[-1] == 1:
            y = y[..., 0]
        if y.shape != y_pred.shape[:-1]:
            raise LossError("Arguments `target` and `output` must have the same shape up until the last "
                            f"dimension: target.shape={y.shape}, output.shape={y_pred.shape}")
        valid = None
        if self.ignore_class is not None:
            valid = y != self.ignore_class
            y = np.where(valid, y, 0)
            y_pred = np.where(valid[..., None], y_pred, 0).astype(y_pred.dtype)
        y = y.astype(np.int64)
        if np.any((y < 0) | (y >= y_pred.shape[-1])):
            raise LossError(f"Received a label value outside the valid range [0, {y_pred.shape[-1]})")
        return y, y_pred, valid

    def _logits(self, y_pred):
        if self.from_logits:
            return y_pred, None
        clipped = np.clip(y_pred, EPSILON, 1.0 - EPSILON)
        return np.log(clipped), clipped

    def call(self, y_true, y_pred):
        y, y_pred, valid = self._prepare(y_true, y_pred)
        z, _ = self._logits(y_pred)
        shifted = z - np.max(z, axis=-1, keepdims=True)
        lse = np.log(np.sum(np.exp(shifted), axis=-1))
        values = lse - np.take_along_axis(shifted, y[..., None], axis=-1)[..., 0]
        if valid is not None:
            values = np.where(valid, values, 0.0).astype(values.dtype)
        return values, valid

    def call_backward(self, y_true, y_pred, dvalues):
        y, y_pred, valid = self._prepare(y_true, y_pred)
        z, clipped = self._logits(y_pred)
        e = np.exp(z - np.max(z, axis=-1, keepdims=True))
        dz = e / np.sum(e, axis=-1, keepdims=True)
        np.put_along_axis(dz, y[..., None], np.take_along_axis(dz, y[..., None], axis=-1) - 1.0, axis=-1)
        d = dvalues if valid is None else np.where(valid, dvalues, 0.0)
        dz = dz * d[..., None]
        if clipped is None:
            return dz
        inside = (y_pred >= EPSILON) & (y_pred <= 1.0 - EPSILON)
        return np.where(inside, dz / clipped, 0.0)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits, "ignore_class": self.ignore_class,
                "axis": self.axis}


class BinaryCrossentropy(Loss):
    """``mean(-(y log p + (1-y) log(1-p)), axis)``; ``label_smoothing`` s: ``y <- y (1-s) + s/2``.

    ``log_epsilon``: tf_keras adds its epsilon inside both logs after clipping, ``log(p + eps)`` and
    ``log(1 - p + eps)`` (Keras 3 does not); the trainer sets it for files with tf_keras semantics.
    """

    log_epsilon = 0.0

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size",
                 name="binary_crossentropy", dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        if not 0 <= label_smoothing <= 1:
            raise LossError(f"label_smoothing must be in [0, 1]. Received: label_smoothing={label_smoothing}")
        self.from_logits, self.label_smoothing, self.axis = bool(from_logits), float(label_smoothing), int(axis)

    def _target(self, y_true, y_pred):
        y_true, y_pred = same_rank(np.asarray(y_true), y_pred)
        y = y_true.astype(y_pred.dtype)
        if y.shape != y_pred.shape:
            raise LossError("Arguments `target` and `output` must have the same shape. "
                            f"Received: target.shape={y.shape}, output.shape={y_pred.shape}")
        if self.label_smoothing:
            y = y * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        return y, y_pred

    def call(self, y_true, y_pred):
        y, p = self._target(y_true, y_pred)
        if self.from_logits:
            elem = np.maximum(p, 0) - p * y + np.log1p(np.exp(-np.abs(p)))
        else:
            c = np.clip(p, EPSILON, 1.0 - EPSILON)
            elem = -(y * np.log(c + self.log_epsilon) + (1 - y) * np.log(1 - c + self.log_epsilon))
        return np.mean(elem, axis=self.axis), None

    def call_backward(self, y_true, y_pred, dvalues):
        y, p = self._target(y_true, y_pred)
        d = np.expand_dims(dvalues, self.axis) / p.shape[self.axis]
        if self.from_logits:
            pos = p >= 0
            u = np.exp(np.where(pos, -p, p))
            delem = pos - y + np.where(pos, -1.0, 1.0) * (u / (1.0 + u))
        else:
            c = np.clip(p, EPSILON, 1.0 - EPSILON)
            inside = (p >= EPSILON) & (p <= 1.0 - EPSILON)
            e = self.log_epsilon
            delem = np.where(inside, -(y / (c + e)) + (1 - y) / (1 - c + e), 0.0)
        return (d * delem).reshape(np.shape(y_pred))

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits, "label_smoothing": self.label_smoothing,
                "axis": self.axis}


class _Pointwise(Loss):
    """``mean(f(y_pred - y_true), axis=-1)`` for an element-wise ``f``."""

    def call(self, y_true, y_pred):
        y_true, p = same_rank(np.asarray(y_true), y_pred)
        return np.mean(self._f(p - y_true.astype(p.dtype)), axis=-1), None

    def call_backward(self, y_true, y_pred, dvalues):
        y_true, p = same_rank(np.asarray(y_true), y_pred)
        e = p - y_true.astype(p.dtype)
        return (dvalues[..., None] / e.shape[-1] * self._df(e)).reshape(np.shape(y_pred))


class MeanSquaredError(_Pointwise):
    """``mean((y_pred - y_true)^2, axis=-1)``."""

    def __init__(self, reduction="sum_over_batch_size", name="mean_squared_error", dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)

    _f = staticmethod(np.square)

    @staticmethod
    def _df(e):
        return 2.0 * e


class MeanAbsoluteError(_Pointwise):
    """``mean(|y_pred - y_true|, axis=-1)``; the gradient at 0 is 0 (TF's ``sign``)."""

    def __init__(self, reduction="sum_over_batch_size", name="mean_absolute_error", dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)

    _f = staticmethod(np.abs)
    _df = staticmethod(np.sign)


class Huber(_Pointwise):
    """``mean(0.5 e^2 if |e| <= delta else delta |e| - 0.5 delta^2, axis=-1)``."""

    def __init__(self, delta=1.0, reduction="sum_over_batch_size", name="huber_loss", dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self.delta = float(delta)

    def _f(self, e):
        a = np.abs(e)
        return np.where(a <= self.delta, 0.5 * np.square(e), self.delta * a - 0.5 * self.delta ** 2)

    def _df(self, e):
        return np.where(np.abs(e) <= self.delta, e, self.delta * np.sign(e))

    def get_config(self):
        return {**super().get_config(), "delta": self.delta}


# ---- lookup -------------------------------------------------------------------------------------
LOSSES = {cls.__name__: cls for cls in (CategoricalCrossentropy, SparseCategoricalCrossentropy, BinaryCrossentropy,
                                        MeanSquaredError, MeanAbsoluteError, Huber)}
ALIASES = {"categorical_crossentropy": "CategoricalCrossentropy",
           "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy",
           "binary_crossentropy": "BinaryCrossentropy", "mean_squared_error": "MeanSquaredError", "mse": "MeanSquaredError",
           "mean_absolute_error": "MeanAbsoluteError", "mae": "MeanAbsoluteError", "huber": "Huber",
           "huber_loss": "Huber"}


def get(identifier, **kwargs):
    """A loss from a Loss, a Keras class name or a Keras function name ('sparse_categorical_crossentropy')."""
    if isinstance(identifier, Loss):
        return identifier
    name = ALIASES.get(identifier, identifier)
    if name not in LOSSES:
        raise LossError(f"Unsupported loss: {identifier!r}. Supported: {sorted(LOSSES)} or {sorted(ALIASES)}")
    return LOSSES[name](**kwargs)


# ---- shape helpers ------------------------------------------------------------------------------
def same_rank(y_true, y_pred):
    """Keras's ``squeeze_or_expand_to_same_rank``: fix a rank difference of one size-1 axis."""
    if y_true.ndim == y_pred.ndim + 1 and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]
    elif y_pred.ndim == y_true.ndim + 1 and y_pred.shape[-1] == 1:
        y_true = y_true[..., None] if y_true.ndim == 1 else y_true
        if y_true.ndim != y_pred.ndim:
            y_pred = y_pred[..., 0]
    return y_true, y_pred


def _match_rank(w, ndim):
    if w.ndim == ndim + 1 and w.shape[-1] == 1:
        return w[..., 0]
    return w.reshape(w.shape + (1,) * (ndim - w.ndim)) if w.ndim < ndim else w


def _unbroadcast(d, shape):
    if d.shape == tuple(shape):
        return d
    return np.broadcast_to(d, shape) if d.ndim <= len(shape) else np.sum(d, axis=tuple(range(d.ndim - len(shape))))


def _and_masks(a, b):
    if a is None:
        return b
    return np.asarray(a, bool) if b is None else np.asarray(a, bool) & b


def _snake(name):
    return "".join("_" + c.lower() if c.isupper() and i else c.lower() for i, c in enumerate(name))
