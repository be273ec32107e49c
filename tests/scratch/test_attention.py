"""scratch Attention and AdditiveAttention against keras.layers: scores, masks, gradients, refusals."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import example, given, settings
from hypothesis import strategies as st

from parity.compare import own_reduction
from parity.tolerance import assert_close
from scratch.layers.attention import AdditiveAttention, Attention
from scratch.layers.base import LayerError
from tests.support import check_layer_gradients, make_mask, randomize_keras_weights

pytestmark = pytest.mark.filterwarnings("ignore:You are using a softmax over axis")

DTYPES = st.sampled_from(["float32", "float64"])
SEEDS = st.integers(0, 2**31 - 1)
MASKS = st.sampled_from(["none", "right", "random"])
CONFIGS = [
    (Attention, {}), (Attention, {"use_scale": True}), (Attention, {"score_mode": "concat"}),
    (Attention, {"use_scale": True, "score_mode": "concat"}), (Attention, {"dropout": 0.3}),
    (AdditiveAttention, {}), (AdditiveAttention, {"use_scale": False}),
]


@st.composite
def cases(draw):
    cls, config = draw(st.sampled_from(CONFIGS))
    b, tq, tv, dim = (draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 5)),
                      draw(st.integers(1, 4)))
    return dict(cls=cls, config=config, b=b, tq=tq, tv=tv, dim=dim, with_key=draw(st.booleans()),
                q_mask=draw(MASKS), v_mask=draw(MASKS), causal=draw(st.booleans()), scores=draw(st.booleans()))


def twin(cls, config, dtype, shapes, rng):
    k = getattr(keras.layers, cls.__name__)(dtype=dtype, **config)
    k.build(shapes)
    if k.weights:
        randomize_keras_weights(k, rng)
        k.set_weights([np.abs(w) + 0.5 for w in k.get_weights()])   # scales that keep scores O(1)
    mine = cls(**k.get_config())
    mine.build(shapes)
    mine.set_weights(k.get_weights())
    return k, mine


def inputs_and_masks(case, dtype, rng):
    b, tq, tv, dim = case["b"], case["tq"], case["tv"], case["dim"]
    xs = [rng.normal(size=(b, tq, dim)), rng.normal(size=(b, tv, dim))]
    if case["with_key"]:
        xs.append(rng.normal(size=(b, tv, dim)))
    masks = [make_mask(rng, case["q_mask"], b, tq), make_mask(rng, case["v_mask"], b, tv)]
    return [x.astype(dtype) for x in xs], (None if all(m is None for m in masks) else masks)


def base_case(**kw):
    case = dict(cls=Attention, config={}, b=2, tq=3, tv=4, dim=3, with_key=False, q_mask="none", v_mask="none",
                causal=False, scores=True)
    case.update(kw)
    return case


@given(case=cases(), dtype=DTYPES, seed=SEEDS)
@example(case=base_case(), dtype="float32", seed=0)
@example(case=base_case(tq=1, tv=1, causal=True), dtype="float32", seed=0)                 # causal, length 1
@example(case=base_case(v_mask="right", q_mask="right", causal=True, with_key=True), dtype="float64", seed=3)
@example(case=base_case(config={"use_scale": True, "score_mode": "concat"}, v_mask="random"), dtype="float32", seed=1)
@example(case=base_case(cls=AdditiveAttention, tq=5, tv=2, causal=True, v_mask="right"), dtype="float64", seed=2)
def test_attention_matches_keras(case, dtype, seed):
    rng = np.random.default_rng(seed)
    xs, masks = inputs_and_masks(case, dtype, rng)
    k, mine = twin(case["cls"], case["config"], dtype, [x.shape for x in xs], rng)
    assert mine.active_weight_names() == tuple(w.name for w in k.weights)
    assert mine.count_params() == k.count_params()
    assert mine.compute_output_shape([x.shape for x in xs]) == tuple(k.compute_output_shape([x.shape for x in xs]))
    kwargs = dict(use_causal_mask=case["causal"], return_attention_scores=case["scores"])
    out_k = k([tf.constant(x) for x in xs], mask=masks, **kwargs)
    out_m = mine.forward(xs, mask=masks, **kwargs)
    red = own_reduction(case["cls"].__name__, k.get_config(), [x.shape for x in xs])
    label = f"{case['cls'].__name__} {case['config']} {[x.shape for x in xs]}"
    if case["scores"]:
        assert_close(out_m[1], np.asarray(out_k[1]), label=label + " scores", reduction=red)
        out_m, out_k = out_m[0], out_k[0]
    assert_close(out_m, np.asarray(out_k), label=label, reduction=red)
    mask_m = mine.compute_mask(xs, masks)
    mask_k = k.compute_mask(xs, masks)
    assert (mask_m is None) == (mask_k is None)
    if mask_k is not None:
        np.testing.assert_array_equal(mask_m, np.asarray(mask_k))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fully_masked_rows_follow_keras(dtype):
    """Subtracting 1e9 loses the scores to rounding in float32 (uniform weights) but not in float64."""
    rng = np.random.default_rng(7)
    xs = [rng.normal(size=(2, 3, 4)).astype(dtype), rng.normal(size=(2, 5, 4)).astype(dtype)]
    masks = [np.ones((2, 3), bool), np.array([[False] * 5, [True, False, True, False, False]])]
    k, mine = twin(Attention, {}, dtype, [x.shape for x in xs], rng)
    _, w_k = k([tf.constant(x) for x in xs], mask=masks, return_attention_scores=True)
    _, w_m = mine.forward(xs, mask=masks, return_attention_scores=True)
    assert_close(w_m, np.asarray(w_k), label=f"fully masked {dtype}", reduction=4)
    uniform = np.allclose(w_m[0], 1 / 5)
    assert uniform == (dtype == "float32")


@settings(max_examples=10)
@given(case=cases(), seed=SEEDS)
@example(case=base_case(config={"use_scale": True, "score_mode": "concat"}, with_key=True, q_mask="right"), seed=0)
@example(case=base_case(cls=AdditiveAttention, with_key=True, causal=True), seed=1)
@example(case=base_case(config={"use_scale": True}, v_mask="random", causal=True), seed=2)
def test_attention_gradients(case, seed):
    rng = np.random.default_rng(seed)
    xs, masks = inputs_and_masks(case, "float64", rng)
    if masks is not None and masks[1] is not None:
        # A fully masked row's scores sit at -1e9, where float64 steps of 1e-5 are rounding noise.
        masks[1][:, 0] = True
    layer = case["cls"](dtype="float64", **case["config"])
    layer.build([x.shape for x in xs], rng=rng)
    check_layer_gradients(layer, xs, rng=rng, label=f"{case['cls'].__name__} {case['config']}",
                          forward_kwargs=dict(mask=masks, use_causal_mask=case["causal"],
                                              return_attention_scores=case["scores"]))


def test_attention_to_dtype():
    rng = np.random.default_rng(0)
    layer = Attention(use_scale=True, score_mode="concat")
    xs = [rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 5, 4))]
    layer.build([x.shape for x in xs], rng=rng)
    y32 = layer.forward(xs)
    y64 = layer.to_dtype("float64").forward(xs)
    assert y32.dtype == np.float32 and y64.dtype == np.float64
    assert_close(y32, y64.astype(np.float32), label="Attention to_dtype", reduction=9)


def test_attention_refusals():
    with pytest.raises(LayerError, match=r"score_mode must be 'dot' or 'concat'\. Received: score_mode='add'"):
        Attention(score_mode="add")
    with pytest.raises(LayerError, match=r"dropout must be a float between 0 and 1\. Received: dropout=1\.5"):
        AdditiveAttention(dropout=1.5)
    x = np.zeros((1, 2, 3), np.float32)
    with pytest.raises(LayerError, match=r"accepts inputs list of length 2 or 3, .* Received length: 1"):
        Attention().forward([x])
    with pytest.raises(LayerError, match=r"must be called on a list of inputs"):
        Attention().forward(x)
    with pytest.raises(LayerError, match=r"mask must be a list, namely \[query_mask, value_mask\]"):
        Attention().forward([x, x], mask=np.ones((1, 2), bool))
    with pytest.raises(LayerError, match=r"accepts mask list of length 2 or 3"):
        Attention().forward([x, x], mask=[None])
    layer = Attention(dropout=0.5)
    layer.build([x.shape, x.shape])
    assert layer.forward([x, x], training=False).shape == (1, 2, 3)    # identity at inference
    with pytest.raises(LayerError, match=r"dropout=0\.5 cannot run in training mode"):
        layer.forward([x, x], training=True)
    Attention(dropout=0.0).forward([x, x], training=True)             # rate 0 trains fine
