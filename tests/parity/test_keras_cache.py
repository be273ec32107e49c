"""``parity run`` caches Keras's reference outputs by file, inputs and stack; a second run reads them."""

import json
from pathlib import Path

from parity.cli import build_parser
from parity.keras_cache import KerasCache
from parity.suite import run_suite

WEIGHTS = Path(__file__).resolve().parents[2] / "weights"


def _run(report, *extra):
    args = build_parser().parse_args(["run", "--weights", str(WEIGHTS), "--report", str(report), "--models",
                                      "cnn_b2_f16_k3_max", "--samples", "40", "--trace-samples", "4", "--no-html",
                                      "--no-meteor", "--no-training", *extra])
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
