"""Embedding: a lookup table from integer ids to dense vectors."""

import numpy as np

from .base import Layer, LayerError


class Embedding(Layer):
    """``out[..., :] = embeddings[ids[...]]``.

    Input: integer ids of any shape ``S``; output ``S + (output_dim,)``. Weights: embeddings
    ``(input_dim, output_dim)``; parameters ``input_dim * output_dim``.

    Ids follow Keras 3 (``ops.take``): non-integer ids are cast to int32 (truncation toward zero),
    and ids in ``[-input_dim, input_dim)`` are valid, negative ones counting from the end; anything
    else raises ``LayerError``. (tf_keras refuses negative ids outright.)

    With ``mask_zero=True`` the mask handed on is ``ids != 0``. The ids get no gradient:
    ``backward`` returns None and fills ``grads['embeddings']`` (rows of repeated ids accumulate).
    """

    weight_names = ("embeddings",)

    def __init__(self, input_dim, output_dim, mask_zero=False, input_length=None, lora_rank=None,
                 lora_alpha=None, **kwargs):
        super().__init__(**kwargs)
        for key, value in (("input_dim", input_dim), ("output_dim", output_dim)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise LayerError(f"{key} must be a positive integer. Received: {key}={value!r}")
        if lora_rank:
            raise LayerError(f"LoRA-enabled Embedding is not supported. Received: lora_rank={lora_rank!r}")
        self.input_dim = int(input_dim)
        self.output_dim = int(output_dim)
        self.mask_zero = bool(mask_zero)
        self.input_length = input_length  # tf_keras config key; it changes nothing
        self._ids = None

    def expected_weight_shape(self, name):
        return (self.input_dim, self.output_dim)

    def build(self, input_shape=None, rng=None):
        shape = (self.input_dim, self.output_dim)
        w = np.zeros(shape) if rng is None else rng.normal(0.0, 0.5, size=shape)
        self.weights = {"embeddings": w.astype(self.dtype)}
        self.built = True

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.output_dim)

    def compute_mask(self, inputs, mask=None):
        if not self.mask_zero:
            return None
        return np.asarray(inputs) != 0

    def _check_ids(self, inputs):
        ids = np.asarray(inputs)
        if ids.dtype.kind not in "iu":
            ids = ids.astype(np.int32)
        ids = ids.astype(np.int64)
        bad = (ids < -self.input_dim) | (ids >= self.input_dim)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise LayerError(
                f"Embedding '{self.name}' got an id outside [-{self.input_dim}, {self.input_dim}) "
                f"(input_dim={self.input_dim}): ids{list(where)} = {int(ids[where])}"
            )
        return np.where(ids < 0, ids + self.input_dim, ids)

    def forward(self, x, training=False):
        self._ids = self._check_ids(x)
        return self.weights["embeddings"][self._ids].astype(self.dtype, copy=False)

    def backward(self, dout):
        if self._ids is None:
            raise LayerError("Embedding.backward called before forward")
        grad = np.zeros_like(self.weights["embeddings"])
        np.add.at(grad, self._ids.reshape(-1), self.cast(dout).reshape(-1, self.output_dim))
        self.grads = {"embeddings": grad}
        return None
