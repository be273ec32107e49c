"""Stride-1 3x3 Conv2D forward as Winograd's F(2x2, 3x3): 16 products per 2x2 output tile instead of 36.

For a 4x4 input tile ``d`` (one per 2x2 output tile, tiles overlapping by 2) and the 3x3 kernel
``g`` of one (input channel, filter) pair, the 2x2 output tile is ``A^T [(G g G^T) * (B^T d B)] A``
(``*`` element-wise, summed over input channels, which makes 16 products (tiles, C) @ (C, F)):

    B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
    G   = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]
    A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]

Each transform is a few additions of whole slices, rows first (runs of W*C contiguous values),
then columns. The sums are taken in another order than a direct convolution, through the
transformed values (sums of up to 4 inputs, kernel rows halved), so the rounding differs: about
twice the direct form's error in float32 on random data (parity per-layer numbers in the tests).
Measured (1 thread, CPU time, under load 8; taps/im2col -> Winograd): (8, 24, 24, 256)->256
62 -> 42 ms, (8, 12, 12, 512)->512 77 -> 31 ms; with 64 or 128 channels the transforms cost
more than they save (27 -> 53 ms at 64), hence ``use_winograd``.
"""

import numpy as np

from . import windows

# Fewest input channels and filters where the saved products outweigh the transforms (above).
WINOGRAD_MIN_CHANNELS = 256
WINOGRAD_MIN_TILES = 256
# One block's transformed input and products (16 values per tile and channel / filter): large,
# since the 16 products need a few hundred rows (tiles) to run at BLAS's rate; 2 MB blocks of
# 60 tiles were slower than the direct form.
WINOGRAD_BLOCK_BYTES = 8 * 2**20


def use_winograd(layer, xp_shape, out_hw):
    """True for the 3x3, stride-1, undilated, ungrouped Conv2D with enough channels, filters and
    tiles (the kernel is transformed on every call: 16*C*F values, as much as ~100 tiles save)."""
    tiles = xp_shape[0] * -(-out_hw[0] // 2) * -(-out_hw[1] // 2)
    return (layer.kernel_size == (3, 3) and layer.strides == (1, 1) and layer.dilation_rate == (1, 1)
            and layer.groups == 1 and xp_shape[-1] >= WINOGRAD_MIN_CHANNELS
            and layer.filters >= WINOGRAD_MIN_CHANNELS and tiles >= WINOGRAD_MIN_TILES)


# G (x) G: row (a, b) holds G[a, i] * G[b, j] at column (i, j); products of 0, 1/2 and 1, exact.
_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
_GG = np.kron(_G, _G)


def transform_kernel(kernel):
    """(3, 3, C, F) -> (16, C, F): ``G g G^T`` per (channel, filter), rows (a, b) row-major, as one
    product (16, 9) @ (9, C*F)."""
    _, _, c, f = kernel.shape
    return (_GG.astype(kernel.dtype) @ kernel.reshape(9, c * f)).reshape(16, c, f)


def _input_transform(xb, th, tw, out):
    """``B^T d B`` of every 4x4 tile of ``xb`` (nb, 2*th + 2, 2*tw + 2, C) into out (16, nb, th, tw, C)."""
    w = 2 * tw + 2
    r = [xb[:, a:a + 2 * th:2, :w] for a in range(4)]                     # tile rows a: (nb, th, W, C)
    u = (r[0] - r[2], r[1] + r[2], r[2] - r[1], r[1] - r[3])
    for a in range(4):
        col = [u[a][:, :, b:b + 2 * tw:2] for b in range(4)]
        np.subtract(col[0], col[2], out=out[4 * a])
        np.add(col[1], col[2], out=out[4 * a + 1])
        np.subtract(col[2], col[1], out=out[4 * a + 2])
        np.subtract(col[1], col[3], out=out[4 * a + 3])


def _output_transform(m, y):
    """``A^T m A`` of the products m (16, nb, th, tw, F) into y (nb, th, 2, tw, 2, F)."""
    m = m.reshape(4, 4, *m.shape[1:])
    for i, s in enumerate((m[0] + m[1] + m[2], m[1] - m[2] - m[3])):    # over tile rows: (4, ...) by column
        np.add(s[0] + s[1], s[2], out=y[:, :, i, :, 0])
        np.subtract(s[1] - s[2], s[3], out=y[:, :, i, :, 1])


def winograd_blocks(xp, kernel, z, bias=None):
    """(blocks, work) as ``conv_taps.tap_blocks``, but a block's rows are tile rows: ``work(block)``
    writes the block's output (plus ``bias``) into ``z`` for the padded input ``xp`` (a 'valid' 3x3
    convolution of it) and returns the (batch slice, output-row slice) it wrote."""
    n, hp, wp, c = xp.shape
    oh, ow = z.shape[1:3]
    f = z.shape[-1]
    th, tw = -(-oh // 2), -(-ow // 2)
    if 2 * th + 2 > hp or 2 * tw + 2 > wp:   # odd outputs: their last tiles read one zero row/column more
        ext = np.zeros((n, max(hp, 2 * th + 2), max(wp, 2 * tw + 2), c), xp.dtype)
        ext[:, :hp, :wp] = xp
        xp = ext
    u = transform_kernel(kernel)                                          # (16, C, F)
    item = xp.dtype.itemsize
    row_bytes = 16 * tw * (c + f) * item                                  # one tile row's transforms

    def work(block):
        bs, rs = block                                                    # rs: a range of tile rows
        nb, nr = len(range(*bs.indices(n))), rs.stop - rs.start
        xb = xp[bs, 2 * rs.start:2 * rs.stop + 2]
        t = windows.thread_buffer("wino_in", 16 * nb * nr * tw * c, xp.dtype).reshape(16, nb, nr, tw, c)
        _input_transform(xb, nr, tw, t)
        m = windows.thread_buffer("wino_prod", 16 * nb * nr * tw * f, xp.dtype).reshape(16, -1, f)
        np.matmul(t.reshape(16, -1, c), u, out=m)
        y = windows.thread_buffer("wino_out", nb * nr * 4 * tw * f, xp.dtype).reshape(nb, nr, 2, tw, 2, f)
        _output_transform(m.reshape(16, nb, nr, tw, f), y)
        rows = slice(2 * rs.start, min(oh, 2 * rs.stop))
        grid = y.reshape(nb, 2 * nr, 2 * tw, f)[:, :rows.stop - rows.start, :ow]
        if bias is None:
            z[bs, rows] = grid
        else:
            np.add(grid, bias, out=z[bs, rows])
        return bs, rows

    return list(windows.blocks(n, th, row_bytes, WINOGRAD_BLOCK_BYTES)), work
