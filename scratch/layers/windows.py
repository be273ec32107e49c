"""Sliding windows shared by convolution, locally connected and pooling layers (channels_last).

Conventions (TensorFlow's, which Keras uses on every backend):
- 'valid': ``out = floor((n - (k-1)*d - 1) / s) + 1``; no padding.
- 'same':  ``out = ceil(n / s)``; ``total = max((out-1)*s + (k-1)*d + 1 - n, 0)`` cells of padding,
  ``before = total // 2`` and ``after = total - before``: an odd total puts the extra cell
  bottom/right.

A window view ``(N, oh, ow, kh, kw, C)`` is a strided view of the padded input (no copy). The
im2col patch matrix ``(rows, kh*kw*C)`` is a copy, so it is built block by block: a block is a
run of batch items (or, when one item alone is too big, a run of output rows of one item) whose
patch matrix fits in ``MAX_PATCH_BYTES``. Forward passes use blocks of at most
``FORWARD_BLOCK_BYTES``, copied into a per-thread buffer that is reused: a block that stays in
the core's cache is multiplied at close to BLAS's full rate, while a large patch matrix costs a
page fault per 4 KiB and a trip to memory (profile in scratch.parallel's docstring).
"""

import threading

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .. import parallel
from .base import LayerError, check_choice

# Upper bound on one patch matrix. Read at call time, so a test may lower it to force chunking.
MAX_PATCH_BYTES = 256 * 2**20
FORWARD_BLOCK_BYTES = 2 * 2**20
# A padded copy's cost per element in the multiply-adds of ``parallel.run_blocks`` (a copy into
# fresh memory, page faults included, ~20 of a product's multiply-adds).
PAD_COST = 20

_buffers = threading.local()


def thread_buffer(name, size, dtype):
    """This thread's reused scratch array ``name`` of ``size`` elements (grown when too small); the
    next call with the same name overwrites it, so a block must be consumed before that."""
    buf = getattr(_buffers, name, None)
    if buf is None or buf.dtype != dtype or buf.size < size:
        buf = np.empty(size, dtype=dtype)
        setattr(_buffers, name, buf)
    return buf[:size]

_stats = {"peak_patch_bytes": 0}


def peak_patch_bytes():
    """Largest patch matrix built since the last reset (bytes)."""
    return _stats["peak_patch_bytes"]


def reset_peak_patch_bytes():
    _stats["peak_patch_bytes"] = 0


def normalize_padding(padding):
    """'valid' or 'same' (Keras lower-cases the argument)."""
    value = padding.lower() if isinstance(padding, str) else padding
    check_choice("padding", value, ("valid", "same"))
    return value


def check_channels_last(layer_name, data_format):
    if data_format not in (None, "channels_last"):
        raise LayerError(
            f"{layer_name} supports data_format='channels_last' only. Received: data_format={data_format!r}"
        )


