"""The CI regression gate over the committed weights, and proof that it can fail.

- Every model in weights/MANIFEST.json passes ``parity run`` (checksums, per-layer parity with the
  float64 budget, argmax agreement / step-by-step decoding, metrics).
- Scratch's metrics are not below the MANIFEST's recorded Keras metrics minus ``parity.suite.MARGIN``
  (0.01 in macro-F1, accuracy and BLEU-4: a couple of near-tie flips on the few-hundred-sample test
  splits; a broken layer costs far more).
- A deliberately broken scratch layer (LSTM gate order, 'same' padding split) makes ``parity check``
  on a committed model exit 1 and name the right first diverging layer.

To stay within the test budget the gate traces 8 samples per layer (``make parity``: 64) and
beam-searches the first 60 test images (``make parity``: all) and tokenizes captions in Python
(``make parity``: coco's PTB jar; test_metrics shows both agree on caption text); predictions,
greedy captions and metrics use the whole test split, as the MANIFEST's numbers do.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from parity.cli import build_parser, main
from parity.manifest import Manifest
from parity.suite import MARGIN

WEIGHTS = Path(os.environ.get("PARITY_WEIGHTS", Path(__file__).resolve().parents[2] / "weights"))


@pytest.fixture(scope="module")
def manifest():
    if not (WEIGHTS / "MANIFEST.json").exists():
        pytest.fail(f"{WEIGHTS}/MANIFEST.json is missing: the gate needs the committed reference weights")
    return Manifest.load(str(WEIGHTS))


@pytest.fixture(scope="module")
def gate(manifest, tmp_path_factory):
    from parity.suite import run_suite

    report = tmp_path_factory.mktemp("gate")
    args = build_parser().parse_args(["run", "--weights", str(WEIGHTS), "--report", str(report), "--trace-samples",
                                      "8", "--beam-samples", "60", "--no-html", "--tokenizer", "simple",
                                      "--no-training"])   # gradients + training: tests/parity/test_suite_training.py
    rc = run_suite(args)
    return rc, json.loads((report / "parity.json").read_text()), report


def test_every_model_in_the_manifest_passes(manifest, gate):
    rc, data, report = gate
    assert set(data["models"]) == set(manifest.names())
    failed = {n: r["failures"] for n, r in data["models"].items() if not r["passed"]}
    assert not failed, failed
    assert rc == 0 and data["passed"]
    assert (report / "parity.md").exists()


def test_metrics_are_not_below_the_manifest_minus_the_margin(manifest, gate):
    _, data, _ = gate
    for name, r in data["models"].items():
        recorded = manifest.entry(name).raw["metrics"]
        if r["kind"] == "classifier":
            got = r["classification"]["scratch"]
            for key in ("macro_f1", "accuracy"):
                assert got[key] >= recorded[key] - MARGIN[key], (name, key, got[key], recorded[key])
        else:
            got = r["metrics"]["scratch"]["nltk_bleu4"]
            assert got >= recorded["bleu4"] - MARGIN["bleu4"], (name, got, recorded["bleu4"])
            # coco's BLEU-4 on the same tokens, and identical Keras/scratch numbers on identical captions
            if not r["greedy"]["differing"]:
                assert r["metrics"]["scratch"] == r["metrics"]["keras"]


def test_every_comparison_actually_compared_something(gate):
    _, data, _ = gate
    assert data["meteor"]["self_check_exact_match"] == 1.0, data["meteor"]
    for name, r in data["models"].items():
        parts = [r["per_layer"]] if "layers" in r["per_layer"] else list(r["per_layer"].values())
        assert all(len(p["layers"]) >= 5 for p in parts), name
        if r["kind"] == "classifier":
            assert r["classification"]["samples"] == r["timing"]["samples"] > 100
        else:
            assert r["greedy"]["token_checks"] > r["greedy"]["captions"]          # several steps per caption
            assert r["beam"]["logits"]["steps_compared"] >= 3
            m = r["metrics"]["keras"]
            # METEOR 1.5's jar ran offline
            assert m["METEOR"] is not None and 0 < m["METEOR"] <= 1, m.get("METEOR_error")
            assert r["metrics"]["bleu_cross_check"]["passed"]


# ---- the gate can fail -----------------------------------------------------------------------------
def _first(manifest, predicate):
    for name in manifest.names():
        entry = manifest.entry(name)
        if predicate(entry):
            return entry
    pytest.fail("no committed model fits this check")


def test_swapped_lstm_gates_fail_check_on_a_committed_captioner(manifest, monkeypatch, capsys):
    from tests.parity.test_cli import _swap_lstm_gates

    entry = _first(manifest, lambda e: e.kind == "captioner" and e.raw["hyper_parameters"].get("cell") == "lstm")
    weights, graph = entry.source("step")       # the training .h5 holds the step graph's weights
    step = ["check", weights, "--config", graph]
    assert main(step) == 0                      # intact, the committed step model passes
    capsys.readouterr()
    _swap_lstm_gates(monkeypatch)
    rc = main(step)
    out = capsys.readouterr().out
    assert rc == 1
    assert "first diverging layer: rnn1:" in out, out


def _odd_same_pool(hp, size=32):
    """Index of the first 'same' pool whose input is odd (there the padding split matters), by hand."""
    n = size
    for i in range(1, hp["blocks"] + 1):
        n = n - hp["kernel"] + 1            # 'valid' conv
        if n % 2:
            return i
        n = n // 2                          # 'same' pool, stride 2, even input: no padding
    return None


def test_flipped_padding_split_fails_check_on_a_committed_cnn(manifest, monkeypatch, capsys, tmp_path):
    from tests.parity.test_cli import _swap_same_padding_split

    entry = _first(manifest, lambda e: e.raw.get("family") == "cnn_grid"
                   and _odd_same_pool(e.raw["hyper_parameters"]) is not None)
    pool = _odd_same_pool(entry.raw["hyper_parameters"])
    # real test digits, so that max pooling sees the padded border where it matters
    from keras_ref.data import load_digits_split

    npz = tmp_path / "digits.npz"
    np.savez(npz, image=load_digits_split()["test"][0][:16])
    path = entry.model_file()
    assert main(["check", path, "--inputs", npz]) == 0
    capsys.readouterr()
    _swap_same_padding_split(monkeypatch)
    rc = main(["check", path, "--inputs", npz])
    out = capsys.readouterr().out
    assert rc == 1
    assert f"first diverging layer: pool{pool}:" in out, out


def test_a_tampered_manifest_fails_the_run(manifest, tmp_path):
    """A shuffled test split (ids fingerprint) and a modified file (sha256) are both caught."""
    from parity.suite import run_suite

    raw = json.loads((WEIGHTS / "MANIFEST.json").read_text())
    classifiers = [n for n, e in raw["models"].items() if e.get("task") == "classification"][:2]
    shuffled, corrupted = classifiers
    raw["models"] = {n: raw["models"][n] for n in classifiers}
    raw["models"][shuffled]["dataset"]["ids_sha256"] = "0" * 64
    for name in raw["models"][corrupted]["files"].values():
        raw["files"][name]["sha256"] = "f" * 64
    folder = tmp_path / "weights"
    folder.mkdir()
    for e in raw["models"].values():
        for name in e["files"].values():
            (folder / name).symlink_to(WEIGHTS / name)
    (folder / "MANIFEST.json").write_text(json.dumps(raw))
    args = build_parser().parse_args(["run", "--weights", str(folder), "--report", str(tmp_path / "rep"),
                                      "--trace-samples", "4", "--no-html", "--no-meteor", "--no-training"])
    assert run_suite(args) == 1
    data = json.loads((tmp_path / "rep" / "parity.json").read_text())
    assert "test split ids_sha256" in data["models"][shuffled]["failures"][0]
    assert "sample order guard" in data["models"][shuffled]["failures"][0]
    assert all("sha256 differs from the MANIFEST" in f for f in data["models"][corrupted]["failures"])


def test_the_html_page_puts_failures_first_and_prints_no_python_reprs(manifest, gate, tmp_path):
    import copy

    from parity.report import write_suite_report

    _, data, _ = gate
    names = ["cnn_b2_f16_k3_max", "lc2d_twin", "cap_rnn1_pre"]
    small = copy.deepcopy(dict(data, models={n: data["models"][n] for n in names}))
    broken = small["models"]["lc2d_twin"]
    broken["passed"], small["passed"] = False, False
    broken["failures"] = ["gate: scratch macro_f1 0.5000 < MANIFEST Keras 0.9300 - 0.01"]
    broken["per_layer"]["layers"][2].update(passed=False, headroom=3.5)
    broken["per_layer"].update(passed=False, first_diverging=broken["per_layer"]["layers"][2]["name"])
    write_suite_report(str(tmp_path), small, manifest, {}, html=True)
    page = (tmp_path / "index.html").read_text()
    assert "Gate: scratch's metrics" in page and "<h2 class='failw'>FAIL: lc2d_twin</h2>" in page
    summary = page.split("<h2>Summary</h2>", 1)[1]
    assert summary.index("lc2d_twin") < summary.index("cnn_b2_f16_k3_max")     # failing model first
    failing_table = page.split("<summary>lc2d_twin: ", 1)
    assert failing_table[0].endswith("<details open>")                      # ... and expanded
    assert "<details><summary>cnn_b2_f16_k3_max: " in page                   # passing ones collapsed
    for repr_ in ("None", "{'", "': ", "[{"):
        assert repr_ not in page.replace("oneDNN", ""), repr_
    assert "err/tol" in page and "headroom" in page
    for img in ("depth_classifiers.png", "budget.png"):
        assert (tmp_path / "img" / img).stat().st_size > 5000
