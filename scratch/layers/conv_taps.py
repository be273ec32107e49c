"""Stride-1 Conv2D forward without a patch matrix: one product per kernel tap on shifted rows.

Flatten the padded input (N, Hp, Wp, C) to pixels ``X`` (N*Hp*Wp, C). The output at grid pixel
``p = (n*Hp + i)*Wp + j`` is ``sum_{a, b} X[p + a*dh*Wp + b*dw] @ K[a, b]``: for tap (a, b) the
rows it reads are one CONTIGUOUS run of ``X``, a view, so the product needs no copy. Every grid
pixel is computed, and the ones with ``i >= oh`` or ``j >= ow`` (whose taps wrap into the next row
or image) are dropped when the block is copied into the output.

Compared with im2col (conv_forward.patches), the patch copy (kh*kw*C values per output pixel) is
replaced by the wasted border pixels: BLAS's gemm adds each tap's product into the accumulator
itself (beta = 1, ``parallel.blas_gemm``; before, a temporary and kh*kw - 1 passes of numpy adds
cost 35 against sgemm's 27 ms on (8, 56, 56, 64) -> 64, 1 thread; now 25 ms). Measured on
the 2-core box under load (interleaved, 3x3 'same', batch 8): per 1-thread block 1.2-1.3x faster
for C=64; whole layers on the pool 1.0-1.2x faster for C=64..512 (VGG's shapes), but 1.1-1.5x
slower for C=32 on 15x15 'valid' images (a third of the grid wasted); hence ``use_taps``.

The sum runs over taps in row-major (a, b) order, each tap's product over C by BLAS; im2col sums
the same kh*kw*C terms in one product, so the two round differently within the reduction.
"""

import numpy as np

from . import windows
from .. import parallel

# Fewest channels where the taps beat im2col (module docstring), and the largest share of grid
# pixels that may be wasted (Hp*Wp / (oh*ow)): 56x56 'same' wastes 7%, 15x15 'valid' 33%.
TAP_MIN_CHANNELS = 48
TAP_MAX_WASTE = 1.2
# One block's working set: its input rows (C) and accumulator (F per pixel; 2F with the temporary
# when there is no BLAS gemm);
# 1 MB measured best of 256 KB..2 MB over the shapes above (the core's L2 is 1.25 MB).
TAP_BLOCK_BYTES = 2**20

def use_taps(layer, xp_shape, out_hw):
    """True when the tap form is the faster one for this layer and padded input."""
    _, hp, wp, c = xp_shape
    return (layer.strides == (1, 1) and layer.groups == 1 and layer.kernel_size != (1, 1)
            and c >= TAP_MIN_CHANNELS
            and hp * wp <= TAP_MAX_WASTE * out_hw[0] * out_hw[1])


def tap_blocks(xp, kernel, dilation, z, bias=None):
    """(blocks, work): ``work(block)`` writes the block's output pixels (plus ``bias`` when given)
    into ``z[block]``; ``blocks`` are ``windows.blocks`` (batch slice, output-row slice) pairs.

    Each tap's product is added straight into the block's accumulator by BLAS's gemm (beta = 1,
    ``parallel.blas_gemm``); without it (another BLAS) through a temporary, which rounds the
    same: each tap's product is rounded, then added (tests compare the two bit for bit)."""
    n, hp, wp, c = xp.shape
    kh, kw, _, f = kernel.shape
    dh, dw = dilation
    oh, ow = z.shape[1:3]
    if not xp.flags.c_contiguous or kernel.dtype != xp.dtype or z.dtype != xp.dtype:
        raise ValueError("tap_blocks needs a C-contiguous input and one dtype for input, kernel and output")
    pixels = xp.reshape(-1, c)
    offsets = [a * dh * wp + b * dw for a in range(kh) for b in range(kw)]
    taps = np.ascontiguousarray(kernel.reshape(kh * kw, c, f))
    gemm = parallel.blas_gemm(xp.dtype)
    item = xp.dtype.itemsize
    row_bytes = wp * (c + (1 if gemm else 2) * f) * item

    def work(block):
        bs, rs = block
        nb, nr = len(range(*bs.indices(n))), rs.stop - rs.start
        first = (bs.start * hp + rs.start) * wp
        # Grid pixels from the block's first output pixel to its last (whole items span hp rows).
        span = ((nb - 1) * hp + nr - 1) * wp + ow
        if first + offsets[-1] + span > pixels.shape[0]:   # the raw gemm below must stay inside xp
            raise ValueError(f"tap block {block} reads past the input {xp.shape}")
        grid_rows = nb * hp if nb > 1 else nr
        acc = windows.thread_buffer("acc", grid_rows * wp * f, xp.dtype).reshape(grid_rows * wp, f)
        head = acc[:span]
        if gemm is not None:
            src, dst, kern = pixels.ctypes.data + first * c * item, acc.ctypes.data, taps.ctypes.data
            for t, off in enumerate(offsets):
                gemm(span, f, c, src + off * c * item, c, kern + t * c * f * item, f, dst, f, 0.0 if t == 0 else 1.0)
        else:
            tmp = windows.thread_buffer("tmp", span * f, xp.dtype).reshape(span, f)
            for t, off in enumerate(offsets):
                rows = pixels[first + off:first + off + span]
                if t == 0:
                    np.matmul(rows, taps[t], out=head)
                else:
                    np.matmul(rows, taps[t], out=tmp)
                    head += tmp
        grid = acc.reshape(nb, grid_rows // nb, wp, f)[:, :nr, :ow]
        if bias is None:
            z[bs, rs] = grid
        else:   # the copy out of the grid and the bias in one pass
            np.add(grid, bias, out=z[bs, rs])

    return list(windows.blocks(n, oh, row_bytes, TAP_BLOCK_BYTES)), work
