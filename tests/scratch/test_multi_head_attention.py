"""scratch MultiHeadAttention against keras.layers.MultiHeadAttention (Keras 3): both softmax paths,
masks, attention_axes, gate, scores, gradients, refusals."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import example, given, settings
from hypothesis import strategies as st
from keras.src.backend import set_keras_mask   # how Keras 3 attaches a mask to an eager tensor

from parity.compare import own_reduction
from parity.tolerance import assert_close
from scratch.layers.base import LayerError
from scratch.layers.multi_head_attention import MultiHeadAttention
from tests.support import check_layer_gradients, make_mask, randomize_keras_weights

pytestmark = pytest.mark.filterwarnings("ignore:You are using a softmax over axis")

DTYPES = st.sampled_from(["float32", "float64"])
SEEDS = st.integers(0, 2**31 - 1)


@st.composite
def cases(draw):
    rank = draw(st.sampled_from([3, 3, 4]))
    b, t, s = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dims = [draw(st.integers(1, 4)) for _ in range(3)]
    extra = (draw(st.integers(1, 3)),) if rank == 4 else ()
    config = dict(num_heads=draw(st.integers(1, 3)), key_dim=draw(st.integers(1, 4)),
                  value_dim=draw(st.sampled_from([None, 1, 3])), use_bias=draw(st.booleans()),
                  output_shape=draw(st.sampled_from([None, 2, (2, 3)])), use_gate=draw(st.booleans()),
                  dropout=draw(st.sampled_from([0.0, 0.0, 0.25])))
    if rank == 4:
        config["attention_axes"] = draw(st.sampled_from([None, (1,), (2,), (1, 2), (-2,)]))
        if config["attention_axes"] in ((2,), (-2,)):
            s = t   # axis 1 is then a batch-like axis, which query and value share
    else:
        config["sliding_window"] = draw(st.sampled_from([None, None, 1, 2]))
    masked = rank == 3
    return dict(config=config, query=(b, t, *extra, dims[0]), value=(b, s, *extra, dims[1]),
                key=(b, s, *extra, dims[2]) if draw(st.booleans()) else None,
                q_mask=draw(st.sampled_from(["none", "right"])) if masked else "none",
                v_mask=draw(st.sampled_from(["none", "right", "random"])) if masked else "none",
                attention_mask=masked and draw(st.booleans()), causal=masked and draw(st.booleans()),
                scores=draw(st.booleans()))


def base_case(**kw):
    case = dict(config=dict(num_heads=2, key_dim=3), query=(2, 4, 5), value=(2, 3, 4), key=None, q_mask="none",
                v_mask="none", attention_mask=False, causal=False, scores=False)
    case.update(kw)
    return case


def make_inputs(case, dtype, rng):
    q = rng.normal(size=case["query"]).astype(dtype)
    v = rng.normal(size=case["value"]).astype(dtype)
    k = None if case["key"] is None else rng.normal(size=case["key"]).astype(dtype)
    b, t, s = q.shape[0], q.shape[1], v.shape[1]
    masks = dict(query_mask=make_mask(rng, case["q_mask"], b, t), value_mask=make_mask(rng, case["v_mask"], b, s))
    if case["attention_mask"]:
        masks["attention_mask"] = rng.random((b, t, s)) < 0.7
    return q, v, k, {n: m for n, m in masks.items() if m is not None}


def keras_call(layer, q, v, k, masks, **kwargs):
    """Keras reads the query mask off the query tensor; the other masks go in as arguments."""
    qt = tf.constant(q)
    if "query_mask" in masks:
        set_keras_mask(qt, tf.constant(masks["query_mask"]))
    rest = {n: tf.constant(m) for n, m in masks.items() if n != "query_mask"}
    return layer(qt, tf.constant(v), key=None if k is None else tf.constant(k), **rest, **kwargs)


def twin(case, dtype, rng):
    q, v, k, masks = make_inputs(case, dtype, rng)
    keras_layer = keras.layers.MultiHeadAttention(dtype=dtype, **case["config"])
    keras_call(keras_layer, q, v, k, {})   # builds it
    randomize_keras_weights(keras_layer, rng)
    mine = MultiHeadAttention(**keras_layer.get_config())
    mine.build([q.shape, v.shape] + ([] if k is None else [k.shape]))
    mine.set_weights(keras_layer.get_weights())
    return keras_layer, mine, (q, v, k, masks)


@settings(max_examples=12)
@given(case=cases(), dtype=DTYPES, seed=SEEDS)
@example(case=base_case(), dtype="float32", seed=0)
@example(case=base_case(query=(2, 1, 3), value=(2, 1, 3), causal=True), dtype="float32", seed=0)   # length 1
@example(case=base_case(query=(2, 1, 3), value=(2, 1, 3), causal=True, scores=True), dtype="float64", seed=0)
@example(case=base_case(q_mask="right", v_mask="right"), dtype="float32", seed=5)    # fused: masked rows uniform
@example(case=base_case(q_mask="right", v_mask="right", scores=True), dtype="float64", seed=5)   # explicit: 0
@example(case=base_case(config=dict(num_heads=2, key_dim=3, attention_axes=(1, 2)), query=(2, 3, 2, 4),
                        value=(2, 2, 3, 4), scores=True), dtype="float32", seed=1)    # attention over 2 axes
@example(case=base_case(config=dict(num_heads=1, key_dim=2, value_dim=5, output_shape=(2, 3))),
         dtype="float64", seed=2)                                                  # key_dim != value_dim, 1 head
@example(case=base_case(config=dict(num_heads=2, key_dim=2, use_gate=True, dropout=0.3, sliding_window=2),
                        key=(2, 3, 6), attention_mask=True, causal=True), dtype="float32", seed=3)
def test_multi_head_attention_matches_keras(case, dtype, seed):
    rng = np.random.default_rng(seed)
    keras_layer, mine, (q, v, k, masks) = twin(case, dtype, rng)
    assert mine.active_weight_names() == tuple(w.path.split("/", 1)[1] for w in keras_layer.weights)
    assert mine.count_params() == keras_layer.count_params()
    shapes = [q.shape, v.shape] + ([] if k is None else [k.shape])
    assert mine.compute_output_shape(shapes) == tuple(keras_layer.compute_output_shape(q.shape, v.shape, None
                                                                                      if k is None else k.shape))
    kwargs = dict(use_causal_mask=case["causal"], return_attention_scores=case["scores"])
    out_k = keras_call(keras_layer, q, v, k, masks, **kwargs)
    out_m = mine.forward(q, v, key=k, **masks, **kwargs)
    red = own_reduction("MultiHeadAttention", keras_layer.get_config(), shapes)
    label = f"MHA {case['config']} {shapes}"
    if case["scores"]:
        assert out_m[1].shape == mine.compute_output_shape(shapes, return_attention_scores=True)[1]
        assert_close(out_m[1], np.asarray(out_k[1]), label=label + " scores", reduction=red)
        out_m, out_k = out_m[0], out_k[0]
    assert_close(out_m, np.asarray(out_k), label=label, reduction=red)


def test_fully_masked_query_rows_differ_between_keras_paths():
    """A padded query attends to nothing: the fused path averages the values, the explicit one gives 0."""
    rng = np.random.default_rng(4)
    layer = MultiHeadAttention(num_heads=1, key_dim=2, use_bias=False)
    q, v = rng.normal(size=(1, 2, 3)), rng.normal(size=(1, 3, 3))
    layer.build([q.shape, v.shape], rng=rng)
    qm = np.array([[True, False]])
    fused = layer.forward(q, v, query_mask=qm)
    explicit, scores = layer.forward(q, v, query_mask=qm, return_attention_scores=True)
    np.testing.assert_array_equal(scores[0, 0, 1], 0)
    np.testing.assert_array_equal(explicit[0, 1], 0)   # no bias: zero heads project to zero
    assert np.abs(fused[0, 1]).max() > 1e-3
    assert_close(fused[0, 0], explicit[0, 0], label="unmasked row", reduction=8)


class _Positional:
    """Adapts MultiHeadAttention(query, value, key=...) to check_layer_gradients' list of inputs."""

    def __init__(self, layer, skip=(), **kwargs):
        self.layer, self.kwargs, self.skip = layer, kwargs, skip

    def trainable_weight_names(self):
        return [n for n in self.layer.trainable_weight_names() if n not in self.skip]

    def forward(self, xs, **_):
        return self.layer.forward(xs[0], xs[1], key=xs[2] if len(xs) > 2 else None, **self.kwargs)

    def backward(self, dout):
        return self.layer.backward(dout)

    weights = property(lambda self: self.layer.weights)
    grads = property(lambda self: self.layer.grads)


