"""1-D convolution (channels_last), run by conv.Conv2D on the sequence seen as a one-row image.

Keeping one im2col path: (N, L, C) becomes (N, 1, L, C), the kernel (k, C/groups, filters) its
(1, k, C/groups, filters) view, and Conv2D does the rest (grouping, chunking, activation).
'causal' padding is Keras's: ``(k-1)*d`` zeros on the left, then a 'valid' convolution, so output
step i sees input steps <= i*s.
"""

import numpy as np

from .base import LayerError
from .conv import Conv2D
from .conv_base import SpatialLayer, check_stride_dilation, positive_int


class Conv1D(SpatialLayer):
    """1-D cross-correlation, as ``keras.layers.Conv1D``.

    ``y[n, i, f] = act(b[f] + sum_{a, c} xp[n, i*s + a*d, g*cg + c] * K[a, c, f])`` where ``xp`` is
    the padded input, ``cg = C / groups`` and ``g = f // (filters / groups)``.

    Input (N, L, C) -> output (N, ol, filters). Output size: 'valid'
    ``floor((L - (k-1)*d - 1) / s) + 1``; 'same' ``ceil(L / s)`` (TensorFlow's split, the odd
    extra cell on the right); 'causal' ``ceil(L / s)`` with all ``(k-1)*d`` padding on the left.
    Weights: kernel (k, C/groups, filters); bias (filters,) when use_bias.
    """

    rank = 1
    paddings = ("valid", "same", "causal")
    weight_names = ("kernel", "bias")

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None, dilation_rate=1,
                 groups=1, activation=None, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.filters = positive_int("filters", filters)
        self.groups = positive_int("groups", groups)
        if self.filters % self.groups:
            raise LayerError(f"filters must be divisible by groups. Received: filters={filters}, groups={groups}")
        self._init_spatial(kernel_size, strides, padding, data_format, dilation_rate, activation, use_bias)
        check_stride_dilation(self.strides, self.dilation_rate)
        self._conv = Conv2D(self.filters, self.kernel_2d, strides=self.strides_2d,
                            padding="valid" if self.padding == "causal" else self.padding,
                            dilation_rate=self.dilation_2d, groups=self.groups, activation=activation,
                            use_bias=self.use_bias, name=self.name, dtype=self.dtype.name)

    def active_weight_names(self):
        return ("kernel", "bias") if self.use_bias else ("kernel",)

    def _causal_pad(self):
        return (self.kernel_size[0] - 1) * self.dilation_rate[0] if self.padding == "causal" else 0

    def _check_channels(self, c):
        if c is not None and c % self.groups:
            raise LayerError(f"input channels must be divisible by groups. Received: channels={c}, "
                             f"groups={self.groups}")

    def output_shape_2d(self, shape_2d):
        n, _, length, c = shape_2d
        self._check_channels(c)
        length = None if length is None else length + self._causal_pad()
        return self._conv.compute_output_shape((n, 1, length, c))

    def build(self, input_shape, rng=None):
        shape = tuple(input_shape)
        self.compute_output_shape(shape)
        (k,), cg = self.kernel_size, shape[-1] // self.groups
        self.weights = {}
        self.new_weight(rng, "kernel", (1, k, cg, self.filters), k * cg)
        if self.use_bias:
            self.new_weight(rng, "bias", (self.filters,), 1)
        self.built = True

    def _bind(self):
        """Point the inner Conv2D at this layer's arrays (views, so in-place changes carry over)."""
        self.check_built()
        conv = self._conv
        conv.dtype = self.dtype
        conv.weights = {name: self.weight_2d(name) for name in self.active_weight_names()}
        return conv

    def forward(self, x, training=False):
        x = self.cast(x)
        self.check_rank(x.shape)
        conv = self._bind()
        c = self.weights["kernel"].shape[1] * self.groups
        if x.shape[-1] != c:
            raise LayerError(f"Conv1D '{self.name}' was built for {c} input channels. "
                             f"Received: input shape {x.shape}")
        left = self._causal_pad()
        if left:
            x = np.concatenate([np.zeros((x.shape[0], left, x.shape[2]), dtype=x.dtype), x], axis=1)
        return conv.forward(x[:, None])[:, 0]

    def backward(self, dout):
        conv = self._conv
        dx = conv.backward(self.cast(dout)[:, None])[:, 0]
        for name in self.active_weight_names():
            self.set_grad(name, conv.grads[name])
        return np.ascontiguousarray(dx[:, self._causal_pad():])
