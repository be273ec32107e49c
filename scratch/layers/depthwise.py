"""Depthwise and separable convolutions, 2-D and 1-D (channels_last).

A depthwise convolution filters each input channel on its own, so it has no matrix product to
lean on: it runs as a sum over the kh*kw kernel offsets, each adding one strided slice of the
padded input (a whole-array multiply-add) times that offset's per-channel weights. ``backward``
walks the same offsets. Work goes in cache-sized blocks of output rows; memory stays at a few
arrays the size of the output (the input repeated dm times when depth_multiplier > 1).

Padding, output size and the strides-with-dilation case follow TensorFlow (see windows.py):
'same' gives ``ceil(n / s)`` with the odd extra cell bottom/right, 'valid'
``floor((n - (k-1)*d - 1) / s) + 1``. Keras accepts strides > 1 together with dilation > 1 here
(its TF backend then runs the dilated conv at stride 1 and subsamples, which is the same sum).
"""

import numpy as np

from . import windows
from .. import parallel
from .base import LayerError
from .conv_base import SpatialLayer, check_no_groups, positive_int


# Work in blocks of about this many bytes of output, so that the kh*kw passes over a block run in cache.
BLOCK_BYTES = 2**18


def _column_phases(xp, sw):
    """xp (N, Hp, Wp, Q) split by column phase p = col % sw, each (N, Hp, Wp_p * Q) contiguous, so that
    a strided run of output columns reads one contiguous run of memory."""
    n, hp, _, q = xp.shape
    phases = [xp] if sw == 1 else [np.ascontiguousarray(xp[:, :, p::sw]) for p in range(sw)]
    return [ph.reshape(n, hp, -1) for ph in phases]


