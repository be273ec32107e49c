"""``parity`` CLI messages: each mistake a new user makes gets a line that says what to do instead."""

import json
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from parity.cli import main

MODEL = Path(__file__).resolve().parents[2] / "weights" / "cnn_b2_f16_k3_max.h5"


def _err(argv, capsys):
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().err


def test_help_states_the_exit_codes(capsys):
    for argv in (["--help"], ["check", "--help"], ["run", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        out = capsys.readouterr().out
        assert "exit codes" in out and "1  parity was computed and fails" in out
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "The main job (make parity)" in capsys.readouterr().out


def test_parity_run_elsewhere_names_the_working_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rc, err = _err(["run"], capsys)
    assert rc == 2 and f"in the working directory {tmp_path}" in err and "make weights" not in err


def test_a_directory_suggests_saving_one_file(tmp_path, capsys):
    (tmp_path / "sm").mkdir()
    (tmp_path / "sm" / "saved_model.pb").write_bytes(b"")
    rc, err = _err(["check", tmp_path / "sm"], capsys)
    assert rc == 2 and "TensorFlow SavedModel folder" in err and "model.save('m.keras')" in err


def test_architecture_json_and_weights_only_h5_point_to_the_config_flag(tmp_path, capsys):
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps({"class_name": "Sequential", "config": {"layers": []}}))
    rc, err = _err(["check", arch], capsys)
    assert rc == 2 and "--config" in err and "model.to_json()" in err
    weights_only = tmp_path / "w.h5"
    with h5py.File(weights_only, "w") as f:
        f.attrs["layer_names"] = np.array([b"dense"])
    rc, err = _err(["check", weights_only], capsys)
    assert rc == 2 and "--config arch.json" in err and "config=" not in err


def test_a_plain_zip_is_called_what_it_is(tmp_path, capsys):
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as z:
        z.writestr("notes.txt", "hi")
    rc, err = _err(["check", tmp_path / "a.zip"], capsys)
    assert rc == 2 and "a zip archive but not a Keras .keras archive" in err


def test_a_text_file_as_inputs_gets_no_pickle_advice(tmp_path, capsys):
    (tmp_path / "x.txt").write_text("1 2 3\n")
    rc, err = _err(["check", MODEL, "--inputs", tmp_path / "x.txt"], capsys)
    assert rc == 2 and "not an .npz or .npy file" in err and "pickle" not in err


def test_a_one_array_npz_with_another_name_is_noted(tmp_path, capsys):
    from parity.cli_inputs import read_inputs
    import scratch

    np.savez(tmp_path / "x.npz", pictures=np.zeros((2, 32, 32, 1), np.float32))
    xs = read_inputs(str(tmp_path / "x.npz"), scratch.load(MODEL), 2)
    assert xs[0].shape == (2, 32, 32, 1)
    assert "its only array 'pictures' feeds model input" in capsys.readouterr().err


def test_an_overflowing_model_names_the_first_non_finite_node_not_an_engine_source_line(tmp_path, capsys):
    import keras

    inp = keras.Input((3,))
    wide = keras.layers.Dense(4, name="wide")(inp)
    huge = keras.layers.Dense(2, name="huge")(wide)
    model = keras.Model(inp, keras.layers.Dense(1, name="after")(huge))
    model.get_layer("wide").set_weights([np.full((3, 4), 0.5, "float32"), np.zeros(4, "float32")])
    model.get_layer("huge").set_weights([np.full((4, 2), 3e38, "float32"), np.zeros(2, "float32")])
    model.get_layer("after").set_weights([np.ones((2, 1), "float32"), np.zeros(1, "float32")])
    model.save(tmp_path / "overflow.keras")
    x = np.ones((2, 3), "float32")   # wide = 1.5 everywhere; huge = 4 * 1.5 * 3e38 = inf on both sides
    np.savez(tmp_path / "x.npz", x=x)
    rc = main(["check", str(tmp_path / "overflow.keras"), "--inputs", str(tmp_path / "x.npz")])
    out, err = capsys.readouterr()
    assert rc in (0, 1), err   # parity was computed (both sides are +inf at the same elements)
    assert "non-finite values: huge is the first node with NaN or inf (Keras 100.0% of its elements, scratch 100.0%)" \
        in out, out
    assert "RuntimeWarning" not in err and ".py:" not in err, err
