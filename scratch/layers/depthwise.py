"""Depthwise and separable convolutions, 2-D and 1-D (channels_last).

A depthwise convolution filters each input channel on its own, so it has no matrix product to
lean on: it runs as a sum over the kh*kw kernel offsets, each adding one strided slice of the
padded input (a whole-array multiply-add) times that offset's (C, dm) weights. ``backward`` walks
the same offsets. Memory stays at a few arrays the size of the output.

Padding, output size and the strides-with-dilation case follow TensorFlow (see windows.py):
'same' gives ``ceil(n / s)`` with the odd extra cell bottom/right, 'valid'
``floor((n - (k-1)*d - 1) / s) + 1``. Keras accepts strides > 1 together with dilation > 1 here
(its TF backend then runs the dilated conv at stride 1 and subsamples, which is the same sum).
"""

import numpy as np

from . import windows
from .base import LayerError
from .conv_base import SpatialLayer, positive_int


def depthwise_forward(xp, kernel, strides, dilation, out_hw):
    """Padded input (N, Hp, Wp, C), kernel (kh, kw, C, dm) -> (N, oh, ow, C*dm), channel c*dm + m."""
    n, c = xp.shape[0], xp.shape[-1]
    kh, kw, _, dm = kernel.shape
    oh, ow = out_hw
    out = np.zeros((n, oh, ow, c, dm), dtype=xp.dtype)
    term = np.empty_like(out)
    for (a, b), (rows, cols) in windows.offset_slices((kh, kw), strides, dilation, out_hw):
        np.multiply(xp[:, rows, cols, :, None], kernel[a, b], out=term)
        out += term
    return out.reshape(n, oh, ow, c * dm)


def depthwise_backward(xp, kernel, dz, strides, dilation):
    """Adjoint of ``depthwise_forward``: (d padded input, d kernel) from dz (N, oh, ow, C*dm)."""
    n, oh, ow, _ = dz.shape
    kh, kw, c, dm = kernel.shape
    dz = dz.reshape(n, oh, ow, c, dm)
    dxp = np.zeros_like(xp)
    dkernel = np.empty_like(kernel)
    for (a, b), (rows, cols) in windows.offset_slices((kh, kw), strides, dilation, (oh, ow)):
        slab = xp[:, rows, cols, :]                                        # (N, oh, ow, C)
        if dm == 1:
            dkernel[a, b, :, 0] = np.einsum("nijc,nijc->c", slab, dz[..., 0])
            dxp[:, rows, cols, :] += dz[..., 0] * kernel[a, b, :, 0]
        else:
            dkernel[a, b] = np.einsum("nijc,nijcm->cm", slab, dz)
            dxp[:, rows, cols, :] += np.einsum("nijcm,cm->nijc", dz, kernel[a, b])
    return dxp, dkernel


class _Depthwise(SpatialLayer):
    """The depthwise part shared by DepthwiseConv and SeparableConv: padding and the filtering."""

    depthwise_name = "kernel"

    def _init_depthwise(self, depth_multiplier, kernel_size, strides, padding, data_format, dilation_rate,
                        activation, use_bias):
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

    def _geometry(self, shape_2d):
        hw = shape_2d[1:3]
        out_hw = windows.output_hw(hw, self.kernel_2d, self.strides_2d, self.dilation_2d, self.padding,
                                   type(self).__name__)
        return out_hw, windows.spatial_padding(hw, self.kernel_2d, self.strides_2d, self.dilation_2d,
                                               self.padding)

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
                 dilation_rate=1, activation=None, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self._init_depthwise(depth_multiplier, kernel_size, strides, padding, data_format, dilation_rate,
                             activation, use_bias)

    def active_weight_names(self):
        return ("kernel", "bias") if self.use_bias else ("kernel",)

    def output_shape_2d(self, shape_2d):
        (oh, ow), _ = self._geometry(shape_2d)
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
                 depth_multiplier=1, activation=None, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.filters = positive_int("filters", filters)
        self._init_depthwise(depth_multiplier, kernel_size, strides, padding, data_format, dilation_rate,
                             activation, use_bias)

    def active_weight_names(self):
        return self.weight_names if self.use_bias else self.weight_names[:2]

    def output_shape_2d(self, shape_2d):
        (oh, ow), _ = self._geometry(shape_2d)
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
