"""Scratch losses against Keras 3's: value and d loss / d y_pred (tf.GradientTape), float32 and float64."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import example, given, settings
from hypothesis import strategies as st
from keras.src import backend

from parity.tolerance import assert_close
from scratch import losses as L

KINDS = ("CategoricalCrossentropy", "SparseCategoricalCrossentropy", "BinaryCrossentropy", "MeanSquaredError",
         "MeanAbsoluteError", "Huber")


def make_case(kind, cfg, shape, seed, dtype, weighting, masked, ties=False):
    """(y_true, y_pred, sample_weight, mask) for a loss of ``kind`` on predictions of ``shape``."""
    rng = np.random.default_rng(seed)
    logits = cfg.get("from_logits", False)
    z = rng.normal(0, 2, size=shape)
    if kind == "CategoricalCrossentropy":
        y_pred = z if logits else np.exp(z) / np.exp(z).sum(-1, keepdims=True)
        if not logits and ties:   # probabilities at and beyond the clip: 0, 1e-7 exactly and 1
            y_pred.reshape(-1, shape[-1])[0, :] = 0.0
            y_pred.reshape(-1, shape[-1])[0, 0] = 1.0
        y_true = np.eye(shape[-1])[rng.integers(0, shape[-1], shape[:-1])]
    elif kind == "SparseCategoricalCrossentropy":
        y_pred = z if logits else np.exp(z) / np.exp(z).sum(-1, keepdims=True)
        if not logits and ties:
            y_pred.reshape(-1, shape[-1])[0, :] = 0.0
            y_pred.reshape(-1, shape[-1])[0, 0] = 1.0
        y_true = rng.integers(0, shape[-1], shape[:-1])
        if cfg.get("ignore_class") is not None:
            y_true = np.where(rng.random(y_true.shape) < 0.3, cfg["ignore_class"], y_true)
    elif kind == "BinaryCrossentropy":
        y_pred = z if logits else 1 / (1 + np.exp(-z))
        if ties:
            y_pred.reshape(-1)[:3] = [0.0, 1.0, 0.0] if not logits else [0.0, 0.0, 0.0]   # clip edges; z = 0
        y_true = (rng.random(shape) < 0.5).astype(float)
    else:
        y_pred = z
        y_true = z + rng.normal(0, 1.5, size=shape)
        if ties:   # e = 0 (MAE's kink) and |e| = delta (Huber's seam)
            y_true.reshape(-1)[0] = y_pred.reshape(-1)[0]
            y_true.reshape(-1)[1] = y_pred.reshape(-1)[1] - cfg.get("delta", 1.0)
    y_pred = y_pred.astype(dtype)
    loss_shape = shape[:-1]
    sw = None
    if weighting == "per_sample":
        # (B, 1, ..): Keras 3 aligns a (B,) weight with the values' *last* axis (its rank fix only
        # handles a size-1 axis), tf_keras with the first; scratch follows tf_keras's reading.
        sw = rng.uniform(0, 2, size=shape[:1] + (1,) * (len(loss_shape) - 1)).astype(dtype)
    elif weighting == "per_item":
        sw = rng.uniform(0, 2, size=loss_shape).astype(dtype)
    mask = rng.random(loss_shape) < 0.7 if masked else None
    return y_true, y_pred, sw, mask


def keras_value_and_grad(kind, cfg, reduction, y_true, y_pred, sw, mask, dtype):
    loss = getattr(keras.losses, kind)(**cfg, reduction=reduction, dtype=dtype)
    yp = tf.constant(y_pred)
    with tf.GradientTape() as tape:
        tape.watch(yp)
        if mask is not None:
            backend.set_keras_mask(yp, tf.constant(mask))
        value = loss(tf.constant(y_true), yp, sample_weight=None if sw is None else tf.constant(sw))
    return np.asarray(value), np.asarray(tape.gradient(value, yp))


def check_loss(kind, cfg, shape, seed, dtype, reduction, weighting, masked, ties=False):
    y_true, y_pred, sw, mask = make_case(kind, cfg, shape, seed, dtype, weighting, masked, ties)
    want_v, want_g = keras_value_and_grad(kind, cfg, reduction, y_true, y_pred, sw, mask, dtype)
    got_v, got_g = getattr(L, kind)(**cfg, reduction=reduction).value_and_grad(y_true, y_pred, sw, mask)
    label = f"{kind} {cfg} {shape} {dtype} {reduction} w={weighting} mask={masked}"
    assert_close(got_v, want_v.astype(dtype), kind="forward", label=label + " value", reduction=y_pred.size)
    assert_close(got_g, want_g, kind="backward", label=label + " grad", reduction=shape[-1])


@st.composite
def loss_cases(draw):
    kind = draw(st.sampled_from(KINDS))
    cfg = {}
    if kind in ("CategoricalCrossentropy", "SparseCategoricalCrossentropy", "BinaryCrossentropy"):
        cfg["from_logits"] = draw(st.booleans())
    if kind in ("CategoricalCrossentropy", "BinaryCrossentropy"):
        cfg["label_smoothing"] = draw(st.sampled_from([0.0, 0.1, 0.5]))
    if kind == "SparseCategoricalCrossentropy" and draw(st.booleans()):
        cfg["ignore_class"] = 0
    if kind == "Huber":
        cfg["delta"] = draw(st.sampled_from([0.5, 1.0, 2.0]))
    rank = draw(st.sampled_from([2, 3]))
    shape = tuple(draw(st.integers(1, 4)) for _ in range(rank - 1)) + (draw(st.integers(2, 6)),)
    return (kind, cfg, shape, draw(st.integers(0, 2**31 - 1)), draw(st.sampled_from(["float32", "float64"])),
            draw(st.sampled_from(["sum_over_batch_size", "sum", "none"])),
            draw(st.sampled_from([None, "per_sample", "per_item"])), draw(st.booleans()), draw(st.booleans()))


# A sequence loss over padded captions as the captioners train: (batch, steps, vocab), logits, a mask.
@example(("SparseCategoricalCrossentropy", {"from_logits": True}, (3, 5, 7), 1, "float32",
          "sum_over_batch_size", "per_item", True, False))
@example(("SparseCategoricalCrossentropy", {"from_logits": False, "ignore_class": 0}, (4, 6), 2, "float64",
          "sum_over_batch_size", None, True, True))
@example(("CategoricalCrossentropy", {"from_logits": False, "label_smoothing": 0.1}, (3, 4), 3, "float32",
          "sum", "per_sample", False, True))
@example(("BinaryCrossentropy", {"from_logits": True, "label_smoothing": 0.0}, (2, 3, 4), 4, "float64",
          "none", "per_item", False, True))
@example(("BinaryCrossentropy", {"from_logits": False, "label_smoothing": 0.2}, (3, 4), 5, "float32",
          "sum_over_batch_size", None, False, True))
@example(("MeanAbsoluteError", {}, (3, 4), 6, "float64", "sum_over_batch_size", None, False, True))
@example(("Huber", {"delta": 1.0}, (3, 4), 7, "float32", "sum", None, True, True))
@settings(max_examples=40)
@given(loss_cases())
def test_loss_matches_keras(case):
    check_loss(*case)


def test_tf_keras_masked_loss_is_the_same_rule():
    """tf_keras (the committed captioners): the compile step multiplies the mask into the sample
    weight, then the Loss redistributes it by size / count, as Keras 3."""
    import tf_keras
    from tf_keras.src.utils import losses_utils

    rng = np.random.default_rng(0)
    z = rng.normal(size=(3, 5, 7)).astype("float32")
    y = rng.integers(0, 7, (3, 5))
    sw = (rng.random((3, 5)) < 0.8).astype("float32")
    mask = rng.random((3, 5)) < 0.7
    yp = tf.constant(z)
    with tf.GradientTape() as tape:
        tape.watch(yp)
        yp._keras_mask = tf.constant(mask)
        weight = losses_utils.apply_mask(yp, tf.constant(sw), yp._keras_mask)
        value = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, yp, sample_weight=weight)
    got_v, got_g = L.SparseCategoricalCrossentropy(from_logits=True).value_and_grad(y, z, sw, mask)
    assert_close(got_v, np.asarray(value), kind="forward", label="tf_keras masked value", reduction=z.size)
    assert_close(got_g, np.asarray(tape.gradient(value, yp)), kind="backward", label="tf_keras masked grad",
                 reduction=7)


def test_all_masked_gives_zero():
    y, z = np.zeros((2, 3), int), np.zeros((2, 3, 4), np.float32)
    v, g = L.SparseCategoricalCrossentropy(from_logits=True).value_and_grad(y, z, mask=np.zeros((2, 3), bool))
    assert v == 0 and not np.any(g)


def test_errors():
    with pytest.raises(L.LossError, match="Invalid value for argument `reduction`"):
        L.MeanSquaredError(reduction="avg")
    with pytest.raises(L.LossError, match="Only axis=-1 is currently supported. Received: axis=1"):
        L.SparseCategoricalCrossentropy(axis=1)
    with pytest.raises(L.LossError, match="`axis` must be of type `int`"):
        L.CategoricalCrossentropy(axis=True)
    with pytest.raises(L.LossError, match="must have the same shape"):
        L.CategoricalCrossentropy()(np.zeros((2, 3)), np.ones((2, 4)) / 4)
    with pytest.raises(L.LossError, match="outside the valid range"):
        L.SparseCategoricalCrossentropy()(np.array([5]), np.ones((1, 3)) / 3)
    with pytest.raises(L.LossError, match="Unsupported loss: 'kl_divergence'"):
        L.get("kl_divergence")
    assert isinstance(L.get("sparse_categorical_crossentropy", from_logits=True), L.SparseCategoricalCrossentropy)
