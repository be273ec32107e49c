"""Caption metrics: coco scorers one by one, hand-computed values, the nltk cross-check, METEOR's jar."""

import os
import sys

import numpy as np
import pytest

from parity import metrics as M

WORDS = "a the small large little big red blue green one two three seven to left of and right next".split()


def _corpus(seed, n=40):
    rng = np.random.default_rng(seed)
    gts, res = {}, {}
    for i in range(n):
        refs = [" ".join(rng.choice(WORDS, size=rng.integers(4, 10))) for _ in range(5)]
        # hypotheses share words with their references, as a trained captioner's do
        hyp = refs[0].split()
        hyp = hyp[: max(4, len(hyp) - int(rng.integers(0, 3)))] + list(rng.choice(WORDS, size=rng.integers(0, 3)))
        gts[f"img{i}"], res[f"img{i}"] = refs, [" ".join(hyp)]
    return gts, res


def test_bleu_matches_a_hand_computation():
    # hyp "the cat the" vs ref "the cat sat": clipped unigram matches the:1 + cat:1 = 2 of 3; equal lengths.
    gts = {1: ["the cat sat"]}
    res = {1: ["the cat the"]}
    b = M.bleu(gts, res)
    assert b[0] == pytest.approx(2 / 3, abs=1e-9)
    # bigrams: "the cat" matches, "cat the" does not -> p2 = 1/2; BLEU-2 = sqrt(2/3 * 1/2)
    assert b[1] == pytest.approx(np.sqrt(2 / 3 * 1 / 2), abs=1e-9)


def test_brevity_penalty_uses_the_closest_reference_length():
    gts = {1: ["a b c d e f", "a b c d e f g h i j"]}
    res = {1: ["a b c d"]}
    # c=4, closest r=6: BP = exp(1 - 6/4); all unigrams match
    assert M.bleu(gts, res)[0] == pytest.approx(np.exp(1 - 6 / 4), abs=1e-9)


def test_rouge_l_matches_a_hand_computation():
    # LCS("a b c d", "a c d e") = 3; P = 3/4, R = 3/4 -> F_beta = P for P == R
    assert M.rouge_l({1: ["a c d e"]}, {1: ["a b c d"]}) == pytest.approx(0.75, abs=1e-12)
    # P = 2/2, R = 2/4, beta = 1.2: (1 + b^2) P R / (R + b^2 P)
    b2 = 1.2 ** 2
    expected = (1 + b2) * 1.0 * 0.5 / (0.5 + b2 * 1.0)
    assert M.rouge_l({1: ["a b c d"]}, {1: ["a b"]}) == pytest.approx(expected, abs=1e-12)


def test_cider_d_rewards_consensus():
    gts, res = _corpus(0)
    good = {k: [v[0]] for k, v in gts.items()}                   # a reference itself
    shuffled = {k: [gts[f"img{(i + 1) % len(gts)}"][0]] for i, k in enumerate(gts)}
    assert M.cider_d(gts, good) > 2 * M.cider_d(gts, shuffled)
    assert M.cider_d(gts, good) == M.cider_d(gts, good)           # deterministic


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_coco_bleu_equals_nltk_corpus_bleu_to_1e_9(seed):
    gts, res = _corpus(seed)
    check = M.bleu_cross_check(gts, res)
    assert check["passed"], check
    assert check["orders_checked"] == [1, 2, 3, 4] and check["max_diff"] <= 1e-9


def test_cross_check_skips_orders_that_nltk_counts_differently():
    # nltk divides by max(1, count): a 2-token hypothesis adds a phantom trigram and 4-gram.
    gts = {1: ["a red three and a blue one"], 2: ["a big green seven"]}
    res = {1: ["a red three and a blue one"], 2: ["green seven"]}
    check = M.bleu_cross_check(gts, res)
    assert check["orders_checked"] == [1, 2] and set(check["skipped"]) == {3, 4}
    assert check["skipped"][3] == "1 hypothesis(es) shorter than 3 tokens"
    assert check["passed"]
    assert abs(check["coco"][2] - check["nltk"][2]) > 1e-3   # the documented difference is real


