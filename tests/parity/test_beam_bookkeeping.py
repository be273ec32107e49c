"""scratch's array-based beam bookkeeping against the independent Keras-side loop (parity.keras_decode).

The "model" is a Markov chain whose logits depend on the last token *and* on a recurrent state that
differs between the beams of one image, so a beam that continues from the wrong parent's state is
seen; its logits are small integers, so exact ties (broken by parent rank, then token id) are
everywhere. Both decoders must produce the same record: captions, scores, and per step the rows
run, their logits and the surviving beams. A committed captioner (weights/) is decoded by both
loops through the same scratch models, and must give the same captions and rows as well.
"""

import os

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

from parity import keras_decode
from scratch.models import decode as scratch_decode

START, STATES = 1, 5


class StateMarkov:
    """Encoder: images -> [per-image state]; step: logits = table[token] + bias[state],
    new state = (3 * state + token) % STATES (float32, one column)."""

    def __init__(self, table, bias, first):
        self.table, self.bias, self.first = table, bias, first

    def predict(self, x, batch_size=None):   # scratch.decode's call
        return self(x)

    def __call__(self, x, training=False):   # keras_decode's call
        if not isinstance(x, list):
            return [self.first[: len(x)].reshape(-1, 1).astype(np.float32)]
        tokens, state = x
        s = np.asarray(state)[:, 0].astype(np.int64)
        logits = self.table[np.asarray(tokens)[:, 0]] + self.bias[s]
        return [logits.astype(np.float32), ((3 * s + np.asarray(tokens)[:, 0]) % STATES).astype(np.float32)[:, None]]


def _model(seed, vocab, images):
    rng = np.random.default_rng(seed)
    table = rng.integers(-2, 3, size=(vocab, vocab)).astype(np.float32)
    bias = rng.integers(-1, 2, size=(STATES, vocab)).astype(np.float32)
    return StateMarkov(table, bias, rng.integers(0, STATES, size=images)), np.zeros((images, 2, 2, 1), np.float32)


def _assert_same_beam_record(s, k):
    assert s["captions"] == k["captions"]
    assert s["scores"] == k["scores"]
    assert len(s["steps"]) == len(k["steps"])
    for t, (ss, ks) in enumerate(zip(s["steps"], k["steps"])):
        assert ss["rows"] == ks["rows"], t
        np.testing.assert_array_equal(ss["logits"], ks["logits"])
        assert ss["selected"] == ks["selected"], t


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), vocab=st.integers(3, 7), width=st.integers(1, 4), images=st.integers(1, 6),
       max_len=st.integers(1, 6), end=st.integers(0, 2))
@example(seed=0, vocab=3, width=3, images=4, max_len=6, end=2)      # width == vocab: every token survives step 0
@example(seed=5, vocab=6, width=4, images=6, max_len=1, end=0)      # one step only
def test_beam_record_matches_the_keras_loop(seed, vocab, width, images, max_len, end):
    width = min(width, vocab)   # keras_decode records empty slots (-inf) when fewer than k candidates exist
    model, x = _model(seed, vocab, images)
    kw = dict(start=START, end=end, max_len=max_len, beam_width=width)
    _assert_same_beam_record(scratch_decode.beam_search(model, model, x, **kw),
                             keras_decode.beam(model, model, x, **kw))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), vocab=st.integers(3, 7), images=st.integers(1, 6), max_len=st.integers(1, 6))
def test_greedy_record_matches_the_keras_loop(seed, vocab, images, max_len):
    model, x = _model(seed, vocab, images)
    kw = dict(start=START, end=2, max_len=max_len)
    s, k = scratch_decode.greedy_decode(model, model, x, **kw), keras_decode.greedy(model, model, x, **kw)
    assert s["captions"] == k["captions"] and len(s["steps"]) == len(k["steps"])
    for ss, ks in zip(s["steps"], k["steps"]):
        for field in ("logits", "tokens", "alive"):
            np.testing.assert_array_equal(ss[field], ks[field])


def test_images_finish_at_different_steps_and_keep_their_answer():
    # A pinned chain where the 6 images finish at different steps and the search stops before max_len.
    model, x = _model(32, 5, 6)
    kw = dict(start=START, end=2, max_len=6, beam_width=3)
    s = scratch_decode.beam_search(model, model, x, **kw)
    _assert_same_beam_record(s, keras_decode.beam(model, model, x, **kw))
    live_images = [len({i for i, _ in step["rows"]}) for step in s["steps"]]
    assert live_images == [6, 6, 6, 3, 1]
    assert s["captions"] == [[3, 3], [4], [4], [4], [3, 3], [4]]


WEIGHTS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "weights")


@pytest.mark.parametrize("name", ["cap_rnn1_pre", "cap_lstm2_init"])
def test_a_committed_captioner_decodes_the_same_through_both_loops(name):
    """Same scratch models under both loops: the keras_decode loop runs every (image, slot) row each
    step, scratch only the live ones, so their logits agree to the tolerance policy (BLAS may round
    a row differently in a product of another height) and the captions and rows exactly."""
    import scratch
    from parity.captioning import compare_beam, compare_greedy
    from parity.manifest import Manifest

    entry = Manifest.load(WEIGHTS).entry(name)
    # Random scenes in the images' range (building the test split takes 10 s); the decoders need
    # only some input whose captions run several steps.
    images = np.random.default_rng(3).uniform(0, 1, size=(24, 64, 64, 3)).astype(np.float32)
    vocab = entry.vocab()
    kw = dict(start=vocab["start"], end=vocab["end"], max_len=int(vocab["max_len"]))
    enc, step = (scratch.load(*entry.source(p)) for p in ("encoder", "step"))
    models = dict(encoder=enc, step_model=step)
    sg, kg = scratch_decode.greedy_decode(**models, images=images, **kw), keras_decode.greedy(enc, step, images, **kw)
    # Reductions at least the models' longest sums (the encoder's Dense over 4*4*32 features, a
    # step's LSTM over 64 + 128 inputs); the logits agree bit for bit on this machine's OpenBLAS.
    res = compare_greedy(kg, sg, encoder_reduction=1000, step_reduction_=200)
    assert res["passed"] and res["identical"] == len(images) and sg["captions"] == kg["captions"], res
    sb = scratch_decode.beam_search(**models, images=images, beam_width=3, **kw)
    kb = keras_decode.beam(enc, step, images, beam_width=3, **kw)
    res = compare_beam(kb, sb, encoder_reduction=1000, step_reduction_=200)
    assert res["passed"] and sb["captions"] == kb["captions"], res["divergences"]
    assert [st["rows"] for st in sb["steps"]] == [st["rows"] for st in kb["steps"]]
    assert [st["selected"].keys() for st in sb["steps"]] == [st["selected"].keys() for st in kb["steps"]]
    assert len(sb["steps"]) > 3 and len(sg["steps"]) > 3
