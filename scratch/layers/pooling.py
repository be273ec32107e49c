"""Windowed pooling (channels_last), as Keras's MaxPooling1D/2D and AveragePooling1D/2D.

A pool is a reduction over shifted slices, taken as two 1-D passes (the window is a rectangle):
first along the rows, for each of the kh row offsets one strided slice of whole input rows (W*C
contiguous values, numpy's fast case) into an (nb, out rows, W, C) buffer, then along its columns,
for each of the kw column offsets one vectorized ``np.maximum`` (or ``+``) into the output. That
is kh + kw passes instead of kh*kw over runs of only C values (profile of the digits CNNs:
(256, 30, 30, 32) 2x2 'same' 11.7 -> 10.1 ms, (256, 28, 28, 16) 7.0 -> 4.2 ms, 1 thread; a
maximum is the same bit for bit, an average sums each window column first, then the columns).
There is no loop over pixels or batch items, and no padded copy of the input: an offset whose
slice would read padding is applied only to the outputs whose cell is real (``_axis_offsets``).
'same' padding follows TensorFlow (see ``windows``) and, as TF's kernels do:
- max pooling never picks a padded cell (it behaves as -inf);
- average pooling divides each window by the number of real (unpadded) cells it covers.
A 1-D pool runs as the 2-D pool of a height-1 image with window (1, k), as TF's 1-D pools do.
Outputs are processed in cache-sized blocks of batch items or output rows (``BLOCK_BYTES``), so
the passes over a block find its input rows still in cache; forward blocks run on the engine's
pool (``scratch.parallel``), as TensorFlow's pools use both cores. Backward passes walk the
kh*kw offsets of ``_offset_plan``.

The global pools are in ``global_pooling`` (re-exported here for callers that import them from
this module).
"""

import numpy as np

from . import windows
from .. import parallel
from .base import Layer, LayerError, as_tuple
from .global_pooling import (GlobalAveragePooling1D, GlobalAveragePooling2D,  # noqa: F401 (re-export)
                             GlobalMaxPooling1D, GlobalMaxPooling2D)


# Output bytes per block: a block's output, its row-pass buffer and the input rows it reads stay
# in cache across the passes (forward about 1.5x faster than whole-array passes on
# (8, 112, 112, 64)). The separable passes hold sw times the output in the buffer: 256 KB was as
# fast as any over 128 KB..1 MB (1 thread, CPU time, load 5), and small inputs stay one block.
BLOCK_BYTES = 2**18


