"""``parity run``'s per-model gradient and training-parity sections: they reach parity.json, parity.md
and index.html for a classifier and a captioner, and a broken backward or update rule FAILS the
model in the run's gate, naming the weight (or the step) that diverges.

Sizes are cut to stay in the test budget (``make parity``: 10 steps, every model): 2 training steps,
2 traced and beam-searched samples, no METEOR, the smallest captioner (one SimpleRNN layer). The
whole test split is kept, so the intact models pass the metric gate and a failure is the section's.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from parity.cli import build_parser
from parity.suite import run_suite
from scratch import optimizers as O
from scratch.layers import core
from tests.support import swapped_adam_bias_correction

WEIGHTS = Path(__file__).resolve().parents[2] / "weights"
CNN, CAPTIONER = "cnn_b2_f16_k3_max", "cap_rnn1_init"


def _run(report, models, *extra):
    args = build_parser().parse_args(["run", "--weights", str(WEIGHTS), "--report", str(report), "--models", models,
                                      "--trace-samples", "2", "--beam-samples", "2",
                                      "--no-meteor", "--tokenizer", "simple", "--train-steps", "2", *extra])
    rc = run_suite(args)
    return rc, json.loads((report / "parity.json").read_text())


@pytest.fixture(scope="module")
def intact(tmp_path_factory):
    """One run over a classifier and a captioner. The captioner's per-layer and decoding checks
    (test_gate covers them) are replaced by an empty passing result: its sections run for real."""
    from parity import suite

    report = tmp_path_factory.mktemp("sections")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(suite, "evaluate_captioner", lambda ctx, entry: dict(kind="captioner", failures=[]))
        rc, data = _run(report, f"{CNN},{CAPTIONER}", "--no-html")   # the page: drawn below, without the other plots
    return rc, data, report


@pytest.mark.parametrize("name", [CNN, CAPTIONER])
def test_sections_pass_and_reach_the_json(intact, name):
    rc, data, _ = intact
    assert rc == 0 and data["passed"], {n: m["failures"] for n, m in data["models"].items()}
    r = data["models"][name]
    g, t = r["gradients"], r["training"]
    assert g["passed"] and g["first_diverging"] is None, g.get("error") or g["rows"]
    assert len(g["rows"]) >= 5 and all(row["err_over_tol"] <= 1 for row in g["rows"] if "err_over_tol" in row)
    assert any(row["weight"].endswith("/kernel") for row in g["rows"])
    assert t["passed"] and len(t["steps"]) == 2 and t["optimizer"] == "Adam", t.get("error") or t["steps"]
    assert t["optimizer_config"]["learning_rate"] == pytest.approx(0.003)   # the MANIFEST's training setup
    assert all("scratch_vs_truth" in s for s in t["steps"])               # the float64 truth ran
    assert not [f for f in r["failures"] if "parity:" in f and ("gradient" in f or "training" in f)]
    if name == CAPTIONER:   # teacher forcing on the masked loss: logits, and padded positions weighted 0
        assert "from_logits=True" in g["loss"]
    assert data["options"]["training"] is True and data["options"]["train_steps"] == 2


def test_sections_reach_the_markdown_and_the_page(intact, monkeypatch):
    from parity import suite_page
    from parity.manifest import Manifest
    from parity.report import write_suite_report

    _, data, report = intact
    md = (report / "parity.md").read_text()
    # The real page, minus the plots of the other sections (confusions, captions, histories: ~10 s here)
    for plot in ("plot_caption_grid", "plot_confusions", "plot_error_budget", "plot_error_vs_depth", "plot_filters",
                 "plot_history"):
        monkeypatch.setattr(suite_page, plot, lambda *a, **k: False)
    write_suite_report(str(report), data, Manifest.load(str(WEIGHTS)), {}, html=True)
    page = (report / "index.html").read_text()
    assert "## Gradient and training parity" in md and "<h2 id='training'>" in page
    for name in (CNN, CAPTIONER):
        assert f"### {name}: gradients PASS, training PASS" in md
        assert f"<summary>{name}: gradients PASS (first diverging weight: none), training PASS</summary>" in page
        assert (report / "img" / f"training_{name}.png").stat().st_size > 5000
        assert f"img/training_{name}.png" in page
    assert "| gradients | training | status |" in md                     # the summary's columns
    for repr_ in ("None", "{'", "[{"):
        assert repr_ not in page.replace("oneDNN", ""), repr_


def _dense_kernel_gradient_off_by_one_percent(monkeypatch):
    backward = core.Dense.backward

    def broken(self, dout):
        dx = backward(self, dout)
        self.grads["kernel"] = self.grads["kernel"] * self.grads["kernel"].dtype.type(1.01)
        return dx

    monkeypatch.setattr(core.Dense, "backward", broken)


def test_a_broken_dense_backward_fails_the_model_naming_the_weight(tmp_path, monkeypatch):
    _dense_kernel_gradient_off_by_one_percent(monkeypatch)
    rc, data = _run(tmp_path, CNN, "--no-html")
    r = data["models"][CNN]
    assert rc == 1 and not r["passed"] and not data["passed"]
    assert r["gradients"]["first_diverging"] == "dense/kernel"            # the first Dense, in Keras order
    assert r["failures"][0].startswith("gradient parity: first diverging weight dense/kernel: max abs err")
    assert all(f.startswith(("gradient parity", "training parity")) for f in r["failures"]), r["failures"]
    md = (tmp_path / "parity.md").read_text()
    assert f"### {CNN}: gradients FAIL" in md
    assert "gradient parity: first diverging weight dense/kernel" in md.split("## Failures", 1)[1]


def test_a_swapped_adam_bias_correction_fails_training_parity(tmp_path, monkeypatch):
    monkeypatch.setattr(O.Adam, "update_step", swapped_adam_bias_correction)
    rc, data = _run(tmp_path, CNN, "--no-html")
    r = data["models"][CNN]
    assert rc == 1 and not r["passed"]
    assert r["gradients"]["passed"]                                      # the backward is intact ...
    assert r["training"]["first_failing_step"] == 1                      # ... the update rule is not
    assert r["failures"] == [f for f in r["failures"] if f.startswith("training parity (Adam): first failing step 1: ")]
    assert r["failures"], r
