"""``parity check``: exit codes 0/1/2, the per-layer table, reports, and perturbed layers caught."""

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from parity.cli import main
from parity.cli_inputs import random_inputs

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import keras

    L = keras.layers
    keras.utils.set_random_seed(5)
    folder = tmp_path_factory.mktemp("cli")
    seq = keras.Sequential([keras.Input((5, 3)), L.Dense(4, name="proj"), L.LSTM(6, name="lstm"),
                            L.Dense(3, name="head")], name="seq_lstm")
    seq.save(folder / "lstm.keras")
    # 8x8 -> valid 6x6 -> 'same' stride 2: total padding 1, so the split (0 before, 1 after) matters.
    conv = keras.Sequential([keras.Input((8, 8, 2)), L.Conv2D(3, 3, name="conv_valid"),
                             L.Conv2D(4, 3, strides=2, padding="same", name="conv_same"),
                             L.Flatten(name="flat"), L.Dense(2, name="out")], name="conv")
    conv.save(folder / "conv.h5")
    tok = keras.Input((7,), dtype="int32", name="tokens")
    text = keras.Model(tok, L.Dense(2, name="cls")(L.LSTM(4, name="rnn")(
        L.Embedding(11, 5, mask_zero=True, name="emb")(tok))), name="text")
    text.save(folder / "text.keras")
    bad = keras.Sequential([keras.Input((4,)), L.Dense(3, name="d"), L.RMSNormalization(name="rms"),
                            L.Discretization(bin_boundaries=[0.0], name="disc")])
    bad.save(folder / "unsupported.h5")
    return folder


def _run(argv, capsys):
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_parity_holds_exit_0_with_table_reports_and_junit(models, tmp_path, capsys):
    junit, report = tmp_path / "j.xml", tmp_path / "rep"
    rc, out, err = _run(["check", models / "lstm.keras", "--float64-truth", "--report", report, "--junit", junit],
                        capsys)
    assert rc == 0, out + err
    assert "first diverging layer: none" in out and "PASS: 3/3 layers" in out
    for name in ("proj", "lstm", "head"):
        assert f" {name} " in out
    data = json.loads((report / "parity.json").read_text())
    assert data["result"]["passed"] and "truth" in data["result"]["layers"][0]
    assert data["environment"]["onednn_enabled"] in (True, False)
    assert (report / "img" / "error_vs_depth.png").stat().st_size > 1000
    assert "<img src='img/error_vs_depth.png'" in (report / "index.html").read_text()
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("tests") == "3" and suite.get("failures") == "0"


def _swap_lstm_gates(monkeypatch):
    """Run scratch LSTMs with gate columns i, c, f, o instead of Keras's i, f, c, o."""
    from scratch.layers import recurrent_cells

    original = recurrent_cells.lstm_cell.forward

    def swapped(layer, x, states):
        saved = dict(layer.weights)
        try:
            for name in ("kernel", "recurrent_kernel", "bias"):
                if name in layer.weights:
                    i, f, c, o = np.split(layer.weights[name], 4, axis=-1)
                    layer.weights[name] = np.concatenate([i, c, f, o], axis=-1)
            return original(layer, x, states)
        finally:
            layer.weights.update(saved)

    monkeypatch.setattr(recurrent_cells.lstm_cell, "forward", swapped)


def _swap_same_padding_split(monkeypatch):
    """Put the odd extra 'same' padding cell before (top/left) instead of after, as TF does."""
    from scratch.layers import windows

    def flipped(n, k, s, d=1):
        before, after = original(n, k, s, d)
        return after, before

    original = windows.same_padding
    monkeypatch.setattr(windows, "same_padding", flipped)


def test_swapped_lstm_gates_exit_1_naming_the_lstm(models, tmp_path, capsys, monkeypatch):
    _swap_lstm_gates(monkeypatch)
    junit = tmp_path / "j.xml"
    rc, out, _ = _run(["check", models / "lstm.keras", "--junit", junit], capsys)
    assert rc == 1
    assert "first diverging layer: lstm:" in out
    failures = [c.get("name") for c in ET.parse(junit).getroot().iter("testcase") if c.find("failure") is not None]
    assert failures[0] == "001 lstm (LSTM)"


