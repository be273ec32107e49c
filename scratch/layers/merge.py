"""Merge layers: element-wise Add, Subtract, Multiply, Average, Maximum, Minimum; Concatenate.

All take a list of arrays and return one array; ``backward(dout)`` returns the list of input
gradients. Element-wise merges broadcast as Keras does: inputs of lower rank get size-1 axes
inserted right after the batch axis (their non-batch dims are right-aligned), then NumPy
broadcasting applies; gradients are summed back to each input's own shape.

Masks (a mask has the input's shape without its last axis):
- The mask handed on is the OR of the input masks, or None if any input has none
  (Keras's ``Merge.compute_mask``); Concatenate has its own rule, see ``Concatenate.compute_mask``.
- Add, Subtract and Average ignore masks. Multiply, Maximum and Minimum read them, as Keras 3 does:
  Multiply treats masked items as 1 (and zeroes the output where every mask is False, when all inputs
  have masks); Maximum/Minimum fold the inputs left to right, and a masked item is replaced by the
  running result (or the running result's masked items by the new input) before comparing.
"""

import numpy as np

from .base import Layer, LayerError


class _Merge(Layer):
    supports_masking = True
    _min_inputs, _max_inputs = 1, float("inf")

    def build(self, input_shape, rng=None):
        self.compute_output_shape(input_shape)
        self.built = True

    def compute_output_shape(self, input_shape):
        shapes = _shape_list(input_shape)
        batch = {s[0] for s in shapes} - {None}
        if len(batch) > 1:
            raise LayerError(f"Cannot merge tensors with different batch sizes. Received tensors with shapes {shapes}")
        out = shapes[0][1:]
        for s in shapes[1:]:
            out = _broadcast_shape(out, s[1:])
        return (batch.pop() if batch else None, *out)

    def compute_mask(self, inputs, mask=None):
        if mask is None:
            return None
        _check_mask_list(inputs, mask)
        if any(m is None for m in mask):
            return None
        return np.logical_or.reduce([np.asarray(m, dtype=bool) for m in mask])

    def forward(self, inputs, training=False):
        xs = self._prepare(inputs)
        return self._merge(xs).astype(self.dtype)

    def backward(self, dout):
        grads = self._merge_backward(np.broadcast_to(self.cast(dout), self._out_shape))
        return [_unbroadcast(g, s).astype(self.dtype) for g, s in zip(grads, self._in_shapes)]

    def _prepare(self, inputs, masks=None, with_masks=False):
        """Cast, rank-align and broadcast the inputs (and, if asked, the masks) to the output shape."""
        if not isinstance(inputs, (list, tuple)):
            raise LayerError(f"A merge layer should be called on a list of inputs. Received: inputs of type "
                             f"{type(inputs).__name__}")
        if len(inputs) < self._min_inputs or len(inputs) > self._max_inputs:
            raise LayerError(self._count_error(len(inputs)))
        xs = [self.cast(x) for x in inputs]
        self._in_shapes = [x.shape for x in xs]
        self._out_shape = self.compute_output_shape([x.shape for x in xs])
        rank = len(self._out_shape)
        if masks is None or any(x.ndim != rank for x in xs):
            masks = [None] * len(xs)  # (Keras's rank-aligning reshape drops the masks attached to the inputs)
        xs = [np.broadcast_to(x.reshape(x.shape[:1] + (1,) * (rank - x.ndim) + x.shape[1:]), self._out_shape)
              for x in xs]
        if not with_masks:
            return xs
        if len(masks) != len(xs):
            raise LayerError(f"Expected one mask per input ({len(xs)}). Received {len(masks)} masks")
        return xs, [None if m is None else np.broadcast_to(
            np.broadcast_to(np.asarray(m, dtype=bool)[..., None], shape), self._out_shape)
            for m, shape in zip(masks, self._in_shapes)]

    def _count_error(self, n):
        return f"A merge layer should be called on a list of at least 1 input. Received {n} inputs."


class Add(_Merge):
    """``y = x0 + x1 + ...`` (summed left to right). No weights."""

    def _merge(self, xs):
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out

    def _merge_backward(self, dout):
        return [dout] * len(self._in_shapes)