@settings(max_examples=5)
@given(case=cases(), seed=SEEDS)
@example(case=base_case(q_mask="right", v_mask="right", key=(2, 3, 2), causal=True), seed=0)
@example(case=base_case(config=dict(num_heads=2, key_dim=2, use_gate=True, output_shape=(2, 2)), scores=True,
                        attention_mask=True), seed=1)
@example(case=base_case(config=dict(num_heads=1, key_dim=2, attention_axes=(1, 2)), query=(1, 2, 2, 3),
                        value=(1, 3, 2, 2), scores=True), seed=2)
def test_multi_head_attention_gradients(case, seed):
    # Small heads and features keep the finite differences cheap.
    config = {**case["config"], "num_heads": min(case["config"]["num_heads"], 2),
              "key_dim": min(case["config"]["key_dim"], 2), "value_dim": case["config"].get("value_dim") and 2}
    case = {**case, "config": config, "query": case["query"][:-1] + (2,), "value": case["value"][:-1] + (2,)}
    rng = np.random.default_rng(seed)
    q, v, k, masks = make_inputs(case, "float64", rng)
    if "value_mask" in masks:   # a row at -1e9 is below float64 finite-difference resolution
        masks["value_mask"][:, 0] = True
    if "attention_mask" in masks:
        masks["attention_mask"][:, :, 0] = True
    xs = [q, v] + ([] if k is None else [k])
    layer = MultiHeadAttention(dtype="float64", **case["config"])
    layer.build([x.shape for x in xs], rng=rng)
    # key/bias shifts every score of a row alike, which softmax ignores: its gradient is exactly 0, and
    # finite differences would only measure their own noise. It is checked against 0 instead.
    adapter = _Positional(layer, skip=("key/bias",), **masks, use_causal_mask=case["causal"],
                          return_attention_scores=case["scores"])
    check_layer_gradients(adapter, xs, rng=rng, label=f"MHA {case['config']}")
    if layer.use_bias:
        assert np.abs(layer.grads["key/bias"]).max() < 1e-12