def test_flipped_padding_split_exit_1_naming_the_strided_same_conv(models, capsys, monkeypatch):
    _swap_same_padding_split(monkeypatch)
    rc, out, _ = _run(["check", models / "conv.h5", "--float64-truth", "--fail-fast"], capsys)
    assert rc == 1
    assert "first diverging layer: conv_same:" in out
    # the float64 truth shares scratch's (now wrong) padding: the verdict must not blame rounding
    assert "a semantic difference in scratch, e.g. padding or gate order, moves the truth with it" in out
    assert " flat " not in out          # --fail-fast stops at the first diverging layer


def test_inputs_npz_and_random_ids_below_input_dim(models, tmp_path, capsys):
    import scratch
    from parity import keras_runner as kr

    model = scratch.load(models / "text.keras")
    xs = random_inputs(model, kr.layer_infos(kr.load_model(models / "text.keras")), 200, seed=1)
    assert xs[0].dtype == np.int32 and xs[0].min() == 0 and xs[0].max() == 10   # ids in [0, input_dim)
    npz = tmp_path / "x.npz"
    np.savez(npz, tokens=xs[0][:5])
    rc, out, _ = _run(["check", models / "text.keras", "--inputs", npz], capsys)
    assert rc == 0 and "5 sample(s)" in out and f"from {npz}" in out


# ---- exit code 2: one line, no traceback, before TensorFlow is imported ---------------------------
PROBE = ("import sys; from parity.cli import main; rc = main(sys.argv[1:]); "
         "print('tensorflow imported' if 'tensorflow' in sys.modules else 'no tensorflow'); sys.exit(rc)")


