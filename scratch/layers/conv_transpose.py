"""Transposed convolutions, 2-D and 1-D (channels_last), as TensorFlow computes them.

``tf.nn.conv_transpose`` is the gradient of a convolution with respect to its input: the layer's
output (size O) is the input of a forward convolution that, with the same kernel, strides,
dilation and padding, maps O back to the layer's input size n. So

- ``forward`` is that convolution's input gradient: one matrix product of x with the kernel
  gives every (kernel offset, filter) contribution, and each of the kh*kw offsets adds its slab
  into a strided slice of the padded output (windows.col2im_add), which is then cropped;
- ``backward`` is that forward convolution itself (dx) and its kernel gradient, by im2col.

Output size per axis (Keras's ``compute_conv_transpose_output_shape``), with ``ke = (k-1)*d + 1``:
- 'valid': ``(n-1)*s + ke + op``, where output_padding None means ``op = max(ke, s) - ke``;
- 'same':  ``n*s`` when output_padding is None, else ``(n-1)*s + ke % 2 + op``.
The padding split is the forward convolution's on O: TF's 'same' ``total = max((n-1)*s + ke - O, 0)``,
``before = total // 2`` (the extra cell bottom/right). TF refuses an O whose 'same' convolution
does not give back n (an even ``ke`` with output_padding 0); so does this layer.
"""

import numpy as np

from . import windows
from .base import LayerError
from .conv_base import SpatialLayer, check_no_groups, check_stride_dilation, positive_int


def transpose_axis(n, k, s, d, padding, output_padding, layer_name="Conv2DTranspose"):
    """(output size O, (before, after) padding of the forward convolution O -> n) along one axis."""
    if n is None:
        return None, (0, 0)
    ke = (k - 1) * d + 1
    if padding == "valid":
        op = max(ke, s) - ke if output_padding is None else output_padding
        return (n - 1) * s + ke + op, (0, 0)
    out = n * s if output_padding is None else (n - 1) * s + ke % 2 + output_padding
    if -(-out // s) != n:
        raise LayerError(
            f"{layer_name}: padding='same' with output_padding={output_padding}, kernel size {k} and dilation "
            f"{d} gives output size {out}, whose 'same' convolution with stride {s} has size {-(-out // s)}, "
            f"not the input size {n}: TensorFlow refuses this configuration"
        )
    return out, windows.same_padding(out, k, s, d)


def _output_padding(value, rank, strides):
    """None, or a rank-tuple of ints in [0, strides) (Keras's message when one is not below its stride)."""
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (int(value),) * rank
    value = tuple(value)
    if len(value) != rank or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0
                                 for v in value):
        raise LayerError(f"output_padding must be None, a non-negative int or a tuple of {rank} non-negative ints. "
                         f"Received: output_padding={value!r}")
    value = tuple(int(v) for v in value)
    for i, (op, s) in enumerate(zip(value, strides)):
        if op >= s:
            raise LayerError(
                "output_padding must be strictly less than strides for all dimensions. At dimension "
                f"{i}, output_padding is {op} but strides is {s}. Received: output_padding={value}, "
                f"strides={strides}"
            )
    return value