def test_cross_check_skips_orders_without_any_match():
    gts = {1: ["a red three and a blue one"], 2: ["a big green seven and a one"]}
    res = {1: ["one blue a three red and"], 2: ["seven green big one a and"]}   # no bigram matches
    check = M.bleu_cross_check(gts, res)
    assert check["orders_checked"] == [1]
    assert check["skipped"][2] == "no matching n-grams of some order <= 2"
    assert 0 < check["coco"][1] < 1e-6 and check["nltk"][1] < 1e-100   # coco smoothing vs nltk ~0


def test_cross_check_can_fail():
    gts, res = _corpus(3)
    check = M.bleu_cross_check(gts, res, tol=0.0)
    # coco's smoothing constants make the two differ by ~1e-10: a zero tolerance must flag it
    assert 0 < check["max_diff"] <= 1e-9 and not check["passed"]


def test_tokenize_simple_matches_coco_ptb_on_caption_text():
    caps = {1: ["A large red three, to the left of a small blue seven.", "a big red three"],
            2: ["there is a lone green one!"]}
    ptb, method = M.tokenize(caps, method="ptb")
    simple, _ = M.tokenize(caps, method="simple")
    assert method == "ptb" and ptb == simple
    assert ptb[1][0] == "a large red three to the left of a small blue seven"


def test_tokenize_writes_nothing_into_the_package_folder():
    folder = M._package_dir("tokenizer")
    before = set(os.listdir(folder))
    M.tokenize({1: ["a red one."]}, method="ptb")
    assert set(os.listdir(folder)) == before


def test_scorers_refuse_mismatched_ids():
    with pytest.raises(ValueError, match="same ids in the same order"):
        M.bleu({1: ["a"], 2: ["b"]}, {2: ["b"], 1: ["a"]})
    with pytest.raises(ValueError, match="exactly one hypothesis"):
        M.rouge_l({1: ["a"]}, {1: ["a", "b"]})


def test_meteor_failure_is_reported_with_its_reason(monkeypatch):
    # The happy path (METEOR 1.5 on real captions) runs once, in the gate (tests/parity/test_gate.py):
    # the jar takes ~10 CPU seconds to load its paraphrase table.
    gts, res = _corpus(4, n=10)
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable))  # no java on PATH
    out = M.caption_metrics(gts, res)
    assert out["METEOR"] is None
    assert "METEOR needs Java: no 'java' on PATH" in out["METEOR_error"]
    assert out["Bleu_4"] == M.bleu(gts, res)[3]
    with pytest.raises(M.MetricError, match="METEOR needs Java"):
        M.MeteorScorer()


def test_scorers_take_plain_lists_as_well_as_coco_dicts():
    from parity import metrics as m

    refs = [["a cat sits on the mat", "the cat is on the mat"], "two dogs run in the park"]
    hyps = ["a cat is on the mat", "two dogs run in a park"]
    gts = {0: refs[0], 1: [refs[1]]}
    res = {0: [hyps[0]], 1: [hyps[1]]}
    assert m.bleu(refs, hyps) == m.bleu(gts, res)
    assert m.rouge_l(refs, hyps) == m.rouge_l(gts, res)
    assert m.cider_d(refs, hyps) == m.cider_d(gts, res)
    assert m.bleu(refs, hyps)[0] < 1.0 and m.bleu([["a b c d"]], ["a b c d"])[3] > 0.99
    with pytest.raises(ValueError, match="2 reference entries for 1 hypotheses"):
        m.bleu(refs, hyps[:1])
    with pytest.raises(ValueError, match="both as"):
        m.bleu(gts, hyps)


def test_macro_f1_is_sklearns():
    from parity.metrics import macro_f1

    # per-class F1: class 0 = 1, class 1 = 0, class 2 = 0.8 -> mean 0.6
    assert macro_f1([0, 1, 2, 2], [0, 2, 2, 2]) == pytest.approx(0.6)
