"""Attention layers over ``[query, value]`` or ``[query, value, key]``: Attention (Luong) and
AdditiveAttention (Bahdanau), as keras/src/layers/attention/attention.py computes them.

Shapes: query ``(batch, Tq, dim)``, value ``(batch, Tv, dim)``, key ``(batch, Tv, dim)`` (the
value when absent); output ``(batch, Tq, dim)``; scores ``(batch, Tq, Tv)``. Extra leading axes
broadcast as in a batched matmul.

    scores = score(query, key)                           # (batch, Tq, Tv), see each class
    scores = where(allowed, scores, scores - BIG)        # BIG = 1e9 (65504 in float16)
    weights = softmax(scores, axis=-1)
    output = weights @ value, then 0 where query_mask is False

``allowed`` is ``value_mask[:, None, :]`` AND (with ``use_causal_mask``) ``j <= i``. Subtracting
BIG (rather than replacing the score) is Keras's choice: in float32 a fully masked row then loses
its scores to rounding and becomes uniform, while in float64 it keeps ``softmax(scores)``.
``mask=[query_mask, value_mask]`` (a third entry, for the key, is accepted and ignored); the
mask handed on is the query mask. Dropout is the identity at inference; in training mode with
``dropout > 0`` it is refused (the engine draws no random numbers).
"""

import numpy as np

from .activation_functions import softmax, softmax_backward
from .base import Layer, LayerError, check_choice


def causal_mask(tq, tv):
    """``(1, Tq, Tv)``: query i may see key j when ``j <= i`` (Keras's cumsum comparison)."""
    return (np.arange(tq)[:, None] >= np.arange(tv)[None, :])[None]


