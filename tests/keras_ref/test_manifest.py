"""The committed weights/: checksums, schema, supported layers, reproducible test splits, real metrics."""

import json
import shutil
from pathlib import Path

import pytest

from keras_ref import manifest
from keras_ref.captioner import captioner_configs
from keras_ref.cnn import grid_configs
from keras_ref.data import array_sha256, ids_sha256, load_digits_split
from keras_ref.scenes import load_digit_scenes
from keras_ref.saved_config import saved_model_config
from tests.support import engine_refusals, expected_grid_params

WEIGHTS = Path(__file__).resolve().parents[2] / "weights"
# The target: the committed default set stays under ~25 MB.
SIZE_BUDGET = 25 * 10**6


@pytest.fixture(scope="module")
def doc():
    path = WEIGHTS / manifest.MANIFEST_NAME
    assert path.is_file(), "weights/MANIFEST.json is missing: run `make weights`"
    return json.loads(path.read_text())


def test_every_listed_file_matches_its_checksum():
    assert manifest.verify(WEIGHTS) == []


def test_the_default_set_is_complete(doc):
    expected = set(grid_configs()) | {"lc2d_twin"} | set(captioner_configs())
    assert set(doc["models"]) == expected
    assert set(doc["versions"]) >= {"keras", "tensorflow", "tf_keras", "numpy", "python"}
    roles = {"cnn_grid": {"h5", "keras"}, "lc2d_twin": {"h5"},
             "captioner": {"h5", "encoder_json", "step_json", "vocab"}}
    for name, e in doc["models"].items():
        assert set(e["files"]) == roles[e["family"]], name
        for key in ("task", "framework", "dataset", "hyper_parameters", "params", "train_seconds", "history",
                    "metrics", "epochs"):
            assert key in e, (name, key)
        assert len(e["history"]["loss"]) == e["epochs"]


def test_weights_folder_stays_within_budget():
    assert sum(p.stat().st_size for p in WEIGHTS.iterdir() if p.is_file()) < SIZE_BUDGET


def test_saved_configs_use_only_supported_layers(doc):
    models = [f for e in doc["models"].values() for role, f in e["files"].items() if role != "vocab"]
    assert len(models) == 16 * 2 + 1 + 8 * 3
    for name in models:
        assert engine_refusals(saved_model_config(WEIGHTS / name)) == [], name


WEIGHTED = {"Conv2D", "Dense", "BatchNormalization", "Embedding", "SimpleRNN", "LSTM"}


def test_captioner_graphs_take_every_weight_from_the_training_file(doc):
    """The encoder/step graphs carry no weights of their own: each weighted layer they use must have
    its weights in the training model's .h5 (scratch and Keras load them by layer name)."""
    import h5py

    for name, e in doc["models"].items():
        if e["task"] != "captioning":
            continue
        with h5py.File(WEIGHTS / e["files"]["h5"], "r") as f:
            held = {n for n in f["model_weights"] if len(f["model_weights"][n].attrs["weight_names"])}
        for role, core in (("encoder_json", "img_dense"), ("step_json", "rnn1")):
            graph = json.loads((WEIGHTS / e["files"][role]).read_text())["config"]["layers"]
            used = {l["config"]["name"] for l in graph if l["class_name"] in WEIGHTED}
            assert core in used and used <= held, (name, role, used - held)


def test_grid_parameter_counts_follow_the_architecture(doc):
    for name, cfg in grid_configs().items():
        assert doc["models"][name]["params"] == expected_grid_params(cfg), name
    twin = doc["models"]["lc2d_twin"]
    assert twin["twin_of"] in grid_configs()
    assert twin["conv_twin_params"] == doc["models"][twin["twin_of"]]["params"] < twin["params"]


def test_recorded_test_splits_regenerate_identically(doc):
    checked = set()
    for e in doc["models"].values():
        d = e["dataset"]
        key = (d["loader"], json.dumps(d["kwargs"], sort_keys=True))
        if key in checked:
            continue
        checked.add(key)
        if d["loader"] == "keras_ref.data.load_digits_split":
            x, _, ids = load_digits_split(**d["kwargs"])["test"]
        elif d["loader"] == "keras_ref.data.load_digit_scenes":
            # Each split has its own random stream, so the test split alone is cheap to rebuild.
            kwargs = dict(d["kwargs"], n_train=0, n_val=0)
            split = load_digit_scenes(progress=False, **kwargs)["test"]
            x, ids = split["images"], split["ids"]
        else:
            pytest.fail(f"default weights should use embedded data, found {d['loader']}")
        assert (len(ids), ids_sha256(ids), array_sha256(x)) == (d["n"], d["ids_sha256"], d["x_sha256"])
    assert len(checked) == 2


def test_models_really_work(doc):
    for name, e in doc["models"].items():
        if e["task"] == "classification":
            assert e["metrics"]["macro_f1"] > 0.5, name          # chance is 0.1
        else:
            m = e["metrics"]
            assert m["bleu4"] >= 0.5, name
            assert m["bleu1"] >= m["bleu2"] >= m["bleu3"] >= m["bleu4"]
            assert len(e["samples"]) == 2 and all(s["generated"] for s in e["samples"])


def test_vocab_files_follow_the_protocol(doc):
    for name, e in doc["models"].items():
        if e["task"] != "captioning":
            continue
        v = json.loads((WEIGHTS / e["files"]["vocab"]).read_text())
        assert v["itos"][:4] == ["<pad>", "<start>", "<end>", "<unk>"] and v["pad"] == 0
        assert (v["start"], v["end"], v["unk"]) == (1, 2, 3)
        assert v["max_len"] == e["hyper_parameters"]["max_len"]
        assert len(v["itos"]) == e["hyper_parameters"]["vocab_size"]


def test_verify_catches_tampering(tmp_path, doc):
    smallest = min((n for n in doc["files"]), key=lambda n: doc["files"][n]["size"])
    owner = next(n for n, e in doc["models"].items() if smallest in e["files"].values())
    shutil.copy(WEIGHTS / manifest.MANIFEST_NAME, tmp_path)
    for fname in doc["models"][owner]["files"].values():
        shutil.copy(WEIGHTS / fname, tmp_path)
    sub = dict(doc, models={owner: doc["models"][owner]},
               files={f: doc["files"][f] for f in doc["models"][owner]["files"].values()})
    (tmp_path / manifest.MANIFEST_NAME).write_text(json.dumps(sub))
    assert manifest.verify(tmp_path) == []
    data = bytearray((tmp_path / smallest).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / smallest).write_bytes(bytes(data))
    assert manifest.verify(tmp_path) == [f"{smallest}: sha256 mismatch"]
    (tmp_path / smallest).unlink()
    assert manifest.verify(tmp_path) == [f"{smallest}: missing"]
    (tmp_path / smallest).write_bytes(bytes(data))
    (tmp_path / "old.step.h5").write_bytes(b"")           # a leftover from an earlier export layout
    assert manifest.verify(tmp_path) == [f"{smallest}: sha256 mismatch", "old.step.h5: model file not in the manifest"]
