"""Refusals and corrupt files: the project's own error types, with messages that name the problem."""

import builtins
import marshal
import shutil

import h5py
import numpy as np
import pytest

import scratch
from scratch.errors import ModelFileError, UnsupportedLayerError, WeightMismatchError

keras = pytest.importorskip("keras")
layers = keras.layers


# ---- code is never run --------------------------------------------------------------------
def test_lambda_h5_is_refused_and_its_code_never_runs(tmp_path, monkeypatch):
    marker = tmp_path / "lambda_ran"

    def side_effect(x):
        marker.write_text("ran")   # what the lambda's code would do if anything executed it
        return x * 2.0

    inp = keras.Input((3,), name="x")
    y = layers.Dense(2)(layers.Lambda(side_effect, name="doubler")(inp))
    keras.Model(inp, y).save(tmp_path / "lambda.h5")
    marker.unlink()   # Keras itself ran the function while building the model

    def forbidden(*args, **kwargs):
        raise AssertionError("the loader tried to turn file contents into code")

    monkeypatch.setattr(marshal, "loads", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    monkeypatch.setattr(builtins, "eval", forbidden)
    with pytest.raises(UnsupportedLayerError, match=r"'doubler' \(Lambda\): Lambda layers carry Python code"):
        scratch.load(tmp_path / "lambda.h5")
    assert not marker.exists()


@keras.saving.register_keras_serializable(package="evil")
class EvilDense(layers.Dense):
    """A custom registered layer: its class would have to be imported to rebuild it."""


def test_custom_registered_object_is_refused_by_name(tmp_path):
    inp = keras.Input((3,))
    keras.Model(inp, EvilDense(2, name="evil_dense")(inp)).save(tmp_path / "custom.keras")
    with pytest.raises(UnsupportedLayerError) as info:
        scratch.load(tmp_path / "custom.keras")
    assert "'evil_dense' (EvilDense): custom object 'EvilDense' registered as 'evil>EvilDense'" in str(info.value)
    assert info.value.layers == [("evil_dense", "EvilDense")]


def test_module_outside_keras_is_refused_by_name(tmp_path):
    inp = keras.Input((3,))
    model = keras.Model(inp, layers.Dense(2, name="d")(inp))
    model.save_weights(tmp_path / "w.weights.h5")
    text = model.to_json()
    assert '"module": "keras.layers", "class_name": "Dense"' in text
    text = text.replace('"module": "keras.layers", "class_name": "Dense"', '"module": "os", "class_name": "Dense"')
    (tmp_path / "c.json").write_text(text)
    with pytest.raises(UnsupportedLayerError, match=r"'d' \(Dense\): custom object 'Dense' from module 'os'; the "
                                                    r"engine runs only built-in Keras classes and never imports"):
        scratch.load(tmp_path / "w.weights.h5", config=tmp_path / "c.json")


def test_every_unsupported_layer_is_listed_at_once(tmp_path):
    # ConvLSTM1D: a layer the coverage issue does not add (Conv1D, which stood here, is supported now).
    encoder = keras.Sequential([keras.Input((6, 4, 1)), layers.ConvLSTM1D(3, 2, name="convlstm")], name="encoder")
    inp = keras.Input((6, 4, 1), name="x")
    h = layers.AdaptiveMaxPooling1D(2, name="amax")(encoder(inp))
    y = layers.Dense(2)(layers.AdaptiveAveragePooling1D(1, name="apool1d")(h))
    keras.Model(inp, y).save(tmp_path / "two.h5")
    with pytest.raises(UnsupportedLayerError, match=r"3 unsupported layer\(s\) in .*two\.h5") as info:
        scratch.load(tmp_path / "two.h5")
    assert info.value.layers == [("encoder/convlstm", "ConvLSTM1D"), ("amax", "AdaptiveMaxPooling1D"),
                                 ("apool1d", "AdaptiveAveragePooling1D")]
    assert "no scratch implementation of this layer type" in str(info.value)


def test_unsupported_configuration_is_a_refusal(tmp_path):
    inp = keras.Input((5, 2))
    y = layers.LSTM(3, go_backwards=True, dropout=0.5, stateful=False, name="rnn")(inp)
    cfg = keras.Model(inp, y).to_json().replace('"units": 3', '"units": 3, "bogus_key": 1')
    (tmp_path / "c.json").write_text(cfg)
    keras.Model(inp, y).save_weights(tmp_path / "c.weights.h5")
    with pytest.raises(UnsupportedLayerError, match=r"'rnn' \(LSTM\): unsupported configuration: .*bogus_key"):
        scratch.load(tmp_path / "c.weights.h5", config=tmp_path / "c.json")


# ---- corrupt files ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    d = tmp_path_factory.mktemp("corrupt")
    inp = keras.Input((4,), name="x")
    model = keras.Model(inp, layers.Dense(3, name="dense")(layers.Dense(4, name="hidden")(inp)))
    model.save(d / "m.h5")
    model.save(d / "m.keras")
    model.save_weights(d / "m.weights.h5")
    (d / "m.json").write_text(model.to_json())
    return d


def _copy(saved, tmp_path, name):
    shutil.copy(saved / name, tmp_path / name)
    return tmp_path / name


@pytest.mark.parametrize("name, match", [
    ("m.h5", r"m\.h5: cannot read the HDF5 file \(truncated or corrupt\?\)"),
    ("m.keras", r"m\.keras: cannot read the \.keras archive \(truncated or corrupt\?\)"),
])
def test_truncated_files(saved, tmp_path, name, match):
    path = _copy(saved, tmp_path, name)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match=match):
        scratch.load(path)


