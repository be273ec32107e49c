"""Models with attention layers saved by Keras 3 (.keras, legacy .h5, weights + JSON) and loaded by
scratch.load: calls with several tensor arguments, masks from Embedding(mask_zero=True), scores as a
second output, backprop through the graph against TensorFlow's gradients."""

import numpy as np
import pytest
import tensorflow as tf

import scratch
from parity.tolerance import assert_close
from scratch.errors import UnsupportedLayerError
from tests.scratch.test_loader import check_model, randomize, save_all, token_ids

keras = pytest.importorskip("keras")
layers = keras.layers
pytestmark = pytest.mark.filterwarnings("ignore:Layer 'einsum_dense", "ignore:You are saving your model")


def masked_text_model(vocab=10, steps=6):
    """Embedding masks reach MHA (query/value/key masks), Attention and AdditiveAttention (mask=[q, v]);
    MHA deletes the masks of its inputs when it runs, so later users of ``e`` see none."""
    ids = keras.Input((steps,), dtype="int32", name="ids")
    e = layers.Embedding(vocab, 8, mask_zero=True)(ids)
    m = layers.MultiHeadAttention(2, 3, value_dim=4, name="self_mha")(e, e, use_causal_mask=True)
    m2, scores = layers.MultiHeadAttention(2, 3, name="cross_mha")(m, e, key=e, return_attention_scores=True)
    a = layers.Attention(use_scale=True, name="luong")([e, m2])
    ad, weights = layers.AdditiveAttention(name="bahdanau")([a, e, m], return_attention_scores=True)
    d = layers.Dot(axes=(2, 2), normalize=True, name="cosine")([ad, e])
    ed = layers.EinsumDense("abc,cd->abd", output_shape=(None, 5), bias_axes="d", activation="tanh")(ad)
    w = layers.Dense(3, name="on_weights")(weights)   # a layer fed the scores output
    return keras.Model(ids, [m, scores, a, ad, d, ed, w], name="masked_attention")


def test_masked_attention_model_round_trips(tmp_path):
    model = randomize(masked_text_model())
    x = token_ids(4, 6, 10)
    x[1, 2:] = 0       # a padded sequence
    x[2, :] = 0        # an all-padding sequence: every query row fully masked
    check_model(model, x, save_all(model, tmp_path, "masked_attention"), label="masked attention")


def float_attention_model():
    """Two float inputs, an explicit attention_mask input, a custom attention_axes MHA over 2 axes."""
    q = keras.Input((4, 6), name="q")
    v = keras.Input((5, 3), name="v")
    am = keras.Input((4, 5), name="am")
    h = layers.MultiHeadAttention(3, 2, value_dim=3, output_shape=4, name="mha")(q, v, attention_mask=am)
    g = layers.MultiHeadAttention(2, 2, use_gate=True, dropout=0.2, name="gated")(h, q)
    grid = layers.Reshape((2, 2, 6))(q)
    axes2 = layers.MultiHeadAttention(1, 2, attention_axes=(1, 2), name="axes2")(grid, grid)
    key = layers.EinsumDense("abc,cd->abd", output_shape=(None, 4), bias_axes="d", name="key_proj")(v)
    out = layers.Attention(score_mode="concat", name="concat")([g, v, key])
    return keras.Model([q, v, am], [h, out, axes2], name="float_attention")


def float_inputs(rng, n=3):
    am = (rng.random((n, 4, 5)) < 0.7).astype("float32")
    am[:, :, 0] = 1
    return [rng.normal(size=(n, 4, 6)).astype("float32"), rng.normal(size=(n, 5, 3)).astype("float32"), am]


def test_float_attention_model_round_trips(tmp_path):
    model = randomize(float_attention_model())
    check_model(model, float_inputs(np.random.default_rng(1)), save_all(model, tmp_path, "float_attention"),
                label="float attention")


def test_backward_through_a_loaded_graph_matches_tensorflow(tmp_path):
    """dx for every float input and every weight gradient, routed through MHA's value/key arguments."""
    model = randomize(float_attention_model(), seed=2)
    path = tmp_path / "float_attention.keras"
    model.save(path)
    rng = np.random.default_rng(3)
    xs = float_inputs(rng, n=2)
    douts = [rng.normal(size=o.shape).astype("float32") for o in model.predict(xs, verbose=0)]
    tensors = [tf.constant(x) for x in xs]
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(tensors)
        outs = model(tensors)
        loss = sum(tf.reduce_sum(o * d) for o, d in zip(outs, douts))
    dx_k = tape.gradient(loss, tensors)
    dw_k = tape.gradient(loss, model.trainable_weights)
    smodel = scratch.load(path)
    smodel.forward(xs)
    dx_m = smodel.backward(douts)
    for i in range(2):   # the attention_mask input gets Keras's gradient of 0 through a bool cast
        assert_close(dx_m[i], np.asarray(dx_k[i]), label=f"dx{i}", reduction=64)
    grads = smodel.grads
    for w, g in zip(model.trainable_weights, dw_k):
        assert_close(grads[w.path], np.asarray(g), label=f"d{w.path}", reduction=64)


def test_tf_keras_multi_head_attention_is_refused(tmp_path):
    """tf_keras lists MHA's value and key as node kwargs and masks with an additive -1e9 (no fused
    path): a different computation, refused by name rather than run wrongly."""
    tfk = pytest.importorskip("tf_keras")
    q = tfk.Input((3, 4))
    model = tfk.Model(q, tfk.layers.MultiHeadAttention(2, 2, name="mha")(q, q))
    path = tmp_path / "tfk_mha.h5"
    model.save(path)
    with pytest.raises(UnsupportedLayerError, match=r"'mha' \(MultiHeadAttention\).*tf_keras"):
        scratch.load(path)


def test_tf_keras_attention_dot_einsum_h5(tmp_path):
    """tf_keras writes Attention, AdditiveAttention, Dot and EinsumDense as Keras 3 reads them:
    same weights, same -1e9 masking (subtracted), query masks zeroing the output."""
    tfk = pytest.importorskip("tf_keras")
    lay = tfk.layers
    ids = tfk.Input((5,), dtype="int32")
    e = lay.Embedding(9, 4, mask_zero=True)(ids)
    a = lay.Attention(use_scale=True, score_mode="concat")([e, e])
    b = lay.AdditiveAttention()([a, e], use_causal_mask=True)
    d = lay.Dot(axes=2, normalize=True)([a, b])
    ed = lay.EinsumDense("abc,cd->abd", output_shape=(None, 3), bias_axes="d")(b)
    model = tfk.Model(ids, [a, b, d, ed])
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.5, w.shape) for w in model.get_weights()])
    x = np.array([[1, 2, 0, 0, 0], [3, 4, 5, 6, 7], [0, 0, 0, 0, 0]])
    path = tmp_path / "tfk_attention.h5"
    model.save(path)
    got = scratch.load(path).predict(x)
    for i, (g, w) in enumerate(zip(got, model.predict(x, verbose=0))):
        assert_close(g, w, label=f"tf_keras attention output {i}", reduction=16)
