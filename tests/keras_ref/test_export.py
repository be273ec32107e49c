"""The export entry point: a one-epoch smoke run end to end, argument handling, atomic writes."""

import json
import re

import pytest

from keras_ref import export, manifest
from keras_ref.datasets import parse_spec


def test_smoke_export_of_one_grid_model(tmp_path, capsys):
    assert export.main(["--smoke", "--models", "cnn_b2_f16_k3_max", "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "cnn_b2_f16_k3_max" in out and "test macro-F1" in out
    doc = json.loads((tmp_path / "MANIFEST.json").read_text())
    entry = doc["models"]["cnn_b2_f16_k3_max"]
    assert entry["files"] == {"h5": "cnn_b2_f16_k3_max.h5", "keras": "cnn_b2_f16_k3_max.keras"}
    assert entry["epochs"] == 1 and entry["dataset"]["name"] == "digits" and entry["dataset"]["n"] == 359
    assert doc["last_run"]["smoke"] is True
    assert manifest.verify(tmp_path) == []
    assert not list(tmp_path.glob(".tmp-*"))
    import h5py

    with h5py.File(tmp_path / "cnn_b2_f16_k3_max.h5") as f:
        assert "optimizer_weights" not in f and "training_config" not in f.attrs


def test_unknown_model_glob_and_data_spec_are_refused(tmp_path):
    with pytest.raises(SystemExit, match=r"--models 'resnet\*' matches none of: cnn_b2_f16_k3_max"):
        export.main(["--models", "resnet*", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match=r"--data must be intel:/path, flickr8k:/path or coco:/annotations.json,/images. "
                                         r"Received: 'imagenet:/x'"):
        parse_spec("imagenet:/x")
    assert parse_spec("coco:/a.json,/imgs") == ("coco", "/a.json,/imgs")
    assert parse_spec("") == ("", "")


def test_list_names_the_default_set(capsys):
    assert export.main(["--list"]) == 0
    names = capsys.readouterr().out.split()
    assert len(names) == 16 + 1 + 8 and "lc2d_twin" in names and "cap_lstm2_init" in names


def test_save_atomic_leaves_nothing_behind_on_failure(tmp_path):
    def broken(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        manifest.save_atomic(tmp_path / "m.h5", broken)
    assert list(tmp_path.iterdir()) == []
    manifest.save_atomic(tmp_path / "m.h5", lambda tmp: open(tmp, "w").write("ok"))
    assert [p.name for p in tmp_path.iterdir()] == ["m.h5"]


def test_summary_tables():
    entries = {
        "cnn_x": {"task": "classification", "params": 1234, "epochs": 3, "train_seconds": 1.25,
                  "metrics": {"val_macro_f1": 0.5, "macro_f1": 0.75, "accuracy": 0.8}},
        "cap_y": {"task": "captioning", "params": 99, "epochs": 2, "train_seconds": 3.0,
                  "metrics": {"bleu1": 0.9, "bleu2": 0.8, "bleu3": 0.7, "bleu4": 0.6},
                  "samples": [{"id": "s0", "generated": "a red one", "references": ["a small red one"]}]},
    }
    text = export.summary(entries)
    rows = [re.split(r"\s{2,}", line.strip()) for line in text.splitlines()]
    assert ["cnn_x", "1,234", "0.5000", "0.7500", "0.8000", "3", "1.2"] in rows
    assert ["cap_y", "99", "0.9000", "0.8000", "0.7000", "0.6000", "2", "3.0"] in rows
    assert ["captioner", "params", "BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "epochs", "train s"] in rows
    assert "cap_y [s0] 'a red one'  (ref: 'a small red one')" in text
