"""2-D convolution, locally connected and zero-padding layers (channels_last).

Both weighted layers run as im2col: the padded input is viewed as windows
(N, oh, ow, kh, kw, C), copied block by block into a patch matrix whose rows are flattened in
(kh, kw, C) order, and multiplied by the kernel in one matrix product per block. ``backward``
rebuilds the same blocks, so nothing larger than one block is ever held.

Conv2D's forward passes (what ``predict`` runs) are in ``conv_forward``.
"""

import numpy as np

from . import activations, conv_forward, windows
from .conv_base import init_weight as _init_weight, positive_int as _positive_int
from .. import parallel
from .base import Layer, LayerError, as_tuple, backward_follows


def _check_built(layer):
    if "kernel" not in layer.weights:
        raise LayerError(f"{type(layer).__name__} '{layer.name}' has no weights yet: call build(input_shape) "
                         "or set_weights first")


class Conv2D(Layer):
    """2-D cross-correlation, as ``keras.layers.Conv2D``.

    ``y[n, i, j, f] = act(b[f] + sum_{a, b, c} xp[n, i*sh + a*dh, j*sw + b*dw, g*cg + c] * K[a, b, c, f])``
    where ``xp`` is the padded input, ``cg = C / groups`` and ``g = f // (filters / groups)``.

    Input (N, H, W, C) -> output (N, oh, ow, filters).
    Output size: 'valid' ``floor((n - (k-1)*d - 1) / s) + 1``; 'same' ``ceil(n / s)``, with
    TensorFlow's padding split (the odd extra cell goes bottom/right).
    Weights: kernel (kh, kw, C/groups, filters); bias (filters,) when use_bias.
    """

    weight_names = ("kernel", "bias")

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, groups=1, activation=None, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        windows.check_channels_last("Conv2D", data_format)
        self.filters = _positive_int("filters", filters)
        self.groups = _positive_int("groups", groups)
        if self.filters % self.groups:
            raise LayerError(f"filters must be divisible by groups. Received: filters={filters}, groups={groups}")
        self.kernel_size = as_tuple(kernel_size, 2, "kernel_size")
        self.strides = as_tuple(strides, 2, "strides")
        self.dilation_rate = as_tuple(dilation_rate, 2, "dilation_rate")
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise LayerError(
                "strides > 1 is not supported together with dilation_rate > 1. "
                f"Received: strides={self.strides}, dilation_rate={self.dilation_rate}"
            )
        self.padding = windows.normalize_padding(padding)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)

    def active_weight_names(self):
        return ("kernel", "bias") if self.use_bias else ("kernel",)

    def _check_input(self, input_shape):
        if len(input_shape) != 4:
            raise LayerError(f"Conv2D expects input of rank 4 (N, H, W, C). Received: input_shape={input_shape}")
        if input_shape[-1] % self.groups:
            raise LayerError(
                f"input channels must be divisible by groups. Received: channels={input_shape[-1]}, "
                f"groups={self.groups}"
            )

    def build(self, input_shape, rng=None):
        self._check_input(tuple(input_shape))
        self.compute_output_shape(input_shape)
        kh, kw = self.kernel_size
        cg = input_shape[-1] // self.groups
        self.weights = {"kernel": _init_weight(rng, (kh, kw, cg, self.filters), kh * kw * cg, self.dtype)}
        if self.use_bias:
            self.weights["bias"] = _init_weight(rng, (self.filters,), 1, self.dtype)
        self.built = True

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape
        oh, ow = windows.output_hw((h, w), self.kernel_size, self.strides, self.dilation_rate, self.padding,
                                   "Conv2D")
        return (n, oh, ow, self.filters)

    # The kernel as G matrices (G, kh*kw*cg, F/G): group g sees input channels g*cg:(g+1)*cg.
    def _group_kernel(self):
        kernel = self.weights["kernel"]
        kh, kw, cg, f = kernel.shape
        g = self.groups
        return kernel.reshape(kh * kw * cg, g, f // g).transpose(1, 0, 2)

    def _group_patches(self, patches):
        """(M, kh*kw*C) -> (G, M, kh*kw*cg); a no-op reshape when groups == 1."""
        m, k = patches.shape
        g = self.groups
        if g == 1:
            return patches[None]
        kk = self.kernel_size[0] * self.kernel_size[1]
        return patches.reshape(m, kk, g, k // (kk * g)).transpose(2, 0, 1, 3).reshape(g, m, k // g)

    def _setup(self, x):
        _check_built(self)
        self._check_input(x.shape)
        _, h, w, c = x.shape
        if self.weights["kernel"].shape[2] * self.groups != c:
            raise LayerError(f"Conv2D '{self.name}' was built for {self.weights['kernel'].shape[2] * self.groups} "
                             f"input channels. Received: input shape {x.shape}")
        pads = windows.spatial_padding((h, w), self.kernel_size, self.strides, self.dilation_rate, self.padding)
        out_hw = windows.output_hw((h, w), self.kernel_size, self.strides, self.dilation_rate, self.padding,
                                   "Conv2D")
        return pads, out_hw

    def forward(self, x, training=False):
        x = self.cast(x)
        pads, (oh, ow) = self._setup(x)
        xp = windows.pad_hw(x, pads)
        n = x.shape[0]
        z = np.empty((n, oh, ow, self.filters), dtype=self.dtype)
        # Only backward reads the pre-activation z: without one, the activation runs in place.
        y = z if self.activation.name == "linear" or not backward_follows() else np.empty_like(z)
        conv_forward.run(self, xp, z, y)
        self._cache = (x.shape, pads, xp, z, y)
        return y

    def backward(self, dout):
        x_shape, pads, xp, z, y = self._cache
        dz = self.activation.backward(z, y, self.cast(dout))
        n, oh, ow, f = dz.shape
        kh, kw = self.kernel_size
        g = self.groups
        cg = xp.shape[-1] // g
        win = windows.windows(xp, self.kernel_size, self.strides, self.dilation_rate, (oh, ow))
        wk = self._group_kernel()
        dwk = np.zeros_like(wk)
        dxp = np.zeros(xp.shape, dtype=self.dtype)
        row_bytes = ow * kh * kw * xp.shape[-1] * self.dtype.itemsize
        for bs, rs in windows.blocks(n, oh, row_bytes):
            patches = windows.patch_block(win, bs, rs)
            nb, nr = patches.shape[:2]
            pg = self._group_patches(patches.reshape(-1, patches.shape[-1]))        # (G, M, K/G)
            dzg = dz[bs, rs].reshape(-1, g, f // g).transpose(1, 0, 2)              # (G, M, F/G)
            dwk += np.matmul(pg.transpose(0, 2, 1), dzg)
            dpg = np.matmul(dzg, wk.transpose(0, 2, 1))                             # (G, M, K/G)
            dpatches = dpg.reshape(g, -1, kh * kw, cg).transpose(1, 2, 0, 3).reshape(nb, nr, ow, kh, kw, g * cg)
            windows.col2im_add(dxp, dpatches, bs, rs, self.strides, self.dilation_rate)
        self.grads["kernel"] = dwk.transpose(1, 0, 2).reshape(kh, kw, cg, f)
        if self.use_bias:
            self.grads["bias"] = dz.sum(axis=(0, 1, 2))
        return np.ascontiguousarray(windows.crop_hw(dxp, pads))


class LocallyConnected2D(Layer):
    """2-D convolution with unshared weights, as ``tf_keras.layers.LocallyConnected2D`` (implementation=1).

    ``y[n, i, j, f] = act(b[i, j, f] + sum_k P[n, i*ow + j, k] * K[i*ow + j, k, f])`` where row
    ``p = i*ow + j`` of P is the (kh, kw, C) patch at output position (i, j), flattened in
    (kh, kw, C) order; positions run row-major.

    Input (N, H, W, C) -> output (N, oh, ow, filters); 'valid' padding only:
    ``oh = ceil((H - kh + 1) / sh)``.
    Weights: kernel (oh*ow, kh*kw*C, filters); bias (oh, ow, filters) when use_bias.
    """

    weight_names = ("kernel", "bias")

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None,
                 activation=None, use_bias=True, implementation=1, **kwargs):
        super().__init__(**kwargs)
        windows.check_channels_last("LocallyConnected2D", data_format)
        if implementation != 1:
            raise LayerError(
                "LocallyConnected2D supports implementation=1 only (kernel (oh*ow, kh*kw*C, filters)). "
                f"Received: implementation={implementation!r}"
            )
        self.implementation = 1
        self.filters = _positive_int("filters", filters)
        self.kernel_size = as_tuple(kernel_size, 2, "kernel_size")
        self.strides = as_tuple(strides, 2, "strides")
        self.padding = windows.normalize_padding(padding)
        if self.padding != "valid":
            raise LayerError(
                "LocallyConnected2D with implementation=1 supports padding='valid' only. "
                f"Received: padding={padding!r}"
            )
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)

    def active_weight_names(self):
        return ("kernel", "bias") if self.use_bias else ("kernel",)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 4:
            raise LayerError(
                f"LocallyConnected2D expects input of rank 4 (N, H, W, C). Received: input_shape={input_shape}"
            )
        n, h, w, _ = input_shape
        if h is None or w is None:
            raise LayerError(f"LocallyConnected2D needs fully defined spatial dimensions. "
                             f"Received: input_shape={input_shape}")
        oh, ow = windows.output_hw((h, w), self.kernel_size, self.strides, (1, 1), "valid", "LocallyConnected2D")
        return (n, oh, ow, self.filters)

    def build(self, input_shape, rng=None):
        _, oh, ow, _ = self.compute_output_shape(tuple(input_shape))
        k = self.kernel_size[0] * self.kernel_size[1] * input_shape[-1]
        self.weights = {"kernel": _init_weight(rng, (oh * ow, k, self.filters), k, self.dtype)}
        if self.use_bias:
            self.weights["bias"] = _init_weight(rng, (oh, ow, self.filters), 1, self.dtype)
        self.built = True

    def _windows(self, x):
        _check_built(self)
        _, oh, ow, _ = self.compute_output_shape(x.shape)
        kernel = self.weights["kernel"]
        if kernel.shape[:2] != (oh * ow, self.kernel_size[0] * self.kernel_size[1] * x.shape[-1]):
            raise LayerError(f"LocallyConnected2D '{self.name}' has kernel {kernel.shape}, which does not fit "
                             f"input shape {x.shape}")
        return windows.windows(x, self.kernel_size, self.strides, (1, 1), (oh, ow))

    def forward(self, x, training=False):
        x = self.cast(x)
        win = self._windows(x)
        n, oh, ow = win.shape[:3]
        kernel = self.weights["kernel"]
        f = self.filters
        z = np.empty((n, oh, ow, f), dtype=self.dtype)
        y = z if self.activation.name == "linear" else np.empty_like(z)
        # Blocks of output rows over the whole batch when they fit, so that each position's kernel
        # is read once per call; else the usual (items, rows) blocks.
        row_bytes = ow * kernel.shape[1] * self.dtype.itemsize
        limit = min(windows.MAX_PATCH_BYTES, 4 * windows.FORWARD_BLOCK_BYTES)
        if n * row_bytes <= limit:
            todo = [(slice(0, n), rs) for _, rs in windows.blocks(1, oh, n * row_bytes, limit)]
        else:
            todo = list(windows.blocks(n, oh, row_bytes, limit))

        def block(b):
            bs, rs = b
            patches = windows.patch_block(win, bs, rs, reuse=True)                  # (nb, nr, ow, K)
            nb, nr = patches.shape[:2]
            pos = slice(rs.start * ow, rs.stop * ow)
            # One batched product over positions: (P, nb, K) @ (P, K, F) -> (P, nb, F), written into z.
            zb = z[bs, rs]
            np.matmul(patches.reshape(nb, nr * ow, -1).transpose(1, 0, 2), kernel[pos],
                      out=zb.reshape(nb, nr * ow, f, copy=False).transpose(1, 0, 2))
            if self.use_bias:
                zb += self.weights["bias"][rs]
            if y is not z:
                y[bs, rs] = self.activation.forward(zb)

        parallel.run_blocks(block, todo, cost=z.size * kernel.shape[1])
        self._cache = (x, z, y)
        return y

    def backward(self, dout):
        x, z, y = self._cache
        dz = self.activation.backward(z, y, self.cast(dout))
        win = self._windows(x)
        n, oh, ow, kh, kw, c = win.shape
        kernel = self.weights["kernel"]
        dkernel = np.zeros_like(kernel)
        dx = np.zeros(x.shape, dtype=self.dtype)
        for bs, rs in windows.blocks(n, oh, ow * kernel.shape[1] * self.dtype.itemsize):
            patches = windows.patch_block(win, bs, rs)
            nb, nr = patches.shape[:2]
            pos = slice(rs.start * ow, rs.stop * ow)
            pt = patches.reshape(nb, nr * ow, -1).transpose(1, 0, 2)                 # (P, nb, K)
            dzt = dz[bs, rs].reshape(nb, nr * ow, -1).transpose(1, 0, 2)             # (P, nb, F)
            dkernel[pos] += np.matmul(pt.transpose(0, 2, 1), dzt)
            dpt = np.matmul(dzt, kernel[pos].transpose(0, 2, 1))                     # (P, nb, K)
            dpatches = dpt.transpose(1, 0, 2).reshape(nb, nr, ow, kh, kw, c)
            windows.col2im_add(dx, dpatches, bs, rs, self.strides, (1, 1))
        self.grads["kernel"] = dkernel
        if self.use_bias:
            self.grads["bias"] = dz.sum(axis=0)
        return dx


class ZeroPadding2D(Layer):
    """Zero rows/columns around an image, as ``keras.layers.ZeroPadding2D``.

    Input (N, H, W, C) -> output (N, top + H + bottom, left + W + right, C).
    ``padding``: int p (all sides), (ph, pw) (symmetric), or ((top, bottom), (left, right)).
    No weights.
    """

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(**kwargs)
        windows.check_channels_last("ZeroPadding2D", data_format)
        self.padding = _normalize_zero_padding(padding)

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        (t, b), (l, r) = self.padding
        return (n, None if h is None else h + t + b, None if w is None else w + l + r, c)

    def forward(self, x, training=False):
        x = self.cast(x)
        if x.ndim != 4:
            raise LayerError(f"ZeroPadding2D expects input of rank 4 (N, H, W, C). Received: shape {x.shape}")
        out = windows.pad_hw(x, self.padding)
        return out.copy() if out is x else out

    def backward(self, dout):
        return np.ascontiguousarray(windows.crop_hw(self.cast(dout), self.padding))


def _normalize_zero_padding(padding):
    received = padding

    def pair(value, what):
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            value = (value, value)
        ok = (isinstance(value, (tuple, list)) and len(value) == 2
              and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0 for v in value))
        if not ok:
            raise LayerError(f"{what} must be a non-negative int or a tuple of 2 non-negative ints. "
                             f"Received: padding={received!r}")
        return tuple(int(v) for v in value)

    if isinstance(padding, (int, np.integer)) and not isinstance(padding, bool):
        padding = (padding, padding)
    if not isinstance(padding, (tuple, list)) or len(padding) != 2:
        raise LayerError("padding must be an int, a tuple of 2 ints (height, width), or a tuple of 2 tuples "
                         f"of 2 ints ((top, bottom), (left, right)). Received: padding={padding!r}")
    return pair(padding[0], "1st entry of padding"), pair(padding[1], "2nd entry of padding")