def output_length(n, k, s, d=1, padding="valid"):
    """Output size along one axis; None stays None (unknown size)."""
    if n is None:
        return None
    if padding == "same":
        return -(-n // s)
    return (n - (k - 1) * d - 1) // s + 1


def same_padding(n, k, s, d=1):
    """(before, after) padding TensorFlow's 'same' adds to an axis of length n."""
    out = -(-n // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2


def spatial_padding(hw, kernel, strides, dilation, padding):
    """((top, bottom), (left, right)) for an (H, W) input."""
    if padding == "valid":
        return (0, 0), (0, 0)
    return tuple(same_padding(n, k, s, d) for n, k, s, d in zip(hw, kernel, strides, dilation))


def output_hw(hw, kernel, strides, dilation, padding, layer_name):
    """(oh, ow), refusing windows that do not fit (Keras: 'Computed output size would be zero or negative')."""
    out = tuple(output_length(n, k, s, d, padding) for n, k, s, d in zip(hw, kernel, strides, dilation))
    if any(o is not None and o <= 0 for o in out):
        raise LayerError(
            f"{layer_name}: computed output size would be zero or negative for input size {tuple(hw)}, "
            f"kernel {tuple(kernel)}, strides {tuple(strides)}, dilation {tuple(dilation)}, padding={padding!r}"
        )
    return out


def pad_hw(x, pads, value=0.0):
    """Pad axes 1 and 2 of (N, H, W, C) by ((top, bottom), (left, right)) with a constant."""
    (t, b), (l, r) = pads
    if t == b == l == r == 0:
        return x
    n, h, w, c = x.shape
    # Only the border is filled (np.full would write the whole array once more: 2 ms of a 30 ms
    # 3x3 conv on (8, 56, 56, 64), on one thread, before the pool starts). Runs of items are
    # padded on the engine's pool: alone, the copy was 1.4 of a 3x3 conv's 15-36 ms (8x56x56x64).
    out = np.empty((n, h + t + b, w + l + r, c), dtype=x.dtype)

    def items(s):
        o = out[s]
        o[:, :t] = value
        o[:, t + h:] = value
        o[:, t:t + h, :l] = value
        o[:, t:t + h, l + w:] = value
        o[:, t:t + h, l:l + w, :] = x[s]

    parallel.run_blocks(items, parallel.row_chunks(n, PAD_COST * h * w * c), cost=PAD_COST * x.size)
    return out


def crop_hw(x, pads):
    """Inverse of pad_hw: drop the padded border (used by backward passes)."""
    (t, b), (l, r) = pads
    return x[:, t:x.shape[1] - b, l:x.shape[2] - r, :]


def windows(xp, kernel, strides, dilation, out_hw):
    """Read-only strided view (N, oh, ow, kh, kw, C) of the padded input: element
    [n, i, j, a, b, c] is xp[n, i*sh + a*dh, j*sw + b*dw, c]."""
    n, _, _, c = xp.shape
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, strides, dilation, out_hw
    s0, s1, s2, s3 = xp.strides
    return as_strided(xp, shape=(n, oh, ow, kh, kw, c),
                      strides=(s0, s1 * sh, s2 * sw, s1 * dh, s2 * dw, s3), writeable=False)


def offset_slices(kernel, strides, dilation, out_hw):
    """For each kernel offset (a, b): the (rows, cols) slices of the padded input it touches,
    so that xp[:, rows, cols] lines up with the (oh, ow) output grid."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, strides, dilation, out_hw
    for a in range(kh):
        for b in range(kw):
            yield (a, b), (slice(a * dh, a * dh + (oh - 1) * sh + 1, sh),
                           slice(b * dw, b * dw + (ow - 1) * sw + 1, sw))


def blocks(n, out_rows, row_bytes, limit=None):
    """Split (batch, output rows) into blocks whose patch matrix stays within ``limit`` bytes.

    ``row_bytes`` is the patch-matrix size of one output row of one item. Yields
    (batch slice, row slice) pairs covering everything exactly once, whole items when they fit.
    """
    limit = MAX_PATCH_BYTES if limit is None else limit
    item_bytes = max(1, out_rows * row_bytes)
    if item_bytes <= limit:
        per_block = max(1, limit // item_bytes)
        for i in range(0, n, per_block):
            yield slice(i, min(n, i + per_block)), slice(0, out_rows)
        return
    rows = max(1, limit // max(1, row_bytes))
    for i in range(n):
        for r in range(0, out_rows, rows):
            yield slice(i, i + 1), slice(r, min(out_rows, r + rows))


def forward_block_bytes():
    """Patch-block bound of forward passes (never above ``MAX_PATCH_BYTES``)."""
    return min(MAX_PATCH_BYTES, FORWARD_BLOCK_BYTES)


def patch_block(win, bs, rs, reuse=False):
    """Copy one block of the window view into a patch array (nb, nr, ow, kh*kw*C).

    ``reuse=True`` copies into this thread's buffer, which the next call overwrites (for a block
    that is consumed at once, as forward passes do)."""
    view = win[bs, rs]
    nb, nr, ow, kh, kw, c = view.shape
    if reuse:
        patches = thread_buffer("patches", view.size, view.dtype).reshape(view.shape)
        np.copyto(patches, view)
        patches = patches.reshape(nb, nr, ow, kh * kw * c)
    else:
        patches = view.reshape(nb, nr, ow, kh * kw * c)
    _stats["peak_patch_bytes"] = max(_stats["peak_patch_bytes"], patches.nbytes)
    return patches


def patch_block_transposed(xp, kernel, strides, dilation, out_hw, bs, rs, ones_row=False):
    """One block's patch matrix, transposed: (kh*kw*C, nb*nr*ow) in this thread's reused buffer.

    Row (a, b, c) is the input plane c shifted by kernel offset (a, b), copied as one slab per
    offset. For inputs with few channels this beats ``patch_block``, whose copy moves runs of
    only kw*C values; the product then reads it as a column-major matrix, ``.T``, which BLAS
    takes as it is. ``ones_row=True`` appends a row of ones (kh*kw*C + 1 rows): multiplied by a
    bias row appended to the kernel, the product adds the bias as its last term.
    """
    (kh, kw), (sh, _), (oh_all, ow) = kernel, strides, out_hw
    nb = len(range(*bs.indices(xp.shape[0])))
    nr = len(range(*rs.indices(oh_all)))
    c = xp.shape[-1]
    m, k = nb * nr * ow, kh * kw * c
    flat = thread_buffer("transposed", (k + ones_row) * m, xp.dtype).reshape(k + ones_row, m)
    out = flat[:k].reshape(kh * kw, c, nb, nr, ow)
    top = rs.start * sh
    span = (nr - 1) * sh + (kh - 1) * dilation[0] + 1          # input rows the block reads
    src = xp[bs, top:top + span]
    if c > 1 and kh * kw >= 4 * sh * strides[1]:
        # The block's input rows as planes (C, nb, rows, Wp), staged once: each slab below then
        # copies runs of contiguous values instead of gathering every C-th one. The staging costs
        # about sh*sw / (kh*kw) of the slabs' copying: it paid for 3x3 kernels at stride 1 and 7x7
        # at stride 2 (C=3, whole layers on the pool, alternating runs: the captioners' conv1 on
        # (300, 64, 64) -> 8 filters 65 -> 59 ms; ResNet50's 7x7 s2 stem at 224, 53 -> 48 ms),
        # not for 3x3 at stride 2 (MobileNetV2's stem, 10.1 -> 10.4 ms).
        planes = thread_buffer("planes", src.size, xp.dtype).reshape(c, *src.shape[:3])
        np.copyto(planes, src.transpose(3, 0, 1, 2))
    else:
        planes = src.transpose(3, 0, 1, 2)                       # a view, read as it is
    for (a, b), (rows, cols) in offset_slices(kernel, strides, dilation, (nr, ow)):
        np.copyto(out[a * kw + b], planes[:, :, rows, cols])
    if ones_row:
        flat[k] = 1
    _stats["peak_patch_bytes"] = max(_stats["peak_patch_bytes"], flat.nbytes)
    return flat


def col2im_add(dxp, dpatches, bs, rs, strides, dilation):
    """Scatter-add patch gradients (nb, nr, ow, kh, kw, C) into the padded input gradient.

    The adjoint of ``patch_block``: each kernel offset adds one strided slab, so overlapping
    windows accumulate.
    """
    _, nr, ow, kh, kw, _ = dpatches.shape
    sh = strides[0]   # rows start at this block's first output row; columns come whole from offset_slices
    top = rs.start * sh
    for (a, b), (rows, cols) in offset_slices((kh, kw), strides, dilation, (nr, ow)):
        rows = slice(top + rows.start, top + rows.stop, sh)
        dxp[bs, rows, cols, :] += dpatches[:, :, :, a, b, :]