class Subtract(_Merge):
    """``y = x0 - x1``, exactly two inputs. No weights."""

    _min_inputs, _max_inputs = 2, 2

    def _count_error(self, n):
        return f"A `Subtract` layer should be called on exactly 2 inputs. Received {n} inputs."

    def _merge(self, xs):
        return xs[0] - xs[1]

    def _merge_backward(self, dout):
        return [dout, -dout]


class Average(_Merge):
    """``y = (x0 + x1 + ...) / n`` (summed left to right, then divided). No weights."""

    def _merge(self, xs):
        return Add._merge(self, xs) / len(xs)

    def _merge_backward(self, dout):
        return [dout / len(self._in_shapes)] * len(self._in_shapes)


class Multiply(_Merge):
    """``y = x0 * x1 * ...`` (left to right); masked items count as 1. No weights.

    When every input has a mask, the output is 0 where all masks are False.
    """

    consumes_mask = True

    def forward(self, inputs, mask=None, training=False):
        xs, masks = self._prepare(inputs, mask, with_masks=True)
        xs = [x if m is None else np.where(m, x, 1).astype(self.dtype) for x, m in zip(xs, masks)]
        out_mask = None if any(m is None for m in masks) else np.logical_or.reduce(masks)
        out = xs[0]
        for x in xs[1:]:
            out = out * x
        if out_mask is not None:
            out = np.where(out_mask, out, 0)
        self._cache = (xs, masks, out_mask)
        return out.astype(self.dtype)

    def _merge_backward(self, dout):
        xs, masks, out_mask = self._cache
        if out_mask is not None:
            dout = np.where(out_mask, dout, 0)
        grads = []
        for i, m in enumerate(masks):
            g = dout
            for j, x in enumerate(xs):
                if j != i:
                    g = g * x
            grads.append(g if m is None else np.where(m, g, 0))
        return grads


class _FoldMerge(_Merge):
    """Maximum/Minimum: Keras's left fold with mask substitution (``_apply_merge_op_and_or_mask``)."""

    consumes_mask = True

    def forward(self, inputs, mask=None, training=False):
        xs, masks = self._prepare(inputs, mask, with_masks=True)
        out, out_mask = xs[0], masks[0]
        steps = []
        for x, m in zip(xs[1:], masks[1:]):
            if m is not None:
                x = np.where(m, x, out)
            if out_mask is not None:
                out = np.where(out_mask, out, x)
            keep_out = self._first_wins(out, x)  # ties go to the running result, as TF's gradient does
            steps.append((m, out_mask, keep_out))
            out_mask = None if m is None or out_mask is None else out_mask | m
            out = np.where(keep_out, out, x)
        self._cache = steps
        return out.astype(self.dtype)

    def _merge_backward(self, dout):
        grads = [None] * len(self._in_shapes)
        g_out = dout
        for i in range(len(self._cache), 0, -1):
            m, out_mask, keep_out = self._cache[i - 1]
            g_prev, g_x = np.where(keep_out, g_out, 0), np.where(keep_out, 0, g_out)
            if out_mask is not None:
                g_prev, g_x = np.where(out_mask, g_prev, 0), g_x + np.where(out_mask, 0, g_prev)
            if m is not None:
                g_prev, g_x = g_prev + np.where(m, 0, g_x), np.where(m, g_x, 0)
            grads[i] = g_x
            g_out = g_prev
        grads[0] = g_out
        return grads


class Maximum(_FoldMerge):
    """``y = max(x0, x1, ...)`` element-wise (see the module docstring for masks). No weights."""

    @staticmethod
    def _first_wins(a, b):
        return a >= b


class Minimum(_FoldMerge):
    """``y = min(x0, x1, ...)`` element-wise (see the module docstring for masks). No weights."""

    @staticmethod
    def _first_wins(a, b):
        return a <= b


