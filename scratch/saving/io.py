"""Reading Keras model files with h5py and json alone.

Formats (see /work/shared/keras-facts.md and Keras's saving sources):

- **Legacy full model** ``model.save("m.h5")``: the file attribute ``model_config`` holds the JSON
  config; ``model_weights`` lists ``layer_names`` and each layer group lists ``weight_names``
  (attributes over 64 KB are split into ``layer_names0``, ``layer_names1``, ...). Keras 3 names
  end without ``:0``, tf_keras names with it; the loader follows the names, never a fixed path.
  A layer's weights come in Keras's ``trainable_weights + non_trainable_weights`` order, which
  for a nested model puts every sub-layer's trainable weights before any moving statistics.
- **Weights only** ``model.save_weights("m.weights.h5")`` plus a config (``model.to_json()`` text
  or a ``.keras`` archive's ``config.json``): datasets sit at ``layers/<key>/vars/0..n`` where
  ``<key>`` is the snake_case class name with a per-parent counter (``dense``, ``dense_1``) in
  ``model.layers`` order; recurrent layers keep theirs under ``cell/``, Bidirectional under
  ``forward_layer/`` and ``backward_layer/``, TimeDistributed under ``layer/``, MultiHeadAttention
  under ``query_dense/``, ``key_dense/``, ... (``v3_parts``), nested models under ``layers/``.
  Layer names play no part, so renamed layers map correctly.
  A legacy weights-only ``.h5`` (``layer_names`` at the file root) is accepted too.
- **``.keras``**: a zip of ``config.json``, ``metadata.json`` and ``model.weights.h5`` (above).

Files written by Keras 2 / tf_keras (``keras_version`` 2.x) get tf_keras semantics
(``hard_sigmoid``); see registry.
"""

import io as _io
import json
import zipfile
from pathlib import Path

import h5py
import numpy as np

from . import registry
from ..layers.base import LayerError
from ..errors import ModelFileError, WeightMismatchError
from ..models.from_config import model_from_config
from ..models.model import Model

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGIC = b"PK\x03\x04"


def load(path, config=None):
    """Rebuild a Keras model file as a scratch ``Model`` with its weights.

    ``path`` is a legacy ``.h5`` model, a ``.keras`` archive, or (with ``config``) a weights file.
    ``config`` is a path to ``model.to_json()`` text or to a ``.keras`` ``config.json``, or the
    parsed dict.

    With ``config``, ``path`` may also be a full legacy ``.h5`` model of a larger graph built from
    the same layers (a captioner's training model for its step model): each layer of ``config``
    then takes the weights of the file's layer of the same name, as Keras's
    ``load_weights(by_name=True)`` does, except that a layer the file lacks is an error, not skipped.
    """
    path = Path(path)
    kind = _sniff(path)
    if kind == "zip":
        if config is not None:
            raise ModelFileError(f"{path}: a .keras archive carries its own config; do not pass config=")
        return _load_keras_zip(path)
    with _open_h5(path, path) as f:
        if config is not None:
            cfg, flavor = _read_config_arg(config)
            model = _build(cfg, flavor, path)
            if "model_weights" in f:
                _assign_legacy(model, f["model_weights"], path, by_name=True)
            else:
                _assign_any(model, f, path)
            return model
        if "model_config" not in f.attrs:
            raise ModelFileError(f"{path}: the HDF5 file holds no model_config (a weights-only file?); "
                                 "pass its config with config=")
        cfg = _parse_json(f.attrs["model_config"], f"{path} (attribute model_config)")
        flavor = _flavor(cfg, _attr_str(f.attrs.get("keras_version")))
        model = _build(cfg, flavor, path)
        if "model_weights" not in f:
            raise WeightMismatchError(f"{path}: the file has a model_config but no 'model_weights' group")
        _assign_legacy(model, f["model_weights"], path)
        return model


# ---- files ------------------------------------------------------------------------------------
def _sniff(path):
    if not path.exists():
        raise ModelFileError(f"{path}: no such file")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head == _HDF5_MAGIC:
        return "hdf5"
    if head[:4] == _ZIP_MAGIC:
        return "zip"
    raise ModelFileError(f"{path}: not a Keras model file (neither HDF5 nor a .keras zip archive; "
                         f"first bytes {head!r})")


def _open_h5(source, label):
    try:
        return h5py.File(source, "r")
    except OSError as exc:   # truncated or corrupt: h5py cannot find its superblock or root group
        raise ModelFileError(f"{label}: cannot read the HDF5 file (truncated or corrupt?): {exc}") from None