class Conv2DTranspose(SpatialLayer):
    """Transposed 2-D convolution, as ``keras.layers.Conv2DTranspose``.

    ``y = act(b + z)`` with ``zp[n, i*sh + a*dh, j*sw + b*dw, f] += sum_c x[n, i, j, c] * K[a, b, f, c]``
    over every input position (i, j) and kernel offset (a, b), and ``z`` the crop
    ``zp[:, top:top + oh, left:left + ow]`` (see the module docstring for oh, ow and top, left).

    Input (N, H, W, C) -> output (N, oh, ow, filters).
    Weights: kernel (kh, kw, filters, C): the last two axes swapped relative to Conv2D;
    bias (filters,) when use_bias.
    """

    weight_names = ("kernel", "bias")

    def __init__(self, filters, kernel_size, strides=1, padding="valid", output_padding=None, data_format=None,
                 dilation_rate=1, activation=None, use_bias=True, groups=1, **kwargs):
        super().__init__(**kwargs)
        check_no_groups(type(self).__name__, groups)
        self.filters = positive_int("filters", filters)
        self._init_spatial(kernel_size, strides, padding, data_format, dilation_rate, activation, use_bias)
        self.output_padding = _output_padding(output_padding, self.rank, self.strides)
        check_stride_dilation(self.strides, self.dilation_rate)

    def active_weight_names(self):
        return ("kernel", "bias") if self.use_bias else ("kernel",)

    def _geometry(self, shape_2d):
        """((oh, ow), ((top, bottom), (left, right))) for an (N, H, W, C) input."""
        # A 1-D layer's extra H axis (n = k = s = 1) must keep size 1: output_padding 0 there.
        ops = (None, None) if self.output_padding is None else (0,) * (2 - self.rank) + self.output_padding
        axes = [transpose_axis(n, k, s, d, self.padding, op, type(self).__name__)
                for n, k, s, d, op in zip(shape_2d[1:3], self.kernel_2d, self.strides_2d, self.dilation_2d, ops)]
        return tuple(o for o, _ in axes), tuple(p for _, p in axes)

    def output_shape_2d(self, shape_2d):
        (oh, ow), _ = self._geometry(shape_2d)
        return (shape_2d[0], oh, ow, self.filters)

    def build(self, input_shape, rng=None):
        shape_2d = self.shape_2d(input_shape)
        self.output_shape_2d(shape_2d)
        kh, kw = self.kernel_2d
        self.weights = {}
        self.new_weight(rng, "kernel", (kh, kw, self.filters, shape_2d[-1]), kh * kw * shape_2d[-1])
        if self.use_bias:
            self.new_weight(rng, "bias", (self.filters,), 1)
        self.built = True

    def forward(self, x, training=False):
        self.check_built()
        x2 = self.to_2d(self.cast(x))
        kernel = self.weight_2d("kernel")                                   # (kh, kw, F, C)
        kh, kw, f, c = kernel.shape
        if x2.shape[-1] != c:
            raise LayerError(f"{type(self).__name__} '{self.name}' was built for {c} input channels. "
                             f"Received: input shape {tuple(np.shape(x))}")
        (oh, ow), pads = self._geometry(x2.shape)
        (t, b), (l, r) = pads
        n, h, w, _ = x2.shape
        zp = np.zeros((n, oh + t + b, ow + l + r, f), dtype=self.dtype)
        to_offsets = kernel.reshape(kh * kw * f, c).T                      # (C, kh*kw*F)
        for bs, rs in windows.blocks(n, h, w * kh * kw * f * self.dtype.itemsize):
            contrib = np.matmul(x2[bs, rs], to_offsets)                     # (nb, nr, w, kh*kw*F)
            nb, nr = contrib.shape[:2]
            windows.col2im_add(zp, contrib.reshape(nb, nr, w, kh, kw, f), bs, rs, self.strides_2d,
                               self.dilation_2d)
        z = np.ascontiguousarray(windows.crop_hw(zp, pads))
        if self.use_bias:
            z += self.weights["bias"]
        y = self.activation.forward(z)
        self._cache = (x2, pads, z, y)
        return self.from_2d(y)

    def backward(self, dout):
        x2, pads, z, y = self._cache
        dz = self.activation.backward(z, y, self.to_2d(self.cast(dout)))
        kernel = self.weight_2d("kernel")
        kh, kw, f, c = kernel.shape
        n, h, w, _ = x2.shape
        win = windows.windows(windows.pad_hw(dz, pads), self.kernel_2d, self.strides_2d, self.dilation_2d, (h, w))
        from_offsets = kernel.reshape(kh * kw * f, c)
        dx = np.empty(x2.shape, dtype=self.dtype)
        dkernel = np.zeros_like(from_offsets)
        for bs, rs in windows.blocks(n, h, w * kh * kw * f * self.dtype.itemsize):
            patches = windows.patch_block(win, bs, rs)                      # (nb, nr, w, kh*kw*F)
            dx[bs, rs] = np.matmul(patches, from_offsets)
            dkernel += patches.reshape(-1, patches.shape[-1]).T @ x2[bs, rs].reshape(-1, c)
        self.set_grad("kernel", dkernel)
        if self.use_bias:
            self.set_grad("bias", dz.sum(axis=(0, 1, 2)))
        return self.from_2d(dx)


class Conv1DTranspose(Conv2DTranspose):
    """Transposed 1-D convolution, as ``keras.layers.Conv1DTranspose``.

    ``zp[n, i*s + a*d, f] += sum_c x[n, i, c] * K[a, f, c]``, cropped and biased as in Conv2DTranspose.
    Input (N, L, C) -> output (N, ol, filters), ol by the module docstring's formula.
    Weights: kernel (k, filters, C); bias (filters,) when use_bias.
    """

    rank = 1