def test_multi_head_attention_to_dtype():
    rng = np.random.default_rng(0)
    layer = MultiHeadAttention(num_heads=2, key_dim=3)
    q, v = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 5, 4))
    layer.build([q.shape, v.shape], rng=rng)
    y32 = layer.forward(q, v)
    y64 = layer.to_dtype("float64").forward(q, v)
    assert y32.dtype == np.float32 and y64.dtype == np.float64
    assert_close(y32, y64.astype(np.float32), label="MHA to_dtype", reduction=24)


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_heads=0, key_dim=2), r"invalid value for argument `num_heads`.*Received: num_heads=0"),
    (dict(num_heads=2, key_dim=2.5), r"invalid value for argument `key_dim`.*Received: key_dim=2\.5"),
    (dict(num_heads=2, key_dim=2, value_dim=-1), r"Received: value_dim=-1"),
    (dict(num_heads=2, key_dim=2, attention_axes="time"), r"`attention_axes` must be an int, list, or tuple"),
    (dict(num_heads=2, key_dim=2, sliding_window=0), r"`sliding_window` must be `None` or a positive integer"),
    (dict(num_heads=2, key_dim=2, flash_attention=True), r"flash attention is not supported"),
    (dict(num_heads=2, key_dim=2, dropout=2.0), r"dropout must be a float between 0 and 1"),
])
def test_multi_head_attention_refuses(kwargs, match):
    with pytest.raises(LayerError, match=match):
        MultiHeadAttention(**kwargs)


def test_multi_head_attention_refuses_at_build_and_in_training():
    layer = MultiHeadAttention(num_heads=2, key_dim=2)
    with pytest.raises(LayerError, match=r"All dimensions of `value` and `key`, except the last one, must be equal"):
        layer.build([(1, 3, 4), (1, 5, 4), (1, 6, 4)])
    with pytest.raises(LayerError, match=r"attention_axes must name distinct axes"):
        MultiHeadAttention(num_heads=2, key_dim=2, attention_axes=(3,)).build([(1, 3, 4), (1, 5, 4)])
    layer = MultiHeadAttention(num_heads=2, key_dim=2, dropout=0.1)
    x = np.zeros((1, 3, 4), np.float32)
    layer.build([x.shape, x.shape])
    assert layer.forward(x, x, training=False).shape == (1, 3, 4)   # dropout is the identity at inference
    with pytest.raises(LayerError, match=r"dropout=0\.1 cannot run in training mode"):
        layer.forward(x, x, training=True)
