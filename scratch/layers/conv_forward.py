"""Conv2D's forward passes (what ``predict`` runs), one function per form of the product.

``run`` picks the form: a 1x1 Conv2D needs no patch matrix, its (strided) pixels are the rows
(``pointwise``); a stride-1 Conv2D with a medium channel count runs one product per kernel tap
(``taps``, see ``conv_taps``), or with many channels and a 3x3 kernel as Winograd's F(2x2, 3x3)
(``winograd``, see ``conv_winograd``); every other one runs im2col (``patches``): blocks of at most
``windows.FORWARD_BLOCK_BYTES`` are copied into a reused per-thread buffer and multiplied straight
into their rows of the output. Every form finishes each block there (bias, activation) while it
is still in cache, and runs its blocks on the engine's pool (``scratch.parallel``).
"""

import numpy as np

from . import conv_taps, conv_winograd, windows
from .. import parallel

# Inputs with at most this many channels build their patch blocks transposed, one slab per kernel
# offset (windows.patch_block_transposed): 2.5x faster for C=1, 1.25x for C=3 (bench, 1 thread;
# before its planar staging).
FEW_CHANNELS = 4


def run(layer, xp, z, y):
    """Write the layer's pre-activation output into ``z`` and its output into ``y`` (the same array
    for a linear activation, or when no backward follows) for the padded input ``xp``."""
    if layer.kernel_size == (1, 1) and layer.groups == 1:
        pointwise(layer, xp, z, y)
    elif conv_winograd.use_winograd(layer, xp.shape, z.shape[1:3]):
        winograd(layer, xp, z, y)
    elif conv_taps.use_taps(layer, xp.shape, z.shape[1:3]):
        taps(layer, xp, z, y)
    else:
        patches(layer, xp, z, y)


def finish(layer, zb, yb, bias=True):
    """Bias (unless ``bias=False``: the product added it) and activation of one block, in place
    (while the block is still in cache). A short bias is added along whole output rows: numpy's
    inner loop runs along the last axis, one call per 8 values for 8 filters (whole rows: 2.7x
    faster on a (4, 64, 64, 8) block)."""
    if layer.use_bias and bias:
        bias = layer.weights["bias"]
        if zb.ndim == 4 and bias.size < 64:
            rows = zb.reshape(-1, zb.shape[2] * bias.size)
            rows += np.tile(bias, zb.shape[2])
        else:
            zb += bias
    name = layer.activation.name
    if name == "relu":
        np.maximum(zb, 0, out=yb)       # no temporary block; yb may be zb itself (base.inference_only)
    elif name != "linear":
        yb[...] = layer.activation.forward(zb)


def pointwise(layer, xp, z, y):
    """1x1 kernels need no patch matrix: the (strided) pixels are the rows of the product."""
    sh, sw = layer.strides
    oh, ow = z.shape[1:3]
    src = xp if (sh, sw) == (1, 1) else np.ascontiguousarray(xp[:, ::sh, ::sw][:, :oh, :ow])
    rows = src.reshape(-1, src.shape[-1])
    kernel = layer.weights["kernel"].reshape(rows.shape[1], layer.filters)
    z2, y2 = z.reshape(-1, layer.filters, copy=False), y.reshape(-1, layer.filters, copy=False)

    def part(r):
        np.matmul(rows[r], kernel, out=z2[r])
        finish(layer, z2[r], y2[r])

    cost = rows.shape[0] * rows.shape[1] * layer.filters
    parallel.run_blocks(part, parallel.row_chunks(rows.shape[0], rows.shape[1] * layer.filters), cost=cost)


def taps(layer, xp, z, y):
    """Stride 1: one product per kernel tap on shifted pixel rows, no patch matrix (conv_taps)."""
    bias = layer.weights["bias"] if layer.use_bias else None
    todo, work = conv_taps.tap_blocks(np.ascontiguousarray(xp), layer.weights["kernel"], layer.dilation_rate, z,
                                      bias=bias)

    def block(b):
        work(b)
        finish(layer, z[b], y[b], bias=False)   # tap_blocks added the bias

    parallel.run_blocks(block, todo, cost=z.size * layer.weights["kernel"][..., 0].size)


def winograd(layer, xp, z, y):
    """3x3, stride 1, many channels: Winograd's F(2x2, 3x3) (conv_winograd)."""
    bias = layer.weights["bias"] if layer.use_bias else None
    todo, work = conv_winograd.winograd_blocks(xp, layer.weights["kernel"], z, bias=bias)

    def block(b):
        done = work(b)
        finish(layer, z[done], y[done], bias=False)   # winograd_blocks added the bias

    parallel.run_blocks(block, todo, cost=z.size * 9 * xp.shape[-1])


def patches(layer, xp, z, y):
    """im2col in blocks small enough to stay in cache; each block's product is written straight
    into its rows of ``z``. Blocks run on the engine's pool (scratch.parallel)."""
    n, oh, ow, f = z.shape
    win = windows.windows(xp, layer.kernel_size, layer.strides, layer.dilation_rate, (oh, ow))
    wk = layer._group_kernel()                                    # (G, K/G, F/G)
    k = win.shape[3] * win.shape[4] * win.shape[5]
    row_bytes = ow * k * layer.dtype.itemsize
    few_channels = layer.groups == 1 and xp.shape[-1] <= FEW_CHANNELS
    if few_channels:
        # The bias rides in the product as a last row of the kernel times a row of ones: the
        # output, F/K times larger than the patches here, is then written once, not read back
        # for the bias (conv1 of the digits CNNs: 12.1 -> 8 ms). A product over so few terms
        # adds them in order, so the bias comes last, as after the product (bit for bit, tests).
        kernel = np.concatenate([wk[0], layer.weights["bias"][None]]) if layer.use_bias else wk[0]
        row_bytes = ow * (kernel.shape[0] + f) * layer.dtype.itemsize   # the output block stays in cache too

    def block(b):
        bs, rs = b
        zb = z[bs, rs]
        if few_channels:   # (K, M) built one slab per kernel offset, read as (M, K)
            pt = windows.patch_block_transposed(xp, layer.kernel_size, layer.strides, layer.dilation_rate,
                                                (oh, ow), bs, rs, ones_row=layer.use_bias)
            np.matmul(pt.T, kernel, out=zb.reshape(-1, f, copy=False))
            finish(layer, zb, y[bs, rs], bias=False)
            return
        block_patches = windows.patch_block(win, bs, rs, reuse=True)   # (nb, nr, ow, K)
        nb, nr = block_patches.shape[:2]
        flat = block_patches.reshape(-1, block_patches.shape[-1])
        if layer.groups == 1:
            np.matmul(flat, wk[0], out=zb.reshape(-1, f, copy=False))
        else:
            out = np.matmul(layer._group_patches(flat), wk)       # (G, M, F/G)
            zb[...] = out.transpose(1, 0, 2).reshape(nb, nr, ow, f)
        finish(layer, zb, y[bs, rs])

    cost = z.size * wk.shape[1]   # multiply-adds: K/G per output element
    parallel.run_blocks(block, windows.blocks(n, oh, row_bytes, windows.forward_block_bytes()), cost=cost)
