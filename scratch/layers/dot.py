"""Dot: the batched dot product merge layer (Keras's ``Dot`` and its ``batch_dot``)."""

import numpy as np

from .base import Layer, LayerError
from .merge import _shape_list


class Dot(Layer):
    """Batched dot product of two inputs along ``axes`` (Keras's ``batch_dot``).

    ``y[b, i..., j...] = sum_k x1[b, i..., k, ...] * x2[b, j..., k, ...]`` with ``k`` on
    ``axes[0]`` of the first input and ``axes[1]`` of the second (an int means both). Output:
    the first input's other non-batch axes, then the second's, in order; ``(batch, 1)`` when
    both inputs are 2D. With ``normalize``, each input is first L2-normalized along its axis as
    ``keras.ops.normalize`` does it: ``x * min(rsqrt(sum(x**2)), 1 / 1e-7)``. No weights; the
    mask handed on is None.
    """

    supports_masking = True

    def __init__(self, axes, normalize=False, **kwargs):
        super().__init__(**kwargs)
        ok = lambda a: isinstance(a, (int, np.integer)) and not isinstance(a, bool)
        if not ok(axes):
            if not isinstance(axes, (list, tuple)):
                raise LayerError(f"Invalid type for argument `axes`: it should be a list or an int. "
                                 f"Received: axes={axes!r}")
            if len(axes) != 2:
                raise LayerError(f"Invalid format for argument `axes`: it should contain two elements. "
                                 f"Received: axes={axes!r}")
            if not (ok(axes[0]) and ok(axes[1])):
                raise LayerError(f"Invalid format for argument `axes`: list elements should be integers. "
                                 f"Received: axes={axes!r}")
        self.axes = int(axes) if ok(axes) else tuple(int(a) for a in axes)
        self.normalize = bool(normalize)

    def _axes_for(self, shapes):
        shapes = _shape_list(shapes, "A `Dot` layer should be called on a list of 2 inputs.")
        if len(shapes) != 2:
            raise LayerError(f"A `Dot` layer should be called on a list of 2 inputs. Received: input_shape={shapes}")
        pair = (self.axes, self.axes) if isinstance(self.axes, int) else self.axes
        axes = [a % len(s) if a < 0 else a for a, s in zip(pair, shapes)]
        for s in shapes:
            if len(s) < 2:
                raise LayerError(f"Cannot do batch_dot on inputs with rank < 2. Received inputs with shapes "
                                 f"{shapes[0]} and {shapes[1]}.")
        if 0 in axes or any(a >= len(s) for a, s in zip(axes, shapes)):
            raise LayerError(f"Dot axes must name a non-batch axis of each input. Received: axes={self.axes} "
                             f"for input shapes {shapes[0]} and {shapes[1]}")
        d1, d2 = shapes[0][axes[0]], shapes[1][axes[1]]
        if d1 is not None and d2 is not None and d1 != d2:
            raise LayerError(f"Incompatible input shapes: axis values {d1} (at axis {axes[0]}) != {d2} (at axis "
                             f"{axes[1]}). Full input shapes: {shapes[0]}, {shapes[1]}")
        return shapes, axes

    def build(self, input_shape, rng=None):
        self._axes_for(input_shape)
        self.built = True

    def compute_output_shape(self, input_shape):
        (s1, s2), (a1, a2) = self._axes_for(input_shape)
        out = [d for i, d in enumerate(s1) if i != a1] + [d for i, d in enumerate(s2) if i not in (0, a2)]
        return tuple(out + [1] if len(out) == 1 else out)

    def compute_mask(self, inputs, mask=None):
        return None

    def forward(self, inputs, training=False):
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise LayerError("A `Dot` layer should be called on exactly 2 inputs.")
        xs = [self.cast(x) for x in inputs]
        _, axes = self._axes_for([x.shape for x in xs])
        self._raw = xs
        if self.normalize:
            xs = [_l2_normalize(x, a)[0] for x, a in zip(xs, axes)]
        s1, s2, out = _dot_specs(xs[0].ndim, xs[1].ndim, axes)
        self._cache = (xs, axes, (s1, s2, out))
        y = np.einsum(f"{s1},{s2}->{out}", *xs)
        return y.reshape(self.compute_output_shape([x.shape for x in xs])).astype(self.dtype, copy=False)

    def backward(self, dout):
        (x1, x2), axes, (s1, s2, out) = self._cache
        d = self.cast(dout).reshape([x1.shape[i] for i, c in enumerate(s1) if c in out]
                                    + [x2.shape[i] for i, c in enumerate(s2) if c in out and i != 0])
        grads = [np.einsum(f"{out},{s2}->{s1}", d, x2), np.einsum(f"{out},{s1}->{s2}", d, x1)]
        if self.normalize:
            grads = [_l2_normalize_backward(x, a, g) for x, a, g in zip(self._raw, axes, grads)]
        return [g.astype(self.dtype, copy=False) for g in grads]


def _dot_specs(rank1, rank2, axes):
    """Einsum specs of a batched dot: batch letter shared, the contracted letter shared."""
    letters = iter("bcdefghijlmnopqrstuvwxyz")
    s1 = ["a"] + [next(letters) for _ in range(rank1 - 1)]
    s2 = ["a"] + [next(letters) for _ in range(rank2 - 1)]
    s2[axes[1]] = "k"
    s1[axes[0]] = "k"
    out = [c for c in s1 if c != "k"] + [c for c in s2[1:] if c != "k"]
    return "".join(s1), "".join(s2), "".join(out)


_NORMALIZE_EPSILON = 1e-7   # keras.backend.epsilon(), the floor of the norm in ops.normalize


def _l2_normalize(x, axis):
    square_sum = np.sum(np.square(x), axis=axis, keepdims=True)
    with np.errstate(divide="ignore"):
        inv = np.minimum(1.0 / np.sqrt(square_sum), x.dtype.type(1.0 / _NORMALIZE_EPSILON))
    return x * inv, inv


def _l2_normalize_backward(x, axis, g):
    """d(x * inv)/dx with inv = rsqrt(sum x^2) where unclipped (else a constant)."""
    _, inv = _l2_normalize(x, axis)
    unclipped = inv < 1.0 / _NORMALIZE_EPSILON
    proj = np.sum(g * x, axis=axis, keepdims=True)
    return g * inv - np.where(unclipped, x * proj * inv ** 3, 0)
