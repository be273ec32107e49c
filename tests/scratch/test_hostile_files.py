"""Damaged HDF5 files and .keras archives, and hostile predict inputs: each is a named ScratchError.

Seeds are the small Keras-written models of parity/fuzz_seeds (no TensorFlow needed here).
"""

import shutil
import struct
import zipfile

import h5py
import numpy as np
import pytest

import scratch
from parity.fuzz_cases import SEEDS, _patch_headers, _zip_rewrite
from scratch.errors import InputError, ModelFileError, ResourceError, WeightMismatchError

KERNEL = "model_weights/hidden/hidden/kernel"   # Keras 3 legacy .h5: no ':0'


@pytest.fixture
def h5(tmp_path):
    path = tmp_path / "m.h5"
    shutil.copy(SEEDS / "k3_mlp.h5", path)
    return path


def test_seed_names_the_kernel_dataset(h5):
    with h5py.File(h5) as f:
        assert isinstance(f[KERNEL], h5py.Dataset) and f[KERNEL].shape == (4, 5)


@pytest.mark.parametrize("dtype, shown", [
    ("int32", "int32"), ("bool", "bool"), ("complex64", "complex64"), ("S3", "|S3"),
    ([("a", "<f4"), ("b", "<i4")], r"\[\('a', '<f4'\), \('b', '<i4'\)\]"), ("V4", "|V4"),
])
def test_non_float_weights_are_refused_from_the_header(h5, dtype, shown):
    with h5py.File(h5, "r+") as f:
        del f[KERNEL]
        f[KERNEL] = np.zeros((4, 5), dtype=dtype)
    with pytest.raises(WeightMismatchError, match=rf"layer 'hidden' \(Dense\) weight 'kernel': dataset "
                                                  rf"'/{KERNEL}' has dtype {shown}; weights must be float16, float32"):
        scratch.load(h5)


def test_float16_and_float64_weights_load_cast_as_keras_casts(h5):
    with h5py.File(h5, "r+") as f:
        values = f[KERNEL][()]
        del f[KERNEL]
        f[KERNEL] = values.astype("float16")
    model = scratch.load(h5)
    assert model.get_layer("hidden").weights["kernel"].dtype == np.float32
    np.testing.assert_array_equal(model.get_layer("hidden").weights["kernel"], values.astype("float16"))


def test_huge_unwritten_dataset_is_refused_before_reading(h5):
    with h5py.File(h5, "r+") as f:
        del f[KERNEL]
        f.create_dataset(KERNEL, shape=(10 ** 6, 10 ** 6), dtype="float32", chunks=(64, 64))
    with pytest.raises(WeightMismatchError, match=r"expected shape \(4, 5\), found \(1000000, 1000000\)"):
        scratch.load(h5)


@pytest.mark.parametrize("how, match", [
    ("group", r"'/model_weights/hidden/hidden/kernel' should be a dataset, found Group"),
    ("soft_loop", r"'/model_weights/hidden' is a soft link to '/model_weights/hidden'; Keras files hold none"),
    ("external", r"is an external link to '/nonexistent.h5'; Keras files hold none"),
    ("external_storage", r"keeps its data in external files elsewhere; Keras files hold none"),
    ("attr_type", r"an entry of attribute 'weight_names' .* should be text, found int"),
    ("config_type", r"attribute model_config\): the model config should be JSON text, found int"),
])
def test_h5_structure_damage_is_named(h5, how, match):
    with h5py.File(h5, "r+") as f:
        if how == "group":
            del f[KERNEL]
            f.create_group(KERNEL)
        elif how == "soft_loop":
            del f["model_weights/hidden"]
            f["model_weights/hidden"] = h5py.SoftLink("/model_weights/hidden")
        elif how == "external":
            del f["model_weights/hidden"]
            f["model_weights/hidden"] = h5py.ExternalLink("/nonexistent.h5", "/x")
        elif how == "external_storage":
            del f[KERNEL]
            f.create_dataset(KERNEL, shape=(4, 5), dtype="float32", external=[("/dev/zero", 0, h5py.h5f.UNLIMITED)])
        elif how == "attr_type":
            f["model_weights/hidden"].attrs["weight_names"] = np.arange(2)
        else:
            f.attrs["model_config"] = 7
    with pytest.raises(ModelFileError, match=match):
        scratch.load(h5)


@pytest.fixture
def keras_zip(tmp_path):
    path = tmp_path / "m.keras"
    shutil.copy(SEEDS / "k3_mlp.keras", path)
    return path


def _set_u16(offset_local, offset_central, value):
    return lambda d, o, k: d.__setitem__(slice(o + (offset_local if k == "local" else offset_central),
                                               o + (offset_local if k == "local" else offset_central) + 2),
                                         struct.pack("<H", value))


