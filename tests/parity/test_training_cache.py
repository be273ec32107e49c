"""``parity run`` caches the training sections' Keras side (gradients, train_on_batch steps): a hit
gives the verdicts and numbers of a recompute, any change to an input of the key is a miss, and a
damaged cache file is recomputed (never a crash). Scratch's side runs every time.

One classifier, 2 training steps, no page; its forward checks (tests/parity/test_keras_cache.py
covers their cache) are replaced by an empty passing result: the sections run whole.
"""

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from parity import suite_training_cache as tcache
from parity.cli import build_parser
from parity.keras_cache import KerasCache, file_sha256
from parity.suite import run_suite
from scratch import losses as L

WEIGHTS = Path(__file__).resolve().parents[2] / "weights"
CNN = "cnn_b2_f16_k3_max"
ENV = dict(tensorflow="2.x", keras="3.x", tf_keras="2.x", numpy="2.x", onednn_enabled=False)


def _run(report, *extra):
    args = build_parser().parse_args(["run", "--weights", str(WEIGHTS), "--report", str(report), "--models", CNN,
                                      "--samples", "40", "--trace-samples", "2", "--no-html", "--no-meteor",
                                      "--train-steps", "2", *extra])
    rc = run_suite(args)
    return rc, json.loads((report / "parity.json").read_text())["models"][CNN]


def _verdicts(r):
    """Everything the sections report that comes from Keras or is judged against it (not timings)."""
    g, t = r["gradients"], r["training"]
    return (g["passed"], g["first_diverging"], g["loss_keras"], g["loss_scratch"], g["reduction"],
            [{k: v for k, v in row.items() if k != "seconds"} for row in g["rows"]],
            t["passed"], t["first_failing_step"], t["reduction"], t["steps"],
            [f for f in r["failures"] if "parity" in f])


