"""Caption decoding: both beam/greedy implementations against exhaustive search, and step-by-step parity.

The decoders are driven by
- a Markov "model" in NumPy whose logits depend only on the last token (the best sequence can be
  found by brute force), and
- a real Keras encoder/step captioner saved to disk and loaded by ``scratch.load``.
"""

import itertools

import numpy as np
import pytest

from parity import keras_decode
from parity.captioning import compare_beam, compare_greedy, detokenize
from scratch.models import decode as scratch_decode

START, END = 1, 2


class Markov:
    """Encoder: images -> [one-hot-ish state]; step: logits = table[last token] (+ state bias)."""

    def __init__(self, table):
        self.table = np.asarray(table, dtype=np.float32)

    # scratch.decode calls predict(x, batch_size=...); keras_decode calls model(x, training=False)
    def predict(self, x, batch_size=None):
        return self(x)

    def __call__(self, x, training=False):
        if not isinstance(x, list):                      # encoder
            return [np.zeros((len(x), 1), np.float32)]
        tokens, state = x
        return [self.table[tokens[:, 0]], state + 1]


def _seq_logp(table, seq):
    z = table.astype(np.float64)
    logp = z - z.max(1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
    prev, total = START, 0.0
    for t in seq:
        total += logp[prev, t]
        prev = t
    return total


def _brute_force(table, max_len):
    """Best caption over every token sequence of length <= max_len (ending at END or at max_len)."""
    v = table.shape[0]
    best, best_seq = -np.inf, None
    for n in range(1, max_len + 1):
        for seq in itertools.product(range(v), repeat=n):
            if END in seq[:-1] or (n < max_len and seq[-1] != END):
                continue
            s = _seq_logp(table, seq)
            if s > best:
                best, best_seq = s, seq
    return [t for t in best_seq if t != END], best


@pytest.mark.parametrize("seed", range(6))
def test_wide_beam_finds_the_brute_force_optimum_in_both_implementations(seed):
    rng = np.random.default_rng(seed)
    table = rng.normal(scale=2.0, size=(5, 5)).astype(np.float32)
    images = np.zeros((1, 2, 2, 1), np.float32)
    model = Markov(table)
    want, score = _brute_force(table, max_len=4)
    s = scratch_decode.beam_search(model, model, images, start=START, end=END, max_len=4, beam_width=5 ** 4)
    k = keras_decode.beam(model, model, images, start=START, end=END, max_len=4, beam_width=5 ** 4)
    assert s["captions"][0] == want and k["captions"][0] == want
    assert s["scores"][0] == pytest.approx(score, abs=1e-9) and k["scores"][0] == pytest.approx(score, abs=1e-9)


def test_beam_beats_greedy_where_greedy_is_myopic():
    # From START, token 3 looks best now (logit 2) but leads only to bad continuations;
    # token 4 (logit 1.5) leads to END with certainty.
    t = np.full((5, 5), -9.0, np.float32)
    t[START, 3], t[START, 4] = 2.0, 1.5
    t[3, :] = 0.0            # uniform: every continuation costs log(5)
    t[4, END] = 9.0
    images = np.zeros((1, 2, 2, 1), np.float32)
    m = Markov(t)
    g = scratch_decode.greedy_decode(m, m, images, start=START, end=END, max_len=3)
    b = scratch_decode.beam_search(m, m, images, start=START, end=END, max_len=3, beam_width=3)
    kb = keras_decode.beam(m, m, images, start=START, end=END, max_len=3, beam_width=3)
    assert g["captions"][0][0] == 3
    assert b["captions"] == kb["captions"] == [[4]]


def test_beam_width_one_is_greedy_and_rejects_zero():
    rng = np.random.default_rng(7)
    m = Markov(rng.normal(size=(6, 6)))
    images = np.zeros((3, 2, 2, 1), np.float32)
    g = scratch_decode.greedy_decode(m, m, images, start=START, end=END, max_len=5)
    assert scratch_decode.beam_search(m, m, images, start=START, end=END, max_len=5, beam_width=1)["captions"] == \
        g["captions"] == keras_decode.greedy(m, m, images, start=START, end=END, max_len=5)["captions"]
    with pytest.raises(ValueError, match="beam_width must be >= 1. Received: beam_width=0"):
        scratch_decode.beam_search(m, m, images, start=START, end=END, max_len=5, beam_width=0)


# ---- near-tie rule --------------------------------------------------------------------------------
def _greedy_result(logits_per_step, tokens_per_step, captions):
    return dict(captions=captions, steps=[dict(logits=np.asarray(l, np.float32), tokens=np.asarray(t),
                                               alive=np.ones(len(t), bool))
                                          for l, t in zip(logits_per_step, tokens_per_step)])


def test_a_divergence_at_a_near_tie_is_reported_and_allowed():
    tie = np.float32(3.0)
    keras = _greedy_result([[[tie, np.nextafter(tie, np.float32(0)), 0.0]]], [[0]], [[0]])
    scratch = _greedy_result([[[np.nextafter(tie, np.float32(0)), tie, 0.0]]], [[1]], [[1]])
    res = compare_greedy(keras, scratch)
    assert res["passed"] and res["identical"] == 0
    (d,) = res["divergences"]
    assert d["near_tie"] and d["step"] == 0 and d["keras_token"] == 0 and d["scratch_token"] == 1


def test_a_divergence_without_a_tie_fails():
    keras = _greedy_result([[[3.0, 1.0, 0.0]]], [[0]], [[0]])
    scratch = _greedy_result([[[3.0, 1.0, 0.0]]], [[1]], [[1]])
    res = compare_greedy(keras, scratch)
    assert not res["passed"] and res["unexplained"] == [0]
    assert not res["divergences"][0]["near_tie"]


def test_logits_beyond_tolerance_fail_even_when_tokens_agree():
    keras = _greedy_result([[[3.0, 1.0, 0.0]]], [[0]], [[0]])
    scratch = _greedy_result([[[3.01, 1.0, 0.0]]], [[0]], [[0]])
    res = compare_greedy(keras, scratch)
    assert res["identical"] == 1 and not res["passed"] and not res["logits"]["passed"]


# ---- a real captioner: Keras loop vs scratch.decode on the scratch-loaded models -----------------------
@pytest.fixture(scope="module")
def captioner(tmp_path_factory):
    import keras

    L = keras.layers
    keras.utils.set_random_seed(11)
    vocab, units = 9, 12
    img = keras.Input((8, 8, 3), name="image")
    f = L.Flatten(name="flat")(L.Conv2D(4, 3, padding="same", activation="relu", name="conv")(img))
    enc = keras.Model(img, [L.Dense(units, activation="tanh", name="init_h")(f),
                            L.Dense(units, activation="tanh", name="init_c")(f)], name="encoder")
    tok = keras.Input((1,), dtype="int32", name="token")
    h, c = keras.Input((units,), name="state_h"), keras.Input((units,), name="state_c")
    seq, h2, c2 = L.LSTM(units, return_sequences=True, return_state=True, name="rnn1")(
        L.Embedding(vocab, 6, mask_zero=True, name="embedding")(tok), initial_state=[h, c])
    logits = L.Reshape((vocab,), name="step_logits")(L.Dense(vocab, name="logits")(seq))
    step = keras.Model([tok, h, c], [logits, h2, c2], name="step")
    folder = tmp_path_factory.mktemp("cap")
    enc.save(folder / "enc.keras")
    step.save(folder / "step.keras")
    images = np.random.default_rng(0).uniform(size=(12, 8, 8, 3)).astype(np.float32)
    return folder, images


def test_keras_and_scratch_decoders_agree_step_by_step(captioner):
    import scratch
    from parity import keras_runner as kr

    folder, images = captioner
    ke, ks = kr.load_model(folder / "enc.keras"), kr.load_model(folder / "step.keras")
    se, ss = scratch.load(folder / "enc.keras"), scratch.load(folder / "step.keras")
    kw = dict(start=START, end=END, max_len=6)
    kg = keras_decode.greedy(ke, ks, images, **kw)
    sg = scratch_decode.greedy_decode(se, ss, images, **kw)
    res = compare_greedy(kg, sg, encoder_reduction=200, step_reduction_=40)
    assert res["passed"] and res["identical"] == len(images), res
    assert res["logits"]["steps_compared"] == len(kg["steps"]) and res["token_agreement"] == res["token_checks"]
    kb = keras_decode.beam(ke, ks, images, beam_width=3, **kw)
    sb = scratch_decode.beam_search(se, ss, images, beam_width=3, **kw)
    res = compare_beam(kb, sb, encoder_reduction=200, step_reduction_=40)
    assert res["passed"] and res["identical"] == len(images), (res["divergences"], kb["captions"], sb["captions"])
    assert res["final_score_max_abs_diff"] < 1e-4
    assert detokenize([3, 4], ["<pad>", "<start>", "<end>", "red", "one"]) == "red one"


def test_a_perturbed_scratch_step_model_is_caught(captioner):
    import scratch
    from parity import keras_runner as kr

    folder, images = captioner
    ke, ks = kr.load_model(folder / "enc.keras"), kr.load_model(folder / "step.keras")
    se, ss = scratch.load(folder / "enc.keras"), scratch.load(folder / "step.keras")
    ss.get_layer("logits").weights["bias"][3] += 1e-3
    kw = dict(start=START, end=END, max_len=4)
    res = compare_greedy(keras_decode.greedy(ke, ks, images, **kw), scratch_decode.greedy_decode(se, ss, images, **kw),
                         encoder_reduction=200, step_reduction_=40)
    assert not res["passed"] and not res["logits"]["per_step"][0]["passed"]