class Attention(Layer):
    """Dot-product (Luong) attention; ``score_mode='concat'`` uses a tanh of the sum instead.

    - ``'dot'``: ``scores = (query @ key^T) * scale``
    - ``'concat'``: ``scores = concat_score_weight * sum_d tanh(scale * (query_i + key_j))``

    ``scale`` is 1 unless ``use_scale``. Weights: scale ``()`` (when ``use_scale``), then
    concat_score_weight ``()`` (when ``score_mode='concat'``).
    """

    weight_names = ("scale", "concat_score_weight")
    supports_masking = True
    consumes_mask = True

    def __init__(self, use_scale=False, score_mode="dot", dropout=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.use_scale = bool(use_scale)
        self.score_mode = check_choice("score_mode", score_mode, ("dot", "concat"))
        self.dropout = _check_rate(dropout)

    def active_weight_names(self):
        return tuple(n for n, on in zip(self.weight_names, (self.use_scale, self.score_mode == "concat")) if on)

    def build(self, input_shape, rng=None):
        _check_inputs(self, input_shape)
        self.weights = {n: (np.ones((), self.dtype) if rng is None else
                            np.asarray(rng.uniform(0.5, 1.5), self.dtype)) for n in self.active_weight_names()}
        self.built = True

    def expected_weight_shape(self, name):
        return ()

    def compute_output_shape(self, input_shape, return_attention_scores=False):
        _check_inputs(self, input_shape)
        out = (*tuple(input_shape[0])[:-1], tuple(input_shape[1])[-1])
        key = tuple(input_shape[2] if len(input_shape) > 2 else input_shape[1])
        return [out, (*out[:-1], key[-2])] if return_attention_scores else out

    def compute_mask(self, inputs, mask=None):
        if mask is None or not isinstance(mask, (list, tuple)) or mask[0] is None:
            return None
        return np.asarray(mask[0], dtype=bool)

    # ---- scores (overridden by AdditiveAttention) -----------------------------------------
    def _scores(self, q, k):
        scale = self.weights.get("scale")
        if self.score_mode == "dot":
            qk = q @ np.swapaxes(k, -1, -2)
            self._score_cache = (q, k, qk)
            return qk if scale is None else qk * scale
        s = q[..., :, None, :] + k[..., None, :, :]                # (batch, Tq, Tv, dim)
        t = np.tanh(s if scale is None else scale * s)
        self._score_cache = (s, t)
        return self.weights["concat_score_weight"] * t.sum(axis=-1)

    def _scores_backward(self, d_scores):
        scale = self.weights.get("scale")
        if self.score_mode == "dot":
            q, k, qk = self._score_cache
            if scale is not None:
                self.grads["scale"] = np.sum(d_scores * qk)
                d_scores = d_scores * scale
            return d_scores @ k, np.swapaxes(d_scores, -1, -2) @ q
        s, t = self._score_cache
        c = self.weights["concat_score_weight"]
        self.grads["concat_score_weight"] = np.sum(d_scores * t.sum(axis=-1))
        du = (c * d_scores)[..., None] * (1.0 - t * t)             # d/d(scale * s)
        if scale is not None:
            self.grads["scale"] = np.sum(du * s)
            du = du * scale
        return du.sum(axis=-2), du.sum(axis=-3)

    # ---- computation ----------------------------------------------------------------------
    def forward(self, inputs, mask=None, training=False, return_attention_scores=False, use_causal_mask=False):
        _check_inputs(self, inputs)
        _check_mask(self, mask)
        if training and self.dropout > 0:
            raise LayerError(f"{type(self).__name__} with dropout={self.dropout} cannot run in training mode: "
                             "the engine draws no random numbers. Use dropout=0 or training=False")
        q, v = self.cast(inputs[0]), self.cast(inputs[1])
        k = self.cast(inputs[2]) if len(inputs) > 2 else v
        q_mask = None if not mask or mask[0] is None else np.asarray(mask[0], dtype=bool)
        v_mask = None if not mask or mask[1] is None else np.asarray(mask[1], dtype=bool)
        scores = self._scores(q, k)
        allowed = None if v_mask is None else v_mask[..., None, :]
        if use_causal_mask:
            causal = causal_mask(scores.shape[-2], scores.shape[-1])
            allowed = causal if allowed is None else allowed & causal
        if allowed is not None:
            big = 65504.0 if self.dtype == np.float16 else 1.0e9
            scores = np.where(allowed, scores, scores - self.dtype.type(big))
        weights = softmax(scores, axis=-1).astype(self.dtype, copy=False)
        out = weights @ v
        if q_mask is not None:
            out = np.where(q_mask[..., None], out, 0).astype(self.dtype)
        self._cache = (weights, v, q_mask, len(inputs), bool(return_attention_scores))
        return [out, weights] if return_attention_scores else out

    def backward(self, dout):
        weights, v, q_mask, n_inputs, with_scores = self._cache
        d_out, d_weights = (dout[0], dout[1]) if with_scores else (dout, None)
        d_out = self.cast(d_out)
        if q_mask is not None:
            d_out = np.where(q_mask[..., None], d_out, 0)
        dv = np.swapaxes(weights, -1, -2) @ d_out
        dw = d_out @ np.swapaxes(v, -1, -2)
        if d_weights is not None:
            dw = dw + self.cast(d_weights)
        # The where(...) that masks scores passes the gradient through both branches unchanged.
        d_scores = softmax_backward(weights, dw)
        self.grads = {}
        dq, dk = self._scores_backward(d_scores)
        self.grads = {n: np.asarray(g, self.dtype) for n, g in self.grads.items()}
        dq, dk, dv = (np.asarray(g, self.dtype) for g in (dq, dk, dv))
        return [dq, dv, dk] if n_inputs > 2 else [dq, dv + dk]


class AdditiveAttention(Attention):
    """Additive (Bahdanau) attention: ``scores = sum_d scale_d * tanh(query_i + key_j)``.

    ``scale`` is 1 unless ``use_scale`` (the default here, as in Keras).
    Weights: scale ``(dim,)`` with dim the query's last axis (when ``use_scale``).
    """

    weight_names = ("scale",)

    def __init__(self, use_scale=True, dropout=0.0, score_mode="dot", **kwargs):
        # Keras's AdditiveAttention drops score_mode from its config; a stray one changes nothing.
        super().__init__(use_scale=use_scale, dropout=dropout, score_mode=score_mode, **kwargs)
        self._dim = None

    def active_weight_names(self):
        return ("scale",) if self.use_scale else ()

    def build(self, input_shape, rng=None):
        _check_inputs(self, input_shape)
        self._dim = tuple(input_shape[0])[-1]
        self.weights = {n: (np.zeros((self._dim,), self.dtype) if rng is None else
                            rng.normal(0, 0.5, self._dim).astype(self.dtype)) for n in self.active_weight_names()}
        self.built = True

    def expected_weight_shape(self, name):
        return None if self._dim is None else (self._dim,)

    def _scores(self, q, k):
        t = np.tanh(q[..., :, None, :] + k[..., None, :, :])      # (batch, Tq, Tv, dim)
        self._score_cache = t
        scale = self.weights.get("scale")
        return (t if scale is None else scale * t).sum(axis=-1)

    def _scores_backward(self, d_scores):
        t = self._score_cache
        scale = self.weights.get("scale")
        dt = d_scores[..., None] if scale is None else d_scores[..., None] * scale
        if scale is not None:
            self.grads["scale"] = np.sum(d_scores[..., None] * t, axis=tuple(range(t.ndim - 1)))
        du = dt * (1.0 - t * t)
        return du.sum(axis=-2), du.sum(axis=-3)


def _check_rate(rate):
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating)) or not 0 <= rate <= 1:
        raise LayerError(f"dropout must be a float between 0 and 1. Received: dropout={rate!r}")
    return float(rate)


def _check_inputs(layer, inputs):
    name = type(layer).__name__
    if not isinstance(inputs, (list, tuple)) or (inputs and not isinstance(inputs[0], (list, tuple, np.ndarray))):
        raise LayerError(f"{name} layer must be called on a list of inputs, namely [query, value] or "
                         f"[query, value, key]. Received: inputs of type {type(inputs).__name__}.")
    if len(inputs) < 2 or len(inputs) > 3:
        raise LayerError(f"{name} layer accepts inputs list of length 2 or 3, namely [query, value] or "
                         f"[query, value, key]. Received length: {len(inputs)}.")


def _check_mask(layer, mask):
    if mask is None:
        return
    name = type(layer).__name__
    if not isinstance(mask, (list, tuple)):
        raise LayerError(f"{name} layer mask must be a list, namely [query_mask, value_mask]. "
                         f"Received: mask of type {type(mask).__name__}.")
    if len(mask) < 2 or len(mask) > 3:
        raise LayerError(f"{name} layer accepts mask list of length 2 or 3. Received length: {len(mask)}.")
