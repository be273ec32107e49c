"""``parity run`` caches Keras's reference outputs by file, inputs and stack; a second run reads them."""

import json
from pathlib import Path

import numpy as np
import pytest

from parity import decode_records as records
from parity.cli import build_parser
from parity.keras_cache import KerasCache
from parity.suite import run_suite

WEIGHTS = Path(__file__).resolve().parents[2] / "weights"


def _run(report, *extra):
    args = build_parser().parse_args(["run", "--weights", str(WEIGHTS), "--report", str(report), "--models",
                                      "cnn_b2_f16_k3_max", "--samples", "40", "--trace-samples", "4", "--no-html",
                                      "--no-meteor", *extra])
    rc = run_suite(args)
    return rc, json.loads((report / "parity.json").read_text())["models"]["cnn_b2_f16_k3_max"]


def _numbers(r):
    return (r["classification"]["keras"], r["classification"]["scratch"], r["params"],
            [(x["name"], x["max_abs"]) for x in r["per_layer"]["layers"]])


def test_second_run_reads_keras_from_the_cache_and_agrees(tmp_path):
    rc1, first = _run(tmp_path)
    rc2, second = _run(tmp_path)
    assert first["keras_source"] == "keras" and second["keras_source"] == "cache"
    assert second["timing"]["keras_from_cache"] and not first["timing"]["keras_from_cache"]
    assert _numbers(first) == _numbers(second) and rc1 == rc2
    assert "read from the cache" in (tmp_path / "parity.md").read_text()
    _, forced = _run(tmp_path, "--no-cache")
    assert forced["keras_source"] == "keras"
    _, other_inputs = _run(tmp_path, "--samples", "30")   # a different input fingerprint is a miss
    assert other_inputs["keras_source"] == "keras"


def test_the_key_changes_with_the_stack(tmp_path):
    env = dict(tensorflow="2.21.0", keras="3.15.1", tf_keras="2.21.0", numpy="2.4.6", onednn_enabled=True)
    a = KerasCache(str(tmp_path), env)
    b = KerasCache(str(tmp_path), dict(env, onednn_enabled=False))
    parts = dict(model="abc", x="def")
    assert a.key(parts) != b.key(parts) and a.key(parts) == KerasCache(str(tmp_path), env).key(parts)
    a.put(parts, {"probs": [[0.5, 0.5]]}, {"ids": [1]})
    assert b.get(parts) is None and a.get(parts)[1] == {"ids": [1]}
    assert KerasCache(str(tmp_path), env, enabled=False).get(parts) is None


# ---- captioners ---------------------------------------------------------------------------------
CAPTIONER = "cap_rnn1_pre"


def _run_captioner(report, *extra):
    args = build_parser().parse_args(["run", "--weights", str(WEIGHTS), "--report", str(report), "--models",
                                      CAPTIONER, "--samples", "12", "--trace-samples", "4", "--beam-samples", "6",
                                      "--no-html", "--no-meteor", "--tokenizer", "simple", *extra])
    rc = run_suite(args)
    return rc, json.loads((report / "parity.json").read_text())["models"][CAPTIONER]


def _caption_numbers(r):
    # Everything the report derives from Keras's side: per-layer errors, decoding verdicts, metrics, samples.
    return (r["per_layer"], r["greedy"], r["beam"], r["metrics"], r["params"], r["samples"], r["gate"],
            r["failures"])


def test_a_captioner_hit_reports_the_same_numbers(tmp_path):
    rc1, first = _run_captioner(tmp_path)
    rc2, second = _run_captioner(tmp_path)
    assert (first["keras_source"], second["keras_source"]) == ("keras", "cache")
    assert second["timing"]["keras_from_cache"] and not first["timing"]["keras_from_cache"]
    assert _caption_numbers(first) == _caption_numbers(second) and rc1 == rc2
    assert first["greedy"]["token_checks"] > 0 and first["beam"]["token_checks"] > 0
    assert CAPTIONER in (tmp_path / "parity.md").read_text().split("read from the cache")[1]
    _, forced = _run_captioner(tmp_path, "--no-cache")
    assert forced["keras_source"] == "keras" and _caption_numbers(forced) == _caption_numbers(first)
    _, fewer = _run_captioner(tmp_path, "--beam-samples", "5")   # other decoding inputs: a miss
    assert fewer["keras_source"] == "keras" and fewer["beam"]["images"] == 5


def _greedy_record():
    rng = np.random.default_rng(0)
    steps = [dict(logits=rng.standard_normal((3, 7)).astype(np.float32), tokens=rng.integers(0, 7, 3),
                  alive=np.array([True, t == 0, False])) for t in range(2)]
    return dict(captions=[[4, 2], [5], []], steps=steps)


def _beam_record():
    rng = np.random.default_rng(1)
    return dict(captions=[[3, 1], []], scores=[-1.25, -np.inf], steps=[
        dict(rows=[(0, ()), (1, ())], logits=rng.standard_normal((2, 5)).astype(np.float32),
             selected={0: [((3,), -0.1, False), ((1,), -2.5, True)], 1: [((), -np.inf, False), ((2,), -0.7, False)]}),
        dict(rows=[(0, (3,))], logits=rng.standard_normal((1, 5)).astype(np.float32),
             selected={0: [((3, 1), -1.25, False), ((1,), -2.5, True)]})])


@pytest.mark.parametrize("to_store, from_store, make", [
    (records.greedy_to_store, records.greedy_from_store, _greedy_record),
    (records.beam_to_store, records.beam_from_store, _beam_record),
])
def test_decoding_records_come_back_exactly_through_the_cache(tmp_path, to_store, from_store, make):
    record = make()
    arrays, meta = to_store("rec", record)
    cache = KerasCache(str(tmp_path), {})
    cache.put({"k": 1}, arrays, meta)
    back = from_store("rec", *cache.get({"k": 1}))
    assert _canonical(back) == _canonical(record)


def _canonical(x):
    """A comparable form that keeps what the comparison depends on: types, dtypes and bits."""
    if isinstance(x, np.ndarray):
        return ("array", x.dtype.str, x.shape, x.tobytes())
    if isinstance(x, dict):
        return ("dict", sorted((type(k).__name__, k, _canonical(v)) for k, v in x.items()))
    if isinstance(x, (list, tuple)):
        return (type(x).__name__, [_canonical(v) for v in x])
    return (type(x).__name__, repr(x))
