"""MultiHeadAttention, as keras/src/layers/attention/multi_head_attention.py computes it (Keras 3).

Projections (EinsumDense sublayers, built in this order, which is Keras's weight order):

    query -> q   (B, <T dims>, N, key_dim)     "abc,cde->abde" for a rank-3 query
    key   -> k   (B, <S dims>, N, key_dim)
    query -> g   (B, <T dims>, N, value_dim)   sigmoid gate, only with use_gate
    value -> v   (B, <S dims>, N, value_dim)
    attention output (B, <T dims>, N, value_dim) [* g] -> (B, <T dims>, *output_shape)  "abcd,cde->abe"

Weights: query/kernel (dim_q, N, key_dim), query/bias (N, key_dim), key/kernel, key/bias,
[gate/kernel, gate/bias,] value/kernel (dim_v, N, value_dim), value/bias, attention_output/kernel
(N, value_dim, out), attention_output/bias (out,); no biases with use_bias=False.

Attention over ``attention_axes`` (of the projected tensors; default: every axis between the
batch and the heads): ``scores = einsum(k, q / sqrt(key_dim))`` of shape
(<batch-like axes incl. heads>, <T attn dims>, <S attn dims>), a softmax over the S attention
dims, then ``out = einsum(probs, v)``. 1/sqrt(key_dim) is rounded to float32 even in float64
(Keras casts the Python float through a float32 tensor).

The mask (True = may attend) is the AND of ``attention_mask``, the query mask ``[..., None]``, the
value and key masks ``[..., None, :]``, the causal mask ``(1, T, S)``: j <= i, and the sliding
window ``|i - j| < sliding_window``; it gains axes at ``-2 * len(attention_axes) - 1`` until it
has the scores' rank. Keras 3 computes the softmax two ways, and they differ on fully masked rows
(a padded query position attends to nothing):

- explicit (dropout > 0 even at inference, return_attention_scores, or inputs of rank > 3):
  ``where(mask, scores, -1e9)``, softmax, then ``where(mask, probs, 0)``: such a row gives 0;
- fused (``ops.dot_product_attention``, every other case): ``where(mask, logits, -0.7 * 3.38953e38)``
  and softmax: such a row is uniform, the mean of the values.

Masks arriving with the inputs are the ``query_mask``, ``value_mask`` and ``key_mask`` arguments
(the model graph hands them over); the output carries the query mask. Dropout is the identity at
inference; training with dropout > 0 is refused.
"""

import math
import string

import numpy as np

from .activation_functions import softmax, softmax_backward
from .attention import _check_rate, causal_mask
from .base import LayerError
from .einsum_dense import EinsumDense
from .wrappers import _Wrapper

_FUSED_FILL = 3.38953e38 * -0.7   # keras/src/backend/tensorflow/nn.py::_get_large_negative