def _axis_offsets(n, k, s, before, out_range):
    """Per window offset a along one axis: (output slice, input slice) of the outputs i in
    ``out_range`` whose cell ``i*s + a - before`` is a real input cell; None when there are none."""
    plan = []
    for a in range(k):
        shift = a - before
        first = max(out_range.start, -(shift // s))            # smallest i with i*s + shift >= 0
        last = min(out_range.stop - 1, (n - 1 - shift) // s)   # largest i with i*s + shift <= n - 1
        if last < first:
            plan.append(None)
            continue
        start = first * s + shift
        plan.append((slice(first, last + 1), slice(start, start + (last - first) * s + 1, s)))
    return plan


def _offset_plan(hw, pool, strides, pads, out_hw, out_rows):
    """Row-major list over window offsets of ((a, b), (out rows, out cols), (in rows, in cols)) for
    the output rows ``out_rows``, skipping offsets that read only padding there."""
    rows = _axis_offsets(hw[0], pool[0], strides[0], pads[0][0], out_rows)
    cols = _axis_offsets(hw[1], pool[1], strides[1], pads[1][0], range(out_hw[1]))
    return [((a, b), (r[0], c[0]), (r[1], c[1]))
            for a, r in enumerate(rows) for b, c in enumerate(cols) if r is not None and c is not None]


def _separable_pass(op, src, dst, offsets, axis, first, shift=0):
    """``dst = op`` over the window offsets along ``axis`` (1 = rows, 2 = columns) of ``src``:
    ``offsets`` from ``_axis_offsets`` (output slices shifted down by ``shift``), ``first`` the
    offset that starts the result (one real for every output; None: start from zeros)."""
    def take(arr, sl):
        return arr[:, sl] if axis == 1 else arr[:, :, sl]

    rest = [a for a, plan in enumerate(offsets) if plan is not None and a != first]
    if first is None:
        dst[...] = 0
    elif rest and (offsets[rest[0]][0].start - shift, offsets[rest[0]][0].stop - shift) == (0, dst.shape[axis]):
        # The next offset is real for every output too: op(first, next) is one pass, not a copy
        # and then a pass (2 of a 2x2 pool's 4 passes); the same operations in the same order.
        op(take(src, offsets[first][1]), take(src, offsets[rest[0]][1]), out=dst)
        rest = rest[1:]
    else:
        dst[...] = take(src, offsets[first][1])
    for a in rest:
        out_sl, in_sl = offsets[a]
        target = take(dst, slice(out_sl.start - shift, out_sl.stop - shift))
        op(target, take(src, in_sl), out=target)


def _start(offsets, out_range, is_max):
    """Which offset starts a 1-D pass: for a maximum the first one real for every output in
    ``out_range`` (the one reading cell i*s; it exists), for a sum offset 0 when it is real for
    all of them, else None (zeros, so that the sum still runs in offset order)."""
    def whole(plan):
        return plan is not None and (plan[0].start, plan[0].stop) == (out_range.start, out_range.stop)

    if is_max:
        return next(a for a, plan in enumerate(offsets) if whole(plan))
    return 0 if whole(offsets[0]) else None


def _separable_block(op, xb, yb, rows, cols, row0, is_max):
    """One block of a pool as two 1-D passes: along the rows into an (nb, nr, W, C) buffer, whose
    rows are whole contiguous W*C runs (fast passes), then along its columns into ``yb``.
    ``rows``/``cols`` are ``_axis_offsets`` plans, ``row0`` the block's first output row."""
    nb, nr, ow, c = yb.shape
    w = xb.shape[2]
    if len(rows) == 1 and rows[0][1].step in (None, 1) and rows[0][0].stop - rows[0][0].start == nr:
        mid = xb[:, rows[0][1]]                    # a height-1 window reading one row per output
    else:
        mid = windows.thread_buffer("pool_rows", nb * nr * w * c, yb.dtype).reshape(nb, nr, w, c)
        _separable_pass(op, xb, mid, rows, 1, _start(rows, range(row0, row0 + nr), is_max), shift=row0)
    _separable_pass(op, mid, yb, cols, 2, _start(cols, range(ow), is_max))


class _Pooling(Layer):
    rank = 2

    def __init__(self, pool_size=None, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        windows.check_channels_last(type(self).__name__, data_format)
        if pool_size is None:
            pool_size = 2 if self.rank == 1 else (2, 2)
        self.pool_size = as_tuple(pool_size, self.rank, "pool_size")
        self.strides = self.pool_size if strides is None else as_tuple(strides, self.rank, "strides")
        self.padding = windows.normalize_padding(padding)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != self.rank + 2:
            dims = "(N, steps, C)" if self.rank == 1 else "(N, H, W, C)"
            raise LayerError(f"{type(self).__name__} expects input of rank {self.rank + 2} {dims}. "
                             f"Received: input_shape={tuple(input_shape)}")
        spatial = windows.output_hw(input_shape[1:-1], self.pool_size, self.strides, (1,) * self.rank,
                                    self.padding, type(self).__name__)
        return (input_shape[0], *spatial, input_shape[-1])

    def _geometry(self, hw):
        """2-D (pool, strides, pads, out_hw) of the pool on an (H, W) image."""
        pool, strides = self.pool_size, self.strides
        if self.rank == 1:
            pool, strides = (1,) + pool, (1,) + strides
        pads = windows.spatial_padding(hw, pool, strides, (1, 1), self.padding)
        out_hw = tuple(windows.output_length(n, k, s, 1, self.padding) for n, k, s in zip(hw, pool, strides))
        return pool, strides, pads, out_hw

    def _blocks(self, image, out_hw):
        """(batch slice, output-row slice, offset plan) per cache-sized block of the output."""
        pool, strides, pads, _ = self._geometry(image.shape[1:3])
        row_bytes = out_hw[1] * image.shape[3] * self.dtype.itemsize
        for bs, rs in windows.blocks(image.shape[0], out_hw[0], row_bytes, BLOCK_BYTES):
            yield bs, rs, _offset_plan(image.shape[1:3], pool, strides, pads, out_hw, range(rs.start, rs.stop))

    def _separable(self, x, op, counts=None):
        """The pool as two 1-D passes per block (``_separable_block``); ``op`` is np.maximum or
        np.add, ``counts`` the (oh, ow, 1) divisors of an average."""
        pool, strides, pads, out_hw = self._geometry(x.shape[1:3])
        y = np.empty((x.shape[0], *out_hw, x.shape[3]), dtype=self.dtype)
        row_bytes = out_hw[1] * x.shape[3] * self.dtype.itemsize
        todo = windows.blocks(x.shape[0], out_hw[0], row_bytes, BLOCK_BYTES)
        cols = _axis_offsets(x.shape[2], pool[1], strides[1], pads[1][0], range(out_hw[1]))

        def block(b):
            bs, rs = b
            rows = _axis_offsets(x.shape[1], pool[0], strides[0], pads[0][0], range(rs.start, rs.stop))
            _separable_block(op, x[bs], y[bs, rs], rows, cols, rs.start, op is np.maximum)
            if counts is not None:
                np.divide(y[bs, rs], counts[rs], out=y[bs, rs])

        parallel.run_blocks(block, todo, cost=self._cost(y))
        return y

    def _cost(self, y):
        """A pool's work in the multiply-adds of ``parallel.run_blocks``: one window cell costs
        about 1 ns in these strided passes, as much as ~50 multiply-adds in a product."""
        return 50 * y.size * self.pool_size[0] * (self.pool_size[1] if self.rank == 2 else 1)

    def _disjoint(self):
        """True when windows never share an input cell (strides >= pool_size on every axis)."""
        return all(s >= k for s, k in zip(self.strides, self.pool_size))

    def _as_image(self, x):
        return x[:, None] if self.rank == 1 else x      # a 1-D input is a height-1 image

    def _as_input(self, image):
        return image[:, 0] if self.rank == 1 else image

    def forward(self, x, training=False):
        x = self.cast(x)
        self.compute_output_shape(x.shape)
        image = self._as_image(x)
        y = self._reduce(image)
        self._cache = (image, y)
        return self._as_input(y)


class _MaxPooling(_Pooling):
    def _reduce(self, x):
        return self._separable(x, np.maximum)

    def backward(self, dout):
        """Each window's gradient goes to its first maximal real cell in row-major window order
        (TensorFlow's MaxPoolGrad convention), so ties never duplicate the gradient."""
        x, y = self._cache
        dout = self.cast(dout).reshape(y.shape)
        dx = np.zeros(x.shape, dtype=self.dtype)
        disjoint = self._disjoint()
        for bs, rs, plan in self._blocks(x, y.shape[1:3]):
            xb, yb, db, dxb = x[bs], y[bs], dout[bs], dx[bs]
            shape = (yb.shape[0], rs.stop - rs.start, *yb.shape[2:])
            routed = np.zeros(shape, dtype=bool)      # windows whose gradient has found its cell
            hits, parts = np.empty(shape, dtype=bool), np.empty(shape, dtype=self.dtype)
            for i, (_, (out_r, out_c), (in_r, in_c)) in enumerate(plan):
                local = slice(out_r.start - rs.start, out_r.stop - rs.start)
                hit, done, part = hits[:, local, out_c], routed[:, local, out_c], parts[:, local, out_c]
                np.equal(xb[:, in_r, in_c], yb[:, out_r, out_c], out=hit)
                np.greater(hit, done, out=hit)        # bools: a hit not routed before
                if i < len(plan) - 1:
                    np.logical_or(done, hit, out=done)
                # A product with the 0/1 hit beats ufunc where= (masked loops are several times
                # slower); disjoint windows write each input cell once, so need no sum.
                target = dxb[:, in_r, in_c]
                if disjoint:
                    np.multiply(db[:, out_r, out_c], hit, out=target)
                else:
                    np.multiply(db[:, out_r, out_c], hit, out=part)
                    np.add(target, part, out=target)
        return self._as_input(dx)


class _AveragePooling(_Pooling):
    def __init__(self, pool_size, strides=None, padding="valid", data_format=None, **kwargs):
        # Keras's average pools have no default pool_size (its max pools default to 2).
        super().__init__(pool_size, strides, padding, data_format, **kwargs)

    def _reduce(self, x):
        _, _, pads, out_hw = self._geometry(x.shape[1:3])
        self._window_counts = counts = self._counts(x.shape[1:3], pads, out_hw)
        return self._separable(x, np.add, counts)

    def _counts(self, hw, pads, out_hw):
        """(oh, ow, 1) number of real cells per window: the product of per-axis overlaps."""
        pool, strides, _, _ = self._geometry(hw)
        per_axis = []
        for n, (before, _), k, s, o in zip(hw, pads, pool, strides, out_hw):
            start = np.arange(o) * s - before
            per_axis.append(np.minimum(start + k, n) - np.maximum(start, 0))
        return (per_axis[0][:, None] * per_axis[1][None, :])[:, :, None].astype(self.dtype)

    def backward(self, dout):
        x, y = self._cache
        share = self.cast(dout).reshape(y.shape) / self._window_counts
        dx = np.zeros(x.shape, dtype=self.dtype)
        disjoint = self._disjoint()
        for bs, _, plan in self._blocks(x, y.shape[1:3]):
            sb, dxb = share[bs], dx[bs]
            for _, (out_r, out_c), (in_r, in_c) in plan:
                target = dxb[:, in_r, in_c]
                if disjoint:                          # each input cell is in one window only
                    target[...] = sb[:, out_r, out_c]
                else:
                    np.add(target, sb[:, out_r, out_c], out=target)
        return self._as_input(dx)


class MaxPooling2D(_MaxPooling):
    """``y[n, i, j, c] = max_{a, b} x[n, i*sh + a - top, j*sw + b - left, c]`` over real cells.

    Input (N, H, W, C) -> output (N, oh, ow, C); strides default to pool_size.
    Output size: 'valid' ``floor((n - p) / s) + 1``; 'same' ``ceil(n / s)``. No weights.
    Gradient: each window's gradient goes to its first maximal cell in row-major window order.
    """

    rank = 2


class AveragePooling2D(_AveragePooling):
    """``y[n, i, j, c] = sum_{a, b} x[n, i*sh + a - top, j*sw + b - left, c] / count[i, j]``.

    ``count[i, j]`` is the number of real input cells in window (i, j): ph*pw for 'valid', fewer
    at the borders for 'same' (padded zeros are not counted).
    Input (N, H, W, C) -> output (N, oh, ow, C); strides default to pool_size.
    Output size: 'valid' ``floor((n - p) / s) + 1``; 'same' ``ceil(n / s)``. No weights.
    """

    rank = 2


class MaxPooling1D(_MaxPooling):
    """``y[n, i, c] = max_a x[n, i*s + a - before, c]`` over real cells.

    Input (N, steps, C) -> output (N, out, C); pool_size defaults to 2, strides to pool_size.
    Output size: 'valid' ``floor((n - p) / s) + 1``; 'same' ``ceil(n / s)``. No weights.
    Gradient: each window's gradient goes to its first maximal step.
    """

    rank = 1


class AveragePooling1D(_AveragePooling):
    """``y[n, i, c] = sum_a x[n, i*s + a - before, c] / count[i]``, count = real steps in window i.

    Input (N, steps, C) -> output (N, out, C); pool_size defaults to 2, strides to pool_size.
    Output size: 'valid' ``floor((n - p) / s) + 1``; 'same' ``ceil(n / s)``. No weights.
    """

    rank = 1
