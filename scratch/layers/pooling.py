"""Windowed pooling (channels_last), as Keras's MaxPooling1D/2D and AveragePooling1D/2D.

A pool is a reduction over shifted slices: for each of the k (1-D) or kh*kw (2-D) offsets of the
window, one strided slice of the input lines up with the output grid, and the output takes one
vectorized ``np.maximum`` (or ``+``) with it. There is no loop over pixels or batch items, and no
padded copy of the input: an offset whose slice would read padding is applied only to the
sub-rectangle of outputs whose cell is real (``_offset_plan``). 'same' padding follows TensorFlow
(see ``windows``) and, as TF's kernels do:
- max pooling never picks a padded cell (it behaves as -inf);
- average pooling divides each window by the number of real (unpadded) cells it covers.
A 1-D pool runs as the 2-D pool of a height-1 image with window (1, k), as TF's 1-D pools do.
Outputs are processed in cache-sized blocks of batch items or output rows (``BLOCK_BYTES``), so
the kh*kw passes over a block find its input rows still in cache; forward blocks run on the
engine's pool (``scratch.parallel``), as TensorFlow's pools use both cores.

The global pools are in ``global_pooling`` (re-exported here for callers that import them from
this module).
"""

import numpy as np

from . import windows
from .. import parallel
from .base import Layer, LayerError, as_tuple
from .global_pooling import (GlobalAveragePooling1D, GlobalAveragePooling2D,  # noqa: F401 (re-export)
                             GlobalMaxPooling1D, GlobalMaxPooling2D)


# Output bytes per block: a block's output and the input rows it reads stay in cache across the
# kh*kw passes (forward about 1.5x faster than whole-array passes on (8, 112, 112, 64)). Measured
# over 128 KB..2 MB: 512 KB is as fast as any, and small inputs stay one block.
BLOCK_BYTES = 2**19


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
        _, _, pads, out_hw = self._geometry(x.shape[1:3])
        y = np.empty((x.shape[0], *out_hw, x.shape[3]), dtype=self.dtype)
        # Offset (top, left) reads cell (i*sh, j*sw): real for every output, so it starts the
        # maximum, and every other offset only updates the outputs whose cell is real.
        start = (pads[0][0], pads[1][0])

        def block(b):
            bs, _, plan = b
            xb, yb = x[bs], y[bs]
            (_, (out_r, out_c), (in_r, in_c)), = [p for p in plan if p[0] == start]
            yb[:, out_r, out_c] = xb[:, in_r, in_c]
            for offset, (out_r, out_c), (in_r, in_c) in plan:
                if offset != start:
                    target = yb[:, out_r, out_c]
                    np.maximum(target, xb[:, in_r, in_c], out=target)

        parallel.run_blocks(block, self._blocks(x, out_hw), cost=self._cost(y))
        return y

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
        # Summed from offset (0, 0) on in row-major order; skipped padding adds exact zeros, so
        # every output is the zero-padded sum bit for bit. When offset (0, 0) is real for the whole
        # block (no padding before), its slice starts the sum instead of a pass over zeros. Each
        # block is divided by its windows' counts while still in cache.
        _, _, pads, out_hw = self._geometry(x.shape[1:3])
        total = np.empty((x.shape[0], *out_hw, x.shape[3]), dtype=self.dtype)
        self._window_counts = counts = self._counts(x.shape[1:3], pads, out_hw)

        def block(b):
            bs, rs, plan = b
            xb, tb = x[bs], total[bs]
            offset, (out_r, out_c), (in_r, in_c) = plan[0]
            whole = offset == (0, 0) and (out_r.start, out_r.stop) == (rs.start, rs.stop) and \
                (out_c.start, out_c.stop) == (0, out_hw[1])
            if whole:
                tb[:, rs] = xb[:, in_r, in_c]
            else:
                tb[:, rs] = 0
            for _, (out_r, out_c), (in_r, in_c) in plan[1:] if whole else plan:
                target = tb[:, out_r, out_c]
                np.add(target, xb[:, in_r, in_c], out=target)
            np.divide(tb[:, rs], counts[rs], out=tb[:, rs])

        parallel.run_blocks(block, self._blocks(x, out_hw), cost=self._cost(total))
        return total

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