class MultiHeadAttention(_Wrapper):
    """Multi-head dot-product attention (see the module docstring)."""

    supports_masking = True
    tensor_call_args = ("query", "value", "key")   # the inputs backward returns gradients for
    clears_input_masks = True   # Keras's call() sets the masks of query, value and key to None

    def __init__(self, num_heads, key_dim, value_dim=None, dropout=0.0, use_bias=True, output_shape=None,
                 attention_axes=None, sliding_window=None, flash_attention=None, use_gate=False, seed=None,
                 **kwargs):
        super().__init__(**kwargs)
        for arg, value in (("num_heads", num_heads), ("key_dim", key_dim), ("value_dim", value_dim)):
            if (value is not None or arg != "value_dim") and (
                    isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0):
                raise LayerError(f"Received an invalid value for argument `{arg}`, expected a positive integer. "
                                 f"Received: {arg}={value!r}")
        if flash_attention:
            raise LayerError(f"flash attention is not supported (Keras's TensorFlow backend refuses it too). "
                             f"Received: flash_attention={flash_attention!r}")
        if sliding_window is not None and (isinstance(sliding_window, bool) or not isinstance(
                sliding_window, (int, np.integer)) or sliding_window <= 0):
            raise LayerError(f"`sliding_window` must be `None` or a positive integer. "
                             f"Received: sliding_window={sliding_window!r}")
        if isinstance(attention_axes, (int, np.integer)):
            attention_axes = (int(attention_axes),)
        elif attention_axes is not None and not isinstance(attention_axes, (list, tuple)):
            raise LayerError(f"`attention_axes` must be an int, list, or tuple. Received: "
                             f"attention_axes={attention_axes!r}")
        if isinstance(output_shape, (int, np.integer)):
            output_shape = (int(output_shape),)
        self.num_heads, self.key_dim = int(num_heads), int(key_dim)
        self.value_dim = int(value_dim) if value_dim else self.key_dim
        self.dropout = _check_rate(dropout)
        self.use_bias, self.use_gate = bool(use_bias), bool(use_gate)
        self.output_shape = tuple(output_shape) if output_shape else None
        self.attention_axes = None if attention_axes is None else tuple(int(a) for a in attention_axes)
        self.sliding_window = sliding_window
        self._dense = {}

    # ---- sublayers and shapes ---------------------------------------------------------------
    def _parts(self):
        return [(f"{name}/", layer) for name, layer in self._dense.items()]

    def v3_parts(self):
        """Where a .keras archive keeps each projection's variables (Keras's attribute names)."""
        paths = {"query": "query_dense", "key": "key_dense", "gate": "_gate_dense", "value": "value_dense",
                 "attention_output": "output_dense"}
        return [(paths[name], layer) for name, layer in self._dense.items()]

    @staticmethod
    def _shapes(input_shape):
        if isinstance(input_shape, dict):
            q, v = input_shape["query_shape"], input_shape["value_shape"]
            k = input_shape.get("key_shape") or v
        elif isinstance(input_shape, (list, tuple)) and input_shape and isinstance(input_shape[0], (list, tuple)):
            q, v = input_shape[0], input_shape[1] if len(input_shape) > 1 else input_shape[0]
            k = input_shape[2] if len(input_shape) > 2 and input_shape[2] is not None else v
        else:
            raise LayerError("MultiHeadAttention needs the shapes of its query and value. "
                             f"Received: input_shape={input_shape}")
        q, v, k = tuple(q), tuple(v), tuple(k)
        if v[1:-1] != k[1:-1]:
            raise LayerError("All dimensions of `value` and `key`, except the last one, must be equal. "
                             f"Received: value_shape={v} and key_shape={k}")
        return q, v, k

    def build(self, input_shape, rng=None):
        q, v, k = self._shapes(input_shape)
        n, hk, hv = self.num_heads, self.key_dim, self.value_dim

        def proj(input_rank, bound, out_dims, name, activation=None):
            free = input_rank - bound   # axes that pass through (batch, sequence)
            eq, bias_axes = _proj_equation(free, bound, len(out_dims))
            return EinsumDense(eq, output_shape=_partial_shape(free + len(out_dims), out_dims),
                               bias_axes=bias_axes if self.use_bias else None, activation=activation,
                               name=name, dtype=self.dtype.name)

        dense = {"query": (proj(len(q), 1, (n, hk), "query"), q), "key": (proj(len(k), 1, (n, hk), "key"), k)}
        if self.use_gate:
            dense["gate"] = (proj(len(q), 1, (n, hv), "gate", "sigmoid"), q)
        dense["value"] = (proj(len(v), 1, (n, hv), "value"), v)
        out_dims = self.output_shape or (q[-1],)
        dense["attention_output"] = (proj(len(q) + 1, 2, out_dims, "attention_output"), (*q[:-1], n, hv))
        for layer, shape in dense.values():
            layer.build(shape, rng)
        self._dense = {name: layer for name, (layer, _) in dense.items()}
        rank = len(q) + 1   # of the projected tensors
        axes = tuple(range(1, rank - 2)) if self.attention_axes is None else tuple(
            a if a >= 0 else rank - 1 + a for a in self.attention_axes)
        if not axes or any(not 0 < a < rank - 2 for a in axes) or len(set(axes)) != len(axes):
            raise LayerError(f"attention_axes must name distinct axes between the batch and the feature axis of the "
                             f"query (rank {len(q)}). Received: attention_axes={self.attention_axes}")
        self._axes, self._rank = axes, rank
        self._specs = _attention_specs(rank, axes)
        self.built = True

    def to_dtype(self, dtype):
        if self._dense:
            return super().to_dtype(dtype)
        self.dtype = np.dtype(dtype)
        return self

    def compute_output_shape(self, input_shape, return_attention_scores=False):
        q, v, k = self._shapes(input_shape)
        out = (*q[:-1], *self.output_shape) if self.output_shape else q
        if not return_attention_scores:
            return out
        axes = self._axes if self.built else tuple(range(1, len(q) - 1))
        proj_q, proj_k = (*q[:-1], self.num_heads), (*k[:-1], self.num_heads)
        batch_like = [proj_q[i] for i in range(len(proj_q)) if i not in axes]
        return [out, (*batch_like, *(proj_q[a] for a in axes), *(proj_k[a] for a in axes))]

    # ---- computation --------------------------------------------------------------------------
    def forward(self, query, value, key=None, query_mask=None, value_mask=None, key_mask=None, attention_mask=None,
                return_attention_scores=False, training=False, use_causal_mask=False):
        if training and self.dropout > 0:
            raise LayerError(f"MultiHeadAttention with dropout={self.dropout} cannot run in training mode: the "
                             "engine draws no random numbers. Use dropout=0 or training=False")
        query, value = self.cast(query), self.cast(value)
        has_key = key is not None
        key = self.cast(key) if has_key else value
        if not self.built:
            self.build([query.shape, value.shape, key.shape])
        mask = self._attention_mask(query, value, query_mask, value_mask, key_mask, attention_mask, use_causal_mask)
        d = self._dense
        gate = d["gate"].forward(query) if self.use_gate else None
        q, k, v = d["query"].forward(query), d["key"].forward(key), d["value"].forward(value)
        k_spec, q_spec, s_spec = self._specs
        fused = not (self.dropout > 0 or return_attention_scores or q.ndim != 4)
        # Keras casts the Python float 1/sqrt(key_dim) through a float32 tensor, also in float64.
        inv = self.dtype.type(np.float32(1.0 / math.sqrt(float(self.key_dim))))
        if fused:   # ops.dot_product_attention: logits scaled after the product
            scores = np.einsum(f"{k_spec},{q_spec}->{s_spec}", k, q) * inv
        else:       # explicit path: the query is scaled first
            scores = np.einsum(f"{k_spec},{q_spec}->{s_spec}", k, q * inv)
        mask = None if mask is None else self._expand_mask(mask, scores.ndim)
        probs = _masked_softmax(scores, mask, len(self._axes), fused).astype(self.dtype, copy=False)
        heads = np.einsum(f"{s_spec},{k_spec}->{q_spec}", probs, v)
        mixed = heads * gate if self.use_gate else heads
        out = d["attention_output"].forward(mixed)
        self._cache = (q, k, v, probs, mask, heads, gate, fused, inv, has_key, bool(return_attention_scores))
        return [out, probs] if return_attention_scores else out

    def backward(self, dout):
        q, k, v, probs, mask, heads, gate, fused, inv, has_key, with_scores = self._cache
        d_out, d_probs_extra = (dout[0], dout[1]) if with_scores else (dout, None)
        k_spec, q_spec, s_spec = self._specs
        d = self._dense
        d_mixed = d["attention_output"].backward(self.cast(d_out))
        dx_query = 0
        if self.use_gate:
            dx_query = d["gate"].backward(d_mixed * heads)
            d_mixed = d_mixed * gate
        d_probs = np.einsum(f"{q_spec},{k_spec}->{s_spec}", d_mixed, v)
        dv = np.einsum(f"{s_spec},{q_spec}->{k_spec}", probs, d_mixed)
        if d_probs_extra is not None:
            d_probs = d_probs + self.cast(d_probs_extra)
        d_scores = _masked_softmax_backward(probs, d_probs, mask, len(self._axes), fused)
        dq = np.einsum(f"{s_spec},{k_spec}->{q_spec}", d_scores, k) * inv
        dk = np.einsum(f"{s_spec},{q_spec}->{k_spec}", d_scores, q) * inv
        dx_query = dx_query + d["query"].backward(dq.astype(self.dtype))
        dx_key = d["key"].backward(dk.astype(self.dtype))
        dx_value = d["value"].backward(dv.astype(self.dtype))
        if has_key:
            return [dx_query, dx_value, dx_key]
        return [dx_query, dx_value + dx_key]

    def _attention_mask(self, query, value, query_mask, value_mask, key_mask, attention_mask, use_causal_mask):
        """Keras's ``_compute_attention_mask``: every given mask ANDed, or None."""
        parts = []
        if query_mask is not None:
            parts.append(np.asarray(query_mask, dtype=bool)[..., None])
        for m in (value_mask, key_mask):
            if m is not None:
                parts.append(np.expand_dims(np.asarray(m, dtype=bool), -2))
        t, s = query.shape[1], value.shape[1]
        if use_causal_mask:
            parts.append(causal_mask(t, s))
        if self.sliding_window is not None:
            parts.append((np.abs(np.arange(t)[:, None] - np.arange(s)[None, :]) < self.sliding_window)[None])
        if attention_mask is not None:
            parts.insert(0, np.asarray(attention_mask) != 0)
        if not parts:
            return None
        out = parts[0]
        for p in parts[1:]:
            out = out & p
        return out

    def _expand_mask(self, mask, rank):
        axis = -2 * len(self._axes) - 1
        while mask.ndim < rank:
            mask = np.expand_dims(mask, axis)
        return mask