def _taps(kernel_hwq, strides, dilation):
    """Per kernel offset (a, b): (a, b, row offset, column phase, flat column start in that phase)."""
    kh, kw, q = kernel_hwq.shape
    sw, (dh, dw) = strides[1], dilation
    for a in range(kh):
        for b in range(kw):
            col = b * dw
            yield a, b, a * dh, col % sw, (col // sw) * q


def _rows(rs, row_offset, sh):
    return slice(rs.start * sh + row_offset, (rs.stop - 1) * sh + row_offset + 1, sh)


def channelwise_forward(xp, kernel, strides, dilation, out_hw):
    """Padded input (N, Hp, Wp, Q), kernel (kh, kw, Q) -> (N, oh, ow, Q): each channel its own filter.

    Each offset (a, b) is one whole-array multiply-add of a strided slice of the input, computed on
    rows flattened to (ow * Q) so that NumPy's inner loop runs over long contiguous runs.
    """
    n, _, _, q = xp.shape
    oh, ow = out_hw
    phases = _column_phases(xp, strides[1])
    weights = np.tile(kernel, (1, 1, ow))                                    # (kh, kw, ow*Q)
    out = np.empty((n, oh, ow, q), dtype=xp.dtype)
    rows_out = out.reshape(n, oh, ow * q)
    taps = list(_taps(kernel, strides, dilation))

    def block(span):
        bs, rs = span
        o = rows_out[bs, rs]
        t = windows.thread_buffer("depthwise_term", o.size, o.dtype).reshape(o.shape)
        for i, (a, b, dr, phase, start) in enumerate(taps):
            src = phases[phase][bs, _rows(rs, dr, strides[0]), start:start + ow * q]
            if i == 0:
                np.multiply(src, weights[a, b], out=o)
            else:
                o += np.multiply(src, weights[a, b], out=t)

    # Each block is independent (its own output rows, this thread's term buffer): on the pool.
    # Cost in run_blocks' multiply-adds: two in-cache element-wise passes per tap, ~10 each.
    parallel.run_blocks(block, windows.blocks(n, oh, ow * q * xp.dtype.itemsize, limit=BLOCK_BYTES),
                        cost=out.size * len(taps) * 20)
    return out


def channelwise_backward(xp, kernel, dz, strides, dilation):
    """Adjoint of ``channelwise_forward``: (d padded input, d kernel) from dz (N, oh, ow, Q)."""
    n, oh, ow, q = dz.shape
    kh, kw, _ = kernel.shape
    sw = strides[1]
    phases = _column_phases(xp, sw)
    dphases = [np.zeros_like(ph) for ph in phases]
    weights = np.tile(kernel, (1, 1, ow))
    dweights = np.zeros((kh, kw, ow * q), dtype=xp.dtype)
    dz = dz.reshape(n, oh, ow * q)
    term = np.empty_like(dz)
    for bs, rs in windows.blocks(n, oh, ow * q * xp.dtype.itemsize, limit=BLOCK_BYTES):
        g, t = dz[bs, rs], term[bs, rs]
        for a, b, dr, phase, start in _taps(kernel, strides, dilation):
            cols = slice(start, start + ow * q)
            rows = _rows(rs, dr, strides[0])
            dweights[a, b] += np.einsum("nrk,nrk->k", phases[phase][bs, rows, cols], g)
            dphases[phase][bs, rows, cols] += np.multiply(g, weights[a, b], out=t)
    dxp = np.empty_like(xp)
    for p, dph in enumerate(dphases):
        dxp[:, :, p::sw] = dph.reshape(n, xp.shape[1], -1, q)
    return dxp, dweights.reshape(kh, kw, ow, q).sum(axis=2).astype(kernel.dtype, copy=False)


def depthwise_forward(xp, kernel, strides, dilation, out_hw):
    """Padded input (N, Hp, Wp, C), kernel (kh, kw, C, dm) -> (N, oh, ow, C*dm), channel c*dm + m.

    With dm > 1 each input channel is repeated dm times, so that channel c*dm + m of the repeat
    meets kernel[..., c, m]: the kernel's own (kh, kw, C*dm) reshape.
    """
    kh, kw, c, dm = kernel.shape
    xq = xp if dm == 1 else np.repeat(xp, dm, axis=-1)
    return channelwise_forward(xq, kernel.reshape(kh, kw, c * dm), strides, dilation, out_hw)


def depthwise_backward(xp, kernel, dz, strides, dilation):
    """Adjoint of ``depthwise_forward``: (d padded input, d kernel) from dz (N, oh, ow, C*dm)."""
    kh, kw, c, dm = kernel.shape
    xq = xp if dm == 1 else np.repeat(xp, dm, axis=-1)
    dxq, dkernel = channelwise_backward(xq, kernel.reshape(kh, kw, c * dm), dz, strides, dilation)
    dxp = dxq if dm == 1 else dxq.reshape(xp.shape + (dm,)).sum(axis=-1)
    return dxp, dkernel.reshape(kernel.shape)


class _Depthwise(SpatialLayer):
    """The depthwise part shared by DepthwiseConv and SeparableConv: padding and the filtering."""

    depthwise_name = "kernel"

    def _init_depthwise(self, depth_multiplier, kernel_size, strides, padding, data_format, dilation_rate,
                        activation, use_bias, groups):
        check_no_groups(type(self).__name__, groups)
        self.depth_multiplier = positive_int("depth_multiplier", depth_multiplier)
        self._init_spatial(kernel_size, strides, padding, data_format, dilation_rate, activation, use_bias)
        # TF's DepthwiseConv2dNative takes equal row and column strides only (oneDNN's float32 kernel
        # lets some through, float64 never). Keras reaches it unless it decomposes strides > 1 with
        # dilation > 1 into a stride-1 conv and a subsampling.
        decomposed = max(self.strides) > 1 and max(self.dilation_rate) > 1
        if self.rank == 2 and self.strides[0] != self.strides[1] and not decomposed:
            raise LayerError(
                f"{type(self).__name__}: TensorFlow's depthwise convolution supports only equal strides in the "
                f"row and column dimensions (unless dilation_rate > 1). Received: strides={self.strides}"
            )

    def _output_hw(self, shape_2d):
        """(oh, ow); an unknown (None) size stays None."""
        return windows.output_hw(shape_2d[1:3], self.kernel_2d, self.strides_2d, self.dilation_2d, self.padding,
                                 type(self).__name__)

    def _geometry(self, shape_2d):
        hw = shape_2d[1:3]
        return self._output_hw(shape_2d), windows.spatial_padding(hw, self.kernel_2d, self.strides_2d,
                                                                  self.dilation_2d, self.padding)

    def _check_channels(self, x2):
        self.check_built()
        c = self.weights[self.depthwise_name].shape[-2]
        if x2.shape[-1] != c:
            raise LayerError(f"{type(self).__name__} '{self.name}' was built for {c} input channels. "
                             f"Received: input shape {self.shape_from_2d(x2.shape)}")

    def _depthwise_forward(self, x):
        """(padded input, pads, depthwise output (N, oh, ow, C*dm)) for an input of the layer's rank."""
        x2 = self.to_2d(self.cast(x))
        self._check_channels(x2)
        out_hw, pads = self._geometry(x2.shape)
        xp = windows.pad_hw(x2, pads)
        z = depthwise_forward(xp, self.weight_2d(self.depthwise_name), self.strides_2d, self.dilation_2d, out_hw)
        return xp, pads, z

    def _depthwise_backward(self, xp, pads, dz):
        dxp, dkernel = depthwise_backward(xp, self.weight_2d(self.depthwise_name), dz, self.strides_2d,
                                          self.dilation_2d)
        self.set_grad(self.depthwise_name, dkernel)
        return self.from_2d(np.ascontiguousarray(windows.crop_hw(dxp, pads)))


class DepthwiseConv2D(_Depthwise):
    """Depthwise 2-D convolution, as ``keras.layers.DepthwiseConv2D``.

    ``y[n, i, j, c*dm + m] = act(b[c*dm + m] + sum_{a, b} xp[n, i*sh + a*dh, j*sw + b*dw, c] * K[a, b, c, m])``
    where ``xp`` is the padded input and ``dm`` the depth_multiplier.

    Input (N, H, W, C) -> output (N, oh, ow, C*dm); oh, ow as for Conv2D ('same': ``ceil(n / s)``).
    Weights: kernel (kh, kw, C, dm); bias (C*dm,) when use_bias.
    """

    weight_names = ("kernel", "bias")

    def __init__(self, kernel_size, strides=1, padding="valid", depth_multiplier=1, data_format=None,
                 dilation_rate=1, activation=None, use_bias=True, groups=1, **kwargs):
        super().__init__(**kwargs)
        self._init_depthwise(depth_multiplier, kernel_size, strides, padding, data_format, dilation_rate,
                             activation, use_bias, groups)

    def active_weight_names(self):
        return ("kernel", "bias") if self.use_bias else ("kernel",)

    def output_shape_2d(self, shape_2d):
        oh, ow = self._output_hw(shape_2d)
        c = shape_2d[-1]
        return (shape_2d[0], oh, ow, None if c is None else c * self.depth_multiplier)

    def build(self, input_shape, rng=None):
        shape_2d = self.shape_2d(input_shape)
        self.output_shape_2d(shape_2d)
        c, dm = shape_2d[-1], self.depth_multiplier
        self.weights = {}
        self.new_weight(rng, "kernel", self.kernel_2d + (c, dm), self.kernel_2d[0] * self.kernel_2d[1])
        if self.use_bias:
            self.new_weight(rng, "bias", (c * dm,), 1)
        self.built = True

    def forward(self, x, training=False):
        xp, pads, z = self._depthwise_forward(x)
        if self.use_bias:
            z += self.weights["bias"]
        y = self.activation.forward(z)
        self._cache = (xp, pads, z, y)
        return self.from_2d(y)

    def backward(self, dout):
        xp, pads, z, y = self._cache
        dz = self.activation.backward(z, y, self.to_2d(self.cast(dout)))
        if self.use_bias:
            self.set_grad("bias", dz.sum(axis=(0, 1, 2)))
        return self._depthwise_backward(xp, pads, dz)


class DepthwiseConv1D(DepthwiseConv2D):
    """Depthwise 1-D convolution, as ``keras.layers.DepthwiseConv1D``.

    ``y[n, i, c*dm + m] = act(b[c*dm + m] + sum_a xp[n, i*s + a*d, c] * K[a, c, m])``.
    Input (N, L, C) -> output (N, ol, C*dm); ol as for Conv1D ('valid' or 'same').
    Weights: kernel (k, C, dm); bias (C*dm,) when use_bias.
    """

    rank = 1


class SeparableConv2D(_Depthwise):
    """Depthwise then pointwise 2-D convolution, as ``keras.layers.SeparableConv2D``.

    ``u = depthwise(x)`` as in DepthwiseConv2D (no bias), then
    ``y[n, i, j, f] = act(b[f] + sum_q u[n, i, j, q] * P[0, 0, q, f])`` over ``q = c*dm + m``.

    Input (N, H, W, C) -> output (N, oh, ow, filters); oh, ow as for DepthwiseConv2D.
    Weights: depthwise_kernel (kh, kw, C, dm); pointwise_kernel (1, 1, C*dm, filters);
    bias (filters,) when use_bias.
    """

    weight_names = ("depthwise_kernel", "pointwise_kernel", "bias")
    depthwise_name = "depthwise_kernel"

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None, dilation_rate=1,
                 depth_multiplier=1, activation=None, use_bias=True, groups=1, **kwargs):
        super().__init__(**kwargs)
        self.filters = positive_int("filters", filters)
        self._init_depthwise(depth_multiplier, kernel_size, strides, padding, data_format, dilation_rate,
                             activation, use_bias, groups)

    def active_weight_names(self):
        return self.weight_names if self.use_bias else self.weight_names[:2]

    def output_shape_2d(self, shape_2d):
        oh, ow = self._output_hw(shape_2d)
        return (shape_2d[0], oh, ow, self.filters)

    def build(self, input_shape, rng=None):
        shape_2d = self.shape_2d(input_shape)
        self.output_shape_2d(shape_2d)
        c, dm = shape_2d[-1], self.depth_multiplier
        self.weights = {}
        self.new_weight(rng, "depthwise_kernel", self.kernel_2d + (c, dm), self.kernel_2d[0] * self.kernel_2d[1])
        self.new_weight(rng, "pointwise_kernel", (1, 1, c * dm, self.filters), c * dm)
        if self.use_bias:
            self.new_weight(rng, "bias", (self.filters,), 1)
        self.built = True

    def _pointwise(self):
        return self.weight_2d("pointwise_kernel")[0, 0]                   # (C*dm, filters)

    def forward(self, x, training=False):
        xp, pads, u = self._depthwise_forward(x)
        pointwise = self._pointwise()
        if pointwise.shape[0] != u.shape[-1]:
            raise LayerError(f"{type(self).__name__} '{self.name}': pointwise_kernel {pointwise.shape} does not "
                             f"take the {u.shape[-1]} depthwise channels")
        z = np.matmul(u, pointwise)
        if self.use_bias:
            z += self.weights["bias"]
        y = self.activation.forward(z)
        self._cache = (xp, pads, u, z, y)
        return self.from_2d(y)

    def backward(self, dout):
        xp, pads, u, z, y = self._cache
        dz = self.activation.backward(z, y, self.to_2d(self.cast(dout)))
        pointwise = self._pointwise()
        q, f = pointwise.shape
        self.set_grad("pointwise_kernel", u.reshape(-1, q).T @ dz.reshape(-1, f))
        if self.use_bias:
            self.set_grad("bias", dz.sum(axis=(0, 1, 2)))
        return self._depthwise_backward(xp, pads, np.matmul(dz, pointwise.T))


class SeparableConv1D(SeparableConv2D):
    """Depthwise then pointwise 1-D convolution, as ``keras.layers.SeparableConv1D``.

    ``u = depthwise(x)`` as in DepthwiseConv1D, then ``y[n, i, f] = act(b[f] + sum_q u[n, i, q] * P[0, q, f])``.
    Input (N, L, C) -> output (N, ol, filters).
    Weights: depthwise_kernel (k, C, dm); pointwise_kernel (1, C*dm, filters); bias (filters,).
    """

    rank = 1
