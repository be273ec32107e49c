"""Sequence plumbing: Masking (makes a time mask) and RepeatVector (tiles a vector over time)."""

import numpy as np

from .base import Layer, LayerError


class Masking(Layer):
    """Marks time steps whose features all equal ``mask_value`` as padding.

    ``keep[b, t] = any(x[b, t, :] != mask_value)``; ``out = where(keep, x, 0)``. Input and output
    (batch, timesteps, ..., features), same shape; no weights. The mask handed on is ``keep``
    (batch, timesteps, ...), reduced over the last axis only, as Keras does.
    """

    supports_masking = True

    def __init__(self, mask_value=0.0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(mask_value, bool) or not isinstance(mask_value, (int, float, np.number)):
            raise LayerError(f"mask_value must be a number. Received: mask_value={mask_value!r}")
        self.mask_value = mask_value
        self._keep = None

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def compute_mask(self, inputs, mask=None):
        return np.any(self.cast(inputs) != self.mask_value, axis=-1)

    def forward(self, x, training=False):
        x = self.cast(x)
        self._keep = np.any(x != self.mask_value, axis=-1, keepdims=True)
        return np.where(self._keep, x, 0.0).astype(self.dtype)

    def backward(self, dout):
        return np.where(self._keep, self.cast(dout), 0.0).astype(self.dtype)


class RepeatVector(Layer):
    """``out[:, k, :] = x`` for k < n. Input (batch, features) -> output (batch, n, features); no weights.

    Keras's RepeatVector does not support masking, so any incoming mask stops here.
    """

    def __init__(self, n, **kwargs):
        super().__init__(**kwargs)
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise LayerError(f"n must be a positive integer. Received: n={n!r}")
        self.n = int(n)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 2:
            raise LayerError(f"RepeatVector expects input of shape (batch, features). "
                             f"Received: input_shape={tuple(input_shape)}")
        return (input_shape[0], self.n, input_shape[1])

    def forward(self, x, training=False):
        x = self.cast(x)
        self.compute_output_shape(x.shape)
        return np.repeat(x[:, None, :], self.n, axis=1)

    def backward(self, dout):
        return self.cast(dout).sum(axis=1)