def _masked_softmax(scores, mask, n_axes, fused):
    """Softmax over the last ``n_axes`` axes, masked as the fused or the explicit Keras path does."""
    if mask is not None:
        fill = scores.dtype.type(_FUSED_FILL if fused else -1e9)
        scores = np.where(mask, scores, fill)
    flat = scores.reshape(*scores.shape[:scores.ndim - n_axes], -1)
    probs = softmax(flat, axis=-1).reshape(scores.shape)
    if mask is not None and not fused:   # Keras's Softmax zeroes masked entries (fully masked rows -> 0)
        probs = np.where(mask, probs, 0)
    return probs


def _masked_softmax_backward(probs, d_probs, mask, n_axes, fused):
    """Gradient of ``_masked_softmax`` w.r.t. the scores; masked entries were constants."""
    if mask is not None and not fused:
        d_probs = np.where(mask, d_probs, 0)
    shape = probs.shape
    flat_shape = (*shape[:len(shape) - n_axes], -1)
    d_scores = softmax_backward(probs.reshape(flat_shape), d_probs.reshape(flat_shape)).reshape(shape)
    return d_scores if mask is None else np.where(mask, d_scores, 0)


def _proj_equation(free_dims, bound_dims, output_dims):
    """The projection einsum Keras's MultiHeadAttention builds: ``(free+bound),(bound+out)->(free+out)``."""
    letters = string.ascii_lowercase
    free = letters[:free_dims]
    bound = letters[free_dims:free_dims + bound_dims]
    out = letters[free_dims + bound_dims:free_dims + bound_dims + output_dims]
    return f"{free}{bound},{bound}{out}->{free}{out}", out


def _partial_shape(output_rank, known_last_dims):
    """EinsumDense ``output_shape`` (batch excluded): None for the free axes, then the known ones."""
    return [None] * (output_rank - 1 - len(known_last_dims)) + list(known_last_dims)


def _attention_specs(rank, axes):
    """Einsum specs ``(key, query, scores)`` for projected tensors of ``rank`` attending over ``axes``."""
    letters = string.ascii_lowercase
    query = letters[:rank]
    batch_like = [i for i in range(rank - 1) if i not in axes]
    fresh = iter(letters[rank:])
    key = "".join(next(fresh) if i in axes else query[i] for i in range(rank))
    scores = "".join([query[i] for i in batch_like] + [query[a] for a in axes] + [key[a] for a in axes])
    return key, query, scores
