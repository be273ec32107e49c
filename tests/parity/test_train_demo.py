"""``make train-demo`` in its reduced configuration: both sides train from the same weights on the same
batches, agree on epoch 1 within the drift budget, the scratch side is reproducible bit for bit, the
report and make parity's page show the result, and a broken update rule or batch order is caught."""

import inspect
import json
import math
import os
import stat

import numpy as np
import pytest

from parity import report, suite_page
from parity import train_demo as TD
from parity import train_demo_sides as sides
from parity.tolerance import training_budget
from parity.train_demo_page import metric_rows
from scratch import optimizers as O
from tests.support import swapped_adam_bias_correction


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """Each demo built and trained once on both sides (the Keras runs are the slow part)."""
    folder = tmp_path_factory.mktemp("train-demo")
    data, runs = TD.header(True, TD.SEED), {}
    data["wall_time_s"] = 0.0
    for kind, cls in TD.DEMOS.items():
        demo = cls(TD.QUICK[kind], TD.SEED, folder)
        keras = demo.keras_side()
        scratch, smodel = demo.scratch_side()
        runs[kind] = (demo, keras, scratch)
        data[kind] = demo.result(keras, scratch, smodel)
    TD.write(data, str(folder / "reports"))
    return folder / "reports", data, runs


def test_report_holds_both_sides(quick):
    out, data, _ = quick
    path = out / "train_demo.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    saved = json.loads(path.read_text())
    assert saved["passed"] and saved["quick"]
    for kind, metric in (("cnn", "macro_f1"), ("captioner", "bleu")):
        r = saved[kind]
        assert r["same_initial_weights"] and r["agreement"]["same_batches"]
        for side in ("keras", "scratch"):
            assert metric in r[side] and len(r[side]["history"]["val_loss"]) == r[side]["epochs_run"]
    assert len(saved["captioner"]["scratch"]["bleu"]) == 4
    assert "| cnn_b2_f16_k3_max (cnn) | macro-F1 |" in (out / "train_demo.md").read_text()


def test_epoch1_losses_agree_within_the_training_budget(quick):
    _, data, runs = quick
    for kind, (demo, keras, scratch) in runs.items():
        a = data[kind]["agreement"]
        steps = math.ceil(len(demo.data["train"][1]) / demo.settings["batch_size"])
        k1, s1 = keras["history"]["loss"][0], scratch["history"]["loss"][0]
        budget = training_budget(np.float32, step=steps, scale=abs(k1), lr=0.0, reduction=a["reduction"])
        assert abs(s1 - k1) <= budget, (kind, s1, k1, budget)


def test_scratch_side_is_reproducible(quick):
    _, _, runs = quick
    for kind, (demo, _, first) in runs.items():
        again, _ = demo.scratch_side()
        assert again["history"] == first["history"], kind
        assert all(np.array_equal(a, b) for a, b in zip(again["weights"], first["weights"])), kind


def test_page_and_markdown_show_the_latest_demo(quick, tmp_path):
    out, data, _ = quick
    parts = "".join(suite_page.train_demo_section(str(out / "train_demo.json"), report.html_table))
    f1 = f"{data['cnn']['scratch']['macro_f1']:.4f}"
    assert "Training in NumPy vs Keras (latest make train-demo)" in parts and f1 in parts and "agree" in parts
    lines = "\n".join(report.train_demo_md(str(out / "train_demo.json"), report.md_table))
    assert f1 in lines and "BLEU-1..4" in lines
    assert "make train-demo" in "".join(suite_page.train_demo_section(str(tmp_path / "none.json"), report.html_table))
    # the hooks: make parity's page and parity.md call these two with the report folder's train_demo.json
    assert 'train_demo_section(os.path.join(folder, "train_demo.json")' in inspect.getsource(suite_page.write_index)
    assert 'train_demo_md(os.path.join(folder, "train_demo.json"), md_table)' in inspect.getsource(report.write_suite_report)


def _disagreement(demo, keras):
    scratch, smodel = demo.scratch_side()
    a = sides.agreement(demo.kmodel, smodel, keras, scratch, demo.settings, len(demo.data["train"][1]))
    return a, {demo.kind: demo.result(keras, scratch, smodel)}


def test_broken_adam_bias_correction_is_a_disagreement(quick, monkeypatch):
    _, _, runs = quick
    demo, keras, _ = runs["cnn"]
    monkeypatch.setattr(O.Adam, "update_step", swapped_adam_bias_correction)
    a, data = _disagreement(demo, keras)
    assert not a["passed"] and a["epoch1_loss_diff"] > a["epoch1_loss_budget"]
    assert metric_rows(data)[0][-1] == "DISAGREE"    # what the report shows


def test_another_batch_order_is_a_disagreement(quick, monkeypatch):
    _, _, runs = quick
    demo, keras, _ = runs["captioner"]
    monkeypatch.setattr(demo, "seed", demo.seed + 1)    # scratch shuffles with another seed than Keras's feed
    a, _ = _disagreement(demo, keras)
    assert not a["passed"] and a["epoch1_loss_diff"] > a["epoch1_loss_budget"]


def test_exit_code_says_whether_the_sides_agree(quick, monkeypatch, capsys):
    _, data, _ = quick
    monkeypatch.setattr(TD, "run", lambda **kw: data)
    assert TD.main(["--quick"]) == 0
    monkeypatch.setattr(TD, "run", lambda **kw: dict(data, passed=False))
    assert TD.main(["--quick"]) == 1
    assert "the sides DISAGREE on epoch 1" in capsys.readouterr().out