def _sources(r):
    return r["gradients"]["keras_source"], r["training"]["keras_source"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A cold run, a warm run, then a run with one step more after the gradient entry was damaged."""
    from parity import suite, suite_context

    report = tmp_path_factory.mktemp("training-cache")
    splits = {}
    load = suite_context.load_dataset
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(suite, "evaluate_classifier", lambda ctx, entry: dict(kind="classifier", failures=[]))
        mp.setattr(suite_context, "load_dataset", lambda spec: splits.setdefault(repr(spec), load(spec)))
        out = dict(cold=_run(report), warm=_run(report))
        out["warm_md"] = (report / "parity.md").read_text()
        for f in (report / ".keras-cache").glob("*.npz"):
            with np.load(f) as entry:
                gradient = any(name.startswith("grad/") for name in entry.files)
            if gradient:   # truncated mid-file, as by a disk filling up
                data = f.read_bytes()
                f.write_bytes(data[: len(data) // 2])
        out["steps3"] = _run(report, "--train-steps", "3")
    return out, report


def test_a_hit_reports_what_a_recompute_reports(runs):
    out, report = runs
    (rc1, cold), (rc2, warm) = out["cold"], out["warm"]
    assert _sources(cold) == ("keras", "keras") and _sources(warm) == ("cache", "cache")
    assert cold["gradients"]["passed"] and cold["training"]["passed"], cold["failures"]
    assert _verdicts(warm) == _verdicts(cold) and rc1 == rc2
    assert "Keras side: gradients read from the cache, training read from the cache" in out["warm_md"]
    assert "steps read from the cache (same file, batches, loss, optimizer, steps" in out["warm_md"]
    md = (report / "parity.md").read_text()   # the last run: both recomputed
    assert "Keras side: gradients computed in this run, training computed in this run" in md
    assert "Keras gradients and train_on_batch steps: computed in this run." in md


def test_a_damaged_gradient_entry_is_recomputed(runs):
    out, _ = runs
    cold, r = out["cold"][1], out["steps3"][1]
    assert r["gradients"]["keras_source"] == "keras"
    assert _verdicts(r)[:6] == _verdicts(cold)[:6]   # the gradient section's numbers and verdict


def test_another_step_count_misses_the_training_entry(runs):
    out, _ = runs
    r = out["steps3"][1]
    assert r["training"]["keras_source"] == "keras" and len(r["training"]["steps"]) == 3
    assert r["training"]["passed"] and r["training"]["steps"][:2] == out["cold"][1]["training"]["steps"]


# ---- the key, piece by piece -----------------------------------------------------------------------
def _batch(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((4, 6, 6, 1)).astype(np.float32)], rng.integers(0, 3, 4), None


def _training_parts(**change):
    kw = dict(model_sha="a" * 64, batches=[_batch(0), _batch(1)], loss=L.SparseCategoricalCrossentropy(),
              optimizer="Adam", config=dict(learning_rate=1e-3), batch_size=4)
    kw.update(change)
    return tcache.training_parts(**kw)


def test_every_input_of_the_training_key_changes_it(tmp_path):
    cache = KerasCache(str(tmp_path), ENV)
    x, y, _ = _batch(1)
    x2 = x[0].copy()
    x2.flat[7] = np.nextafter(x2.flat[7], np.float32(np.inf))   # one ulp in one pixel
    base = cache.key(_training_parts())
    changed = dict(model_sha=dict(model_sha="b" * 64), steps=dict(batches=[_batch(0)]),
                   pixel=dict(batches=[_batch(0), ([x2], y, None)]),
                   sample_weight=dict(batches=[_batch(0), (x, y, np.ones(4, np.float32))]),
                   order=dict(batches=[_batch(1), _batch(0)]),
                   loss=dict(loss=L.SparseCategoricalCrossentropy(from_logits=True)),
                   optimizer=dict(optimizer="SGD"), lr=dict(config=dict(learning_rate=2e-3)),
                   batch_size=dict(batch_size=2))
    keys = {name: cache.key(_training_parts(**kw)) for name, kw in changed.items()}
    assert base == cache.key(_training_parts())
    assert base not in keys.values() and len(set(keys.values())) == len(keys), keys
    assert cache.key(_training_parts()) != KerasCache(str(tmp_path), dict(ENV, keras="3.y")).key(_training_parts())


def test_the_key_covers_the_keras_side_code(monkeypatch, tmp_path):
    cache = KerasCache(str(tmp_path), ENV)
    before = cache.key(_training_parts())
    monkeypatch.setattr(tcache, "CODE", tcache.CODE[:-1])   # as if one of the functions had changed
    assert cache.key(_training_parts()) != before
    grad = tcache.gradient_parts("a" * 64, _batch(0), L.SparseCategoricalCrossentropy(), True)
    assert grad != tcache.gradient_parts("a" * 64, _batch(0), L.SparseCategoricalCrossentropy(), False)


def test_one_weight_byte_changes_the_file_sha_and_misses(tmp_path):
    copy = tmp_path / "m.h5"
    copy.write_bytes((WEIGHTS / f"{CNN}.h5").read_bytes())
    cache = KerasCache(str(tmp_path / "cache"), ENV)
    parts = _training_parts(model_sha=file_sha256(copy))
    cache.put(parts, {"w/0/0": np.zeros(2, np.float32)}, dict(losses=[1.0], weights=[1], infos=[]))
    with h5py.File(copy, "r+") as f:
        kernels = []
        f["model_weights"].visititems(lambda n, o: kernels.append(o) if n.endswith("kernel") else None)
        raw = kernels[0][()]
        raw.flat[0] = np.nextafter(raw.flat[0], np.float32(np.inf))
        kernels[0][...] = raw
    assert cache.get(parts) is not None
    assert cache.get(_training_parts(model_sha=file_sha256(copy))) is None


# ---- damaged entries ----------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty", "renamed"])
def test_a_damaged_entry_is_a_miss(tmp_path, damage):
    cache = KerasCache(str(tmp_path), ENV)
    parts, other = _training_parts(), _training_parts(optimizer="SGD")
    cache.put(parts, {"w/0/0": np.arange(1000, dtype=np.float32)}, dict(losses=[1.0], weights=[1], infos=[]))
    path = tmp_path / f"{cache.key(parts)}.npz"
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":   # inside the weight array: the zip CRC catches it
        data[len(data) // 3] ^= 0x10
    elif damage == "garbage":
        data = b"not a cache entry" * 10
    elif damage == "empty":
        data = b""
    if damage == "renamed":   # a valid entry under another key's name
        os.replace(path, tmp_path / f"{cache.key(other)}.npz")
        assert cache.get(other) is None
        return
    path.write_bytes(bytes(data))
    assert cache.get(parts) is None


def test_an_entry_missing_arrays_is_recomputed(tmp_path):
    cache = KerasCache(str(tmp_path), ENV)
    parts = _training_parts()
    side = dict(losses=[1.5], weights=[[np.ones(3, np.float32), np.zeros(2, np.float32)]], infos=[])
    arrays, meta = tcache.training_to_store(side)
    cache.put(parts, {"w/0/0": arrays["w/0/0"]}, meta)   # one weight short of its description
    calls = []
    got, source = tcache.cached(cache, parts, lambda: calls.append(1) or side, tcache.training_to_store,
                                tcache.training_from_store)
    assert source == "keras" and calls == [1] and [w.tolist() for w in got["weights"][0]] == [[1, 1, 1], [0, 0]]
    again, source = tcache.cached(cache, parts, lambda: 1 / 0, tcache.training_to_store, tcache.training_from_store)
    assert source == "cache" and again["losses"] == [1.5]


# ---- the Keras captions' scores ---------------------------------------------------------------------
def test_keras_caption_scores_are_cached_and_scratch_scores_always_computed(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from parity import metrics as M
    from parity.suite_captioner import _caption_metrics

    scored = []
    real = M.caption_metrics
    monkeypatch.setattr(M, "caption_metrics",
                        lambda gts, res, meteor=None: scored.append(list(res.values())[0]) or real(gts, res, meteor))
    ctx = SimpleNamespace(cache=KerasCache(str(tmp_path), ENV), args=SimpleNamespace(tokenizer="simple"), meteor=None,
                          meteor_error="skipped (--no-meteor)")
    data = dict(ids=[7, 8], tokens=[[["a", "red", "three"], ["a", "three"]], [["a", "blue", "seven"]]])
    caps = dict(keras=["a red three", "a blue one"], scratch=["a red three", "a blue seven"])
    first = _caption_metrics(ctx, data, caps)
    assert scored == [["a red three"], ["a red three"]]
    second = _caption_metrics(ctx, data, caps)
    assert second == first and len(scored) == 3   # the hit: scratch's set only
    _caption_metrics(ctx, data, dict(caps, keras=["a red three", "a blue two"]))   # other Keras captions: a miss
    assert len(scored) == 5