@pytest.mark.parametrize("patch, error, match", [
    (_set_u16(8, 10, 99), ModelFileError, r"member 'config.json' uses compression method 99, which is not one of"),
    (_set_u16(6, 8, 1), ModelFileError, r"member 'config.json' is encrypted; Keras archives never are"),
    (lambda d, o, k: d.__setitem__(slice(o + (22 if k == "local" else 24), o + (26 if k == "local" else 28)),
                                   struct.pack("<I", 2 ** 31)),
     ResourceError, r"member 'config.json' declares 2147483648 bytes, beyond the limit"),
])
def test_zip_member_headers_are_checked_before_reading(keras_zip, patch, error, match):
    keras_zip.write_bytes(_patch_headers(keras_zip.read_bytes(), "config.json", patch))
    with pytest.raises(error, match=match):
        scratch.load(keras_zip)


@pytest.mark.parametrize("replace, error, match", [
    ({"metadata.json": "[]"}, ModelFileError, r"metadata.json: the JSON should be an object, found list"),
    ({"metadata.json": '{"keras_version": 3}'}, ModelFileError, r"keras_version must be a string. Received: 3"),
    ({"model.weights.h5": b"garbage"}, ModelFileError, r"model.weights.h5: cannot read the HDF5 file"),
])
def test_zip_member_contents_are_checked(keras_zip, replace, error, match):
    keras_zip.write_bytes(_zip_rewrite(keras_zip.read_bytes(), replace))
    with pytest.raises(error, match=match):
        scratch.load(keras_zip)


def test_duplicate_zip_members_are_refused(keras_zip):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keras_zip.write_bytes(_zip_rewrite(keras_zip.read_bytes(), add=[("config.json", "{}")]))
    with pytest.raises(ModelFileError, match=r"holds two members named 'config.json'"):
        scratch.load(keras_zip)


def test_weights_member_is_streamed_within_the_budget(keras_zip):
    size = zipfile.ZipFile(keras_zip).getinfo("model.weights.h5").file_size
    with pytest.raises(ResourceError, match=rf"'model.weights.h5' declares {size} bytes, beyond the limit of"):
        scratch.load(keras_zip, max_bytes=size - 1)


@pytest.fixture(scope="module")
def text_model():
    return scratch.load(SEEDS / "k3_text.keras")


@pytest.mark.parametrize("x, match", [
    (np.full((2, 6), 10 ** 12, np.int64), r"input 'tokens' is int32 but holds values in \[1000000000000, "),
    (np.full((2, 6), 2 ** 63, np.uint64), r"outside \[-2147483648, 2147483647\]"),
    (np.full((2, 6), 1.5), r"input 'tokens' is int32 \(token ids\) but holds non-integer values"),
    (np.full((2, 6), np.nan), r"non-integer values"),
    (np.full((2, 6), "a"), r"input 'tokens' has dtype <U1; expected numbers"),
    (np.ones((2, 6), complex), r"has dtype complex128; expected numbers"),
    (np.zeros((0, 6), np.int32), r"input 'tokens' has shape \(0, 6\): no samples"),
])
def test_hostile_predict_inputs_are_refused(text_model, x, match):
    with pytest.raises(InputError, match=match):
        text_model.predict(x)


def test_ids_within_int32_still_run(text_model):
    assert text_model.predict(np.full((2, 6), 3, np.int64)).shape == (2, 2)


def test_polyglot_hdf5_and_zip_is_refused_before_keras(tmp_path):
    """An HDF5 file with a .keras archive appended: h5py reads the first, zipfile the second (from the
    end), so each library would see a different model. The gate in front of Keras refuses it."""
    from scratch.saving.gate import clear_for_keras

    path = tmp_path / "both.h5"
    path.write_bytes((SEEDS / "k3_mlp.h5").read_bytes() + (SEEDS / "k3_mlp.keras").read_bytes())
    assert zipfile.is_zipfile(path) and h5py.is_hdf5(str(path))
    scratch.load(path)   # the engine alone reads it as the HDF5 file it starts as
    with pytest.raises(ModelFileError, match=r"both\.h5: the file is both an HDF5 file and a zip archive"):
        clear_for_keras(path, folder=tmp_path / "cleared")


def test_clear_for_keras_names_the_copy_by_its_bytes(tmp_path):
    from scratch.saving.gate import clear_for_keras

    path = tmp_path / "actually_a_zip.h5"
    shutil.copy(SEEDS / "k3_mlp.keras", path)
    (tmp_path / "cleared").mkdir()
    copy, config, kind = clear_for_keras(path, folder=tmp_path / "cleared")
    assert kind == "zip" and copy.name == "model.keras" and config is None