def _load_keras_zip(path):
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            for needed in ("config.json", "model.weights.h5"):
                if needed not in names:
                    raise ModelFileError(f"{path}: the .keras archive has no {needed} (it has {sorted(names)})")
            cfg = _parse_json(zf.read("config.json"), f"{path}:config.json")
            meta = _parse_json(zf.read("metadata.json"), f"{path}:metadata.json") if "metadata.json" in names else {}
            weights = zf.read("model.weights.h5")
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as exc:
        raise ModelFileError(f"{path}: cannot read the .keras archive (truncated or corrupt?): {exc}") from None
    flavor = _flavor(cfg, meta.get("keras_version"))
    model = _build(cfg, flavor, path)
    label = f"{path}:model.weights.h5"
    with _open_h5(_io.BytesIO(weights), label) as f:
        _assign_any(model, f, label)
    return model


def _read_config_arg(config):
    if isinstance(config, dict):
        cfg = config
    else:
        cpath = Path(config)
        if not cpath.exists():
            raise ModelFileError(f"{cpath}: no such config file")
        cfg = _parse_json(cpath.read_bytes(), str(cpath))
    if "class_name" not in cfg or "config" not in cfg:
        raise ModelFileError(f"{config if not isinstance(config, dict) else 'config'}: not a Keras model config "
                             "(expected the keys 'class_name' and 'config', as model.to_json() writes)")
    return cfg, _flavor(cfg, cfg.get("keras_version"))


def _parse_json(raw, label):
    try:
        return json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else str(raw))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{label}: the model config is not valid JSON: {exc}") from None


def _flavor(cfg, keras_version):
    """'tf_keras' for files written by Keras 2 / tf_keras, else 'keras3'."""
    if keras_version:
        return "tf_keras" if str(keras_version).startswith("2.") else "keras3"
    # Without a version: Keras 3 writes dict nodes and DTypePolicy dicts, tf_keras lists and strings.
    text = json.dumps(cfg)
    return "keras3" if '"__keras_tensor__"' in text or '"DTypePolicy"' in text else "tf_keras"


def _build(cfg, flavor, source):
    return model_from_config(cfg, flavor=flavor, source=str(source))


def _attr_str(value):
    if value is None:
        return None
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _attr_list(group, name):
    """A string-list attribute, joining Keras's split ``name0``, ``name1``, ... chunks."""
    if name in group.attrs:
        values = group.attrs[name]
    else:
        chunks, i = [], 0
        while f"{name}{i}" in group.attrs:
            chunks.extend(group.attrs[f"{name}{i}"])
            i += 1
        values = chunks
    return [_attr_str(v) for v in np.asarray(values).reshape(-1) if not isinstance(v, float)]


def _read(dataset, label):
    try:
        return np.asarray(dataset[()])
    except (OSError, KeyError, ValueError) as exc:
        raise ModelFileError(f"{label}: cannot read dataset (truncated or corrupt file?): {exc}") from None


# ---- weights: legacy layer_names / weight_names -------------------------------------------------
def _assign_any(model, f, source):
    if "layer_names" in f.attrs or "layer_names0" in f.attrs:
        _assign_legacy(model, f, source)
    elif "layers" in f:
        _assign_v3(model, f, source)
    else:
        raise WeightMismatchError(f"{source}: no weights found (neither 'layers/' nor a 'layer_names' attribute)")


def _assign_legacy(model, group, source, by_name=False):
    """Weights of each layer from ``group/<layer name>``; unless ``by_name``, every weighted layer
    of the file must be in the model too."""
    names = _attr_list(group, "layer_names")
    known = {l.name for l in model.layers}
    for layer in model.layers:
        slots = _legacy_slots(layer)
        if not slots:
            continue
        if layer.name not in names or layer.name not in group:
            raise WeightMismatchError(f"{source}: layer '{layer.name}' ({_cls(layer)}) has {len(slots)} weights "
                                      f"but the file has no weights group '{group.name.rstrip('/')}/{layer.name}'")
        g = group[layer.name]
        wnames = _attr_list(g, "weight_names")
        if len(wnames) != len(slots):
            raise WeightMismatchError(
                f"{source}: layer '{layer.name}' ({_cls(layer)}) expects {len(slots)} weights "
                f"{[_qual(l, n, layer) for l, n, _ in slots]}, the file lists {len(wnames)}: {wnames}")
        arrays = []
        for wn in wnames:
            if wn not in g:
                raise WeightMismatchError(f"{source}: layer '{layer.name}' ({_cls(layer)}): weight '{wn}' is "
                                          f"listed in weight_names but its dataset '{g.name}/{wn}' is missing")
            arrays.append((f"{g.name}/{wn}", _read(g[wn], f"{source}: {g.name}/{wn}")))
        _set_slots(slots, arrays, source, layer)
    if by_name:
        return
    for name in names:
        if name not in known and name in group and _attr_list(group[name], "weight_names"):
            raise WeightMismatchError(f"{source}: the file has weights for layer '{name}', which the model config "
                                      "does not contain")