class Concatenate(Layer):
    """Join the inputs along ``axis``; every other axis must match.

    Inputs ``(..., n_i, ...)`` -> output ``(..., sum(n_i), ...)``. No weights.
    """

    supports_masking = True

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise LayerError(f"axis must be an int. Received: axis={axis!r}")
        self.axis = int(axis)

    def build(self, input_shape, rng=None):
        self.compute_output_shape(input_shape)
        self.built = True

    def compute_output_shape(self, input_shape):
        shapes = _shape_list(input_shape, "A `Concatenate` layer should be called on a list of inputs.")
        rank = len(shapes[0])
        if not -rank <= self.axis < rank:
            raise LayerError(f"axis {self.axis} is out of bounds for inputs of rank {rank}")
        axis = self.axis % rank
        others = [s[:axis] + s[axis + 1:] for s in shapes]
        if any(len(s) != rank for s in shapes) or any(
                len({d for d in dims if d is not None}) > 1 for dims in zip(*others)):
            raise LayerError("A `Concatenate` layer requires inputs with matching shapes except for the "
                             f"concatenation axis. Received: input_shape={shapes}")
        out = list(shapes[0])
        sizes = [s[axis] for s in shapes]
        out[axis] = None if None in sizes else sum(sizes)
        return tuple(out)

    def forward(self, inputs, training=False):
        if not isinstance(inputs, (list, tuple)) or not inputs:
            raise LayerError("A `Concatenate` layer should be called on a list of at least 1 input.")
        xs = [self.cast(x) for x in inputs]
        self.compute_output_shape([x.shape for x in xs])
        self._sizes = [x.shape[self.axis] for x in xs]
        return np.concatenate(xs, axis=self.axis)

    def backward(self, dout):
        cuts = np.cumsum(self._sizes)[:-1]
        return [g.astype(self.dtype) for g in np.split(self.cast(dout), cuts, axis=self.axis)]

    def compute_mask(self, inputs, mask=None):
        """Keras's rule: missing masks count as all-True; each mask is widened to its input's shape,
        the widened masks are concatenated along ``axis``, and the result is any() over the last axis."""
        if mask is None:
            return None
        _check_mask_list(inputs, mask)
        if all(m is None for m in mask):
            return None
        wide = []
        for x, m in zip(inputs, mask):
            shape = np.shape(x)
            if m is None:
                wide.append(np.ones(shape, dtype=bool))
            elif np.ndim(m) < len(shape):
                wide.append(np.broadcast_to(np.asarray(m, dtype=bool)[..., None], shape))
            else:
                wide.append(np.asarray(m, dtype=bool))
        return np.any(np.concatenate(wide, axis=self.axis), axis=-1)


def _shape_list(input_shape, message="A merge layer should be called on a list of inputs."):
    if not isinstance(input_shape, (list, tuple)) or not input_shape or not all(
            isinstance(s, (list, tuple)) for s in input_shape):
        raise LayerError(f"{message} Received: input_shape={input_shape}")
    return [tuple(s) for s in input_shape]


def _broadcast_shape(a, b):
    """Keras's element-wise output shape of two non-batch shapes, right-aligned."""
    if len(a) < len(b):
        a, b = b, a
    out = list(a[:len(a) - len(b)])
    for i, j in zip(a[len(a) - len(b):], b):
        if i is None or j is None:
            out.append(None)
        elif i == 1 or j == 1:
            out.append(j if i == 1 else i)
        elif i != j:
            raise LayerError(f"Inputs have incompatible shapes. Received shapes {tuple(a)} and {tuple(b)}")
        else:
            out.append(i)
    return tuple(out)


def _unbroadcast(grad, shape):
    """Sum a gradient of the broadcast output shape back to an input's own shape."""
    rank = len(shape)
    aligned = shape[:1] + (1,) * (grad.ndim - rank) + tuple(shape[1:])
    axes = tuple(i for i, (g, s) in enumerate(zip(grad.shape, aligned)) if s == 1 and g != 1)
    return np.sum(grad, axis=axes, keepdims=True).reshape(shape)


def _check_mask_list(inputs, mask):
    if not isinstance(mask, (list, tuple)):
        raise LayerError(f"`mask` should be a list. Received: mask={mask}")
    if not isinstance(inputs, (list, tuple)):
        raise LayerError(f"`inputs` should be a list. Received: inputs of type {type(inputs).__name__}")
    if len(mask) != len(inputs):
        raise LayerError("The lists `inputs` and `mask` should have the same length. "
                         f"Received: {len(inputs)} inputs and {len(mask)} masks")