def _subprocess(*args):
    return subprocess.run([sys.executable, "-c", PROBE, *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, models):
    folder = tmp_path_factory.mktemp("bad")
    (folder / "notes.h5").write_text("not a model\n")
    data = (models / "conv.h5").read_bytes()
    (folder / "truncated.h5").write_bytes(data[: len(data) // 3])
    np.savez(folder / "wrong_shape.npz", arr_0=np.zeros((2, 9, 8, 2), np.float32))
    np.savez(folder / "wrong_key.npz", image=np.zeros((2, 8, 8, 2), np.float32), labels=np.zeros(2))
    (folder / "garbage.npz").write_bytes(b"PK\x03\x04garbage")
    np.savez(folder / "float_ids.npz", tokens=np.full((2, 7), 0.5))
    (folder / "garbage.json").write_text("{not json")
    return folder


@pytest.mark.parametrize("args, reason", [
    (["check", "{bad}/missing.h5"], r"missing.h5: no such file"),
    (["check", "{bad}/notes.h5"], r"not a Keras model file \(neither HDF5 nor a .keras zip archive"),
    (["check", "{bad}/truncated.h5"], r"truncated\.h5: .*(truncated|corrupt)"),
    (["check", "{models}/unsupported.h5"], r"unsupported layer\(s\): rms \(RMSNormalization\), disc \(Discretization\)"),
    (["check", "{models}/conv.h5", "--inputs", "{bad}/wrong_shape.npz"],
     r"array 'arr_0' has shape \(2, 9, 8, 2\), model input '.*' expects \(N, 8, 8, 2\)"),
    (["check", "{models}/text.keras", "--inputs", "{bad}/wrong_key.npz"], r"no array for model input 'tokens'"),
    (["check", "{models}/conv.h5", "--inputs", "{bad}/garbage.npz"], r"cannot read as \.npz"),
    (["check", "{models}/text.keras", "--inputs", "{bad}/float_ids.npz"], r"non-integer values for integer input 'tokens'"),
    (["check", "{models}/conv.h5", "--config", "{bad}/missing.json"], r"missing\.json: no such file"),
    (["check", "{models}/conv.h5", "--config", "{bad}/garbage.json"], r"garbage\.json: the model config is not valid JSON"),
    (["check", "{models}/conv.h5", "--samples", "0"], r"--samples must be >= 1"),
    (["check", "{models}/conv.h5", "--atol"], r"argument --atol: expected one argument"),
    (["frobnicate"], r"invalid choice: 'frobnicate'"),
])
def test_bad_input_exit_2_one_line_no_traceback_no_tensorflow(args, reason, models, bad_files):
    proc = _subprocess(*[a.format(bad=bad_files, models=models) for a in args])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("parity: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    import re

    assert re.search(reason, lines[0]), lines[0]
    assert proc.stdout.strip() == "no tensorflow"


def test_installed_console_script_and_module_entry_point(bad_files):
    script = shutil.which("parity", path=os.path.dirname(sys.executable))
    assert script, "the 'parity' console script is not installed next to the interpreter"
    for cmd in ([script], [sys.executable, "-m", "parity"]):
        proc = subprocess.run([*cmd, "check", str(bad_files / "notes.h5")], capture_output=True, text=True,
                              cwd=ROOT, timeout=120)
        assert proc.returncode == 2 and "not a Keras model file" in proc.stderr


def test_tolerance_overrides_are_on_every_record(models, tmp_path, capsys):
    junit, report = tmp_path / "j.xml", tmp_path / "rep"
    rc, out, _ = _run(["check", models / "conv.h5", "--atol", "1e-3", "--report", report, "--junit", junit], capsys)
    assert rc == 0
    assert "tolerance: OVERRIDDEN by --atol 0.001" in out and "err/tol" in out and "headroom" in out
    assert "OVERRIDDEN by --atol 0.001" in (report / "parity.md").read_text()
    assert "OVERRIDDEN by --atol 0.001" in (report / "index.html").read_text()
    data = json.loads((report / "parity.json").read_text())
    assert data["result"]["tolerance_overrides"] == {"atol": 0.001}
    assert all(r["atol"] == 0.001 and 0 <= r["headroom"] < 1 for r in data["result"]["layers"])
    props = {p.get("name"): p.get("value") for p in ET.parse(junit).getroot().iter("property")}
    assert props == {"tolerance": "overridden", "tolerance.atol_override": "0.001"}


def test_the_policy_run_says_so(models, tmp_path, capsys):
    junit = tmp_path / "j.xml"
    rc, out, _ = _run(["check", models / "conv.h5", "--junit", junit], capsys)
    assert rc == 0 and "tolerance: the policy (parity/tolerance.py), no overrides" in out
    props = {p.get("name"): p.get("value") for p in ET.parse(junit).getroot().iter("property")}
    assert props == {"tolerance": "policy"}


def test_random_inputs_are_pixels_where_the_model_preprocesses_images_itself(tmp_path):
    """keras.applications rescale and normalize inside the model: N(0, 1) "pixels" would be a flat image."""
    import keras

    import scratch
    from parity import keras_runner as kr

    inp = keras.Input((4, 4, 3))
    scaled = keras.layers.Rescaling(1 / 255.0)(inp)
    other = keras.Input((5, 2))
    normed = keras.layers.Normalization(mean=[100.0, -3.0], variance=[400.0, 0.25])(other)
    plain = keras.Input((6,))
    keras.Model([inp, other, plain], [scaled, normed, plain]).save(tmp_path / "pre.keras")
    model = scratch.load(tmp_path / "pre.keras")
    pixels, stats, gauss = random_inputs(model, kr.layer_infos(kr.load_model(tmp_path / "pre.keras")), 400, seed=0)
    assert pixels.min() >= 0 and pixels.max() <= 255 and pixels.max() > 250 and pixels.mean() > 100
    np.testing.assert_allclose(stats.reshape(-1, 2).mean(axis=0), [100.0, -3.0], rtol=0.02)
    np.testing.assert_allclose(stats.reshape(-1, 2).std(axis=0), [20.0, 0.5], rtol=0.05)
    assert abs(gauss.mean()) < 0.1 and abs(gauss.std() - 1) < 0.05