def _legacy_slots(layer):
    if isinstance(layer, Model):
        return [(l, n, t) for l, n, t in layer.keras_weight_slots()]
    return [(layer, n, True) for n in layer.active_weight_names()]


def _set_slots(slots, arrays, source, owner):
    """Give each (layer, weight_name) slot its (dataset_path, array), checking shapes first."""
    per_layer = {}
    for (layer, name, _), (path, arr) in zip(slots, arrays):
        expected = layer.expected_weight_shape(name)
        if expected is not None and tuple(arr.shape) != tuple(expected):
            raise WeightMismatchError(
                f"{source}: layer '{_qual(layer, None, owner)}' ({_cls(layer)}) weight '{name}': "
                f"expected shape {tuple(expected)}, found {tuple(arr.shape)} in dataset '{path}'")
        per_layer.setdefault(id(layer), (layer, {}))[1][name] = arr
    for layer, named in per_layer.values():
        try:
            layer.set_weights([named[n] for n in layer.active_weight_names()])
        except LayerError as exc:
            raise WeightMismatchError(f"{source}: {exc}") from None


def _qual(layer, name, owner):
    prefix = "" if layer is owner else f"{owner.name}/"
    return f"{prefix}{layer.name}" + (f"/{name}" if name else "")


def _cls(layer):
    return getattr(layer, "keras_class", type(layer).__name__)


# ---- weights: Keras 3 layers/<key>/vars ---------------------------------------------------------
def _assign_v3(model, f, source):
    _assign_v3_model(model, f, "layers", source)


def _assign_v3_model(model, f, path, source):
    counters = {}
    for layer in model.layers:
        stem = registry.snake_case("Functional" if _cls(layer) == "Model" else _cls(layer))
        counters[stem] = counters.get(stem, -1) + 1
        key = stem if counters[stem] == 0 else f"{stem}_{counters[stem]}"
        sub = f"{path}/{key}"
        if isinstance(layer, Model):
            _assign_v3_model(layer, f, f"{sub}/layers", source)
            continue
        names = layer.active_weight_names()
        if not names:
            continue
        arrays = _v3_arrays(layer, f, sub, source)
        if len(arrays) != len(names):
            raise WeightMismatchError(f"{source}: layer '{layer.name}' ({_cls(layer)}) expects {len(names)} weights "
                                      f"{list(names)}, the file has {len(arrays)} under '{sub}'")
        _set_slots([(layer, n, True) for n in names], arrays, source, layer)


def _v3_arrays(layer, f, path, source):
    """(dataset_path, array) pairs of one layer under ``path``, in its get_weights order."""
    cls = _cls(layer)
    if cls in registry.RECURRENT:
        return _vars(layer, f, f"{path}/cell", source)
    if cls == "Bidirectional":
        return (_v3_arrays(layer.forward_layer, f, f"{path}/forward_layer", source)
                + _v3_arrays(layer.backward_layer, f, f"{path}/backward_layer", source))
    if cls == "TimeDistributed":
        return _v3_arrays(layer.layer, f, f"{path}/layer", source)
    if hasattr(layer, "v3_parts"):   # sublayers saved under their attribute names (MultiHeadAttention)
        return [a for sub, part in layer.v3_parts() for a in _vars(part, f, f"{path}/{sub}", source)]
    return _vars(layer, f, path, source)


def _vars(layer, f, path, source):
    want = len(layer.active_weight_names())
    if want == 0:
        return []
    vpath = f"{path}/vars"
    if vpath not in f:
        raise WeightMismatchError(f"{source}: layer '{layer.name}' ({_cls(layer)}) has {want} weights but the "
                                  f"file has no group '{vpath}'")
    group = f[vpath]
    out = []
    for i in range(want):
        if str(i) not in group:
            raise WeightMismatchError(f"{source}: layer '{layer.name}' ({_cls(layer)}): weight "
                                      f"'{layer.active_weight_names()[i]}' is missing (no dataset '{vpath}/{i}')")
        out.append((f"{vpath}/{i}", _read(group[str(i)], f"{source}: {vpath}/{i}")))
    extra = [k for k in group.keys() if k.isdigit() and int(k) >= want]
    if extra:
        raise WeightMismatchError(f"{source}: layer '{layer.name}' ({_cls(layer)}) expects {want} weights but "
                                  f"'{vpath}' holds {want + len(extra)}")
    return out