def test_not_a_model_file(tmp_path):
    (tmp_path / "notes.h5").write_text("hello")
    with pytest.raises(ModelFileError, match=r"notes\.h5: not a Keras model file \(neither HDF5 nor a \.keras zip"):
        scratch.load(tmp_path / "notes.h5")
    with pytest.raises(ModelFileError, match=r"missing\.h5: no such file"):
        scratch.load(tmp_path / "missing.h5")


def test_missing_dataset_legacy_h5(saved, tmp_path):
    path = _copy(saved, tmp_path, "m.h5")
    with h5py.File(path, "r+") as f:
        del f["model_weights/dense/dense/kernel"]
    with pytest.raises(WeightMismatchError, match=r"m\.h5: layer 'dense' \(Dense\): weight 'dense/kernel' is listed "
                                                  r"in weight_names but its dataset '/model_weights/dense/dense/kernel'"
                                                  r" is missing"):
        scratch.load(path)


def test_wrong_shape_dataset_legacy_h5(saved, tmp_path):
    path = _copy(saved, tmp_path, "m.h5")
    with h5py.File(path, "r+") as f:
        del f["model_weights/dense/dense/kernel"]
        f["model_weights/dense/dense/kernel"] = np.zeros((5, 3), "float32")
    with pytest.raises(WeightMismatchError, match=r"m\.h5: layer 'dense' \(Dense\) weight 'kernel': expected shape "
                                                  r"\(4, 3\), found \(5, 3\) in dataset "
                                                  r"'/model_weights/dense/dense/kernel'"):
        scratch.load(path)


def test_missing_and_wrong_shape_in_weights_h5(saved, tmp_path):
    path = _copy(saved, tmp_path, "m.weights.h5")
    with h5py.File(path, "r+") as f:
        del f["layers/dense_1/vars/1"]
    with pytest.raises(WeightMismatchError, match=r"layer 'dense' \(Dense\): weight 'bias' is missing "
                                                  r"\(no dataset 'layers/dense_1/vars/1'\)"):
        scratch.load(path, config=saved / "m.json")
    with h5py.File(path, "r+") as f:
        f["layers/dense_1/vars/1"] = np.zeros((7,), "float32")
    with pytest.raises(WeightMismatchError, match=r"weight 'bias': expected shape \(3,\), found \(7,\) in dataset "
                                                  r"'layers/dense_1/vars/1'"):
        scratch.load(path, config=saved / "m.json")


def test_weights_only_file_needs_a_config(saved, tmp_path):
    with pytest.raises(ModelFileError, match=r"m\.weights\.h5: the HDF5 file holds no model_config .*config="):
        scratch.load(saved / "m.weights.h5")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ModelFileError, match=r"bad\.json: the model config is not valid JSON"):
        scratch.load(saved / "m.weights.h5", config=tmp_path / "bad.json")


def test_weights_for_an_unknown_layer(saved, tmp_path):
    path = _copy(saved, tmp_path, "m.h5")
    with h5py.File(path, "r+") as f:
        cfg = f.attrs["model_config"]
        f.attrs["model_config"] = cfg.replace(b'"hidden"', b'"renamed"') if isinstance(cfg, bytes) else \
            cfg.replace('"hidden"', '"renamed"')
    with pytest.raises(WeightMismatchError, match=r"layer 'renamed' \(Dense\) has 2 weights but the file has no "
                                                  r"weights group '/model_weights/renamed'"):
        scratch.load(path)
