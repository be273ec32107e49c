"""Reading Keras model files with h5py and json alone.

Formats (as Keras 3.15 and tf_keras 2.21 write them; their saving sources are the authority):

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
(``hard_sigmoid``); see registry. weights.py gives the built model the file's weights.
"""

import json
import tempfile
import zipfile
import zlib
from pathlib import Path

import h5py
import numpy as np

from . import h5read, schema
from .weights import assign_legacy, assign_weights
from ..errors import ConfigError, ModelFileError, ResourceError, ScratchError, WeightMismatchError
from ..models.from_config import DEFAULT_MAX_BYTES, model_from_config
from ..models.model import Model

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGIC = b"PK\x03\x04"
# Python reads these; Keras writes STORED. Anything else (or the encrypted flag) is named and refused.
_ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2",
                zipfile.ZIP_LZMA: "lzma"}
_MAX_JSON_BYTES = 64 * 1024 ** 2
# What zipfile / a decompressor raises on a damaged member.
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, zlib.error, NotImplementedError,
               RuntimeError, ValueError)


def load(path, config=None, max_bytes=DEFAULT_MAX_BYTES):
    """Rebuild a Keras model file as a scratch ``Model`` with its weights.

    ``path`` is a legacy ``.h5`` model, a ``.keras`` archive, or (with ``config``) a weights file.
    ``config`` is a path to ``model.to_json()`` text or to a ``.keras`` ``config.json``, or the
    parsed dict.

    With ``config``, ``path`` may also be a full legacy ``.h5`` model of a larger graph built from
    the same layers (a captioner's training model for its step model): each layer of ``config``
    then takes the weights of the file's layer of the same name, as Keras's
    ``load_weights(by_name=True)`` does, except that a layer the file lacks is an error, not skipped.

    ``max_bytes`` (default 2 GiB) caps what the file may make the engine hold: each size the config
    declares, the weights together, one sample's activations, and each archive member, all checked
    before the memory is taken. Every refusal is a ``ScratchError`` naming the file and the problem.
    """
    path = Path(path)
    try:
        return _load(path, config, max_bytes)
    except ScratchError:
        raise
    except RecursionError:
        raise ConfigError(f"{path}: the model config is nested too deeply to read") from None
    except MemoryError:
        raise ResourceError(f"{path}: the model does not fit in memory (max_bytes={max_bytes})") from None


def _load(path, config, max_bytes):
    kind = _sniff(path)
    if kind == "zip":
        if config is not None:
            raise ModelFileError(f"{path}: a .keras archive carries its own config; do not pass config=")
        return _load_keras_zip(path, max_bytes)
    with h5read.open_h5(path, path) as f:
        if config is not None:
            cfg, flavor = _read_config_arg(config)
            model = _build(cfg, flavor, path, max_bytes)
            weights = h5read.member(f, "model_weights", path, h5py.Group)
            if weights is not None:
                assign_legacy(model, weights, path, by_name=True)
            else:
                assign_weights(model, f, path)
            return model
        raw = h5read.attr(f, "model_config", path)
        if raw is None:
            raise ModelFileError(f"{path}: the HDF5 file holds no model_config (a weights-only file?); "
                                 "pass its config with config=")
        cfg = _parse_json(raw, f"{path} (attribute model_config)")
        version = h5read.attr_str(h5read.attr(f, "keras_version", path), path, "attribute keras_version")
        model = _build(cfg, _flavor(cfg, version), path, max_bytes)
        weights = h5read.member(f, "model_weights", path, h5py.Group)
        if weights is None:
            raise WeightMismatchError(f"{path}: the file has a model_config but no 'model_weights' group")
        assign_legacy(model, weights, path)
        return model


def sniff(path):
    """'hdf5' or 'zip' from the file's first bytes (never from its name)."""
    return _sniff(Path(path))


# ---- files ------------------------------------------------------------------------------------
def _sniff(path):
    if not path.exists():
        raise ModelFileError(f"{path}: no such file")
    if not path.is_file():
        raise ModelFileError(f"{path}: not a regular file")
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read it: {exc}") from None
    if head == _HDF5_MAGIC:
        return "hdf5"
    if head[:4] == _ZIP_MAGIC:
        return "zip"
    raise ModelFileError(f"{path}: not a Keras model file (neither HDF5 nor a .keras zip archive; "
                         f"first bytes {head!r})")


def _load_keras_zip(path, max_bytes):
    try:
        zf = zipfile.ZipFile(path)
    except _ZIP_ERRORS as exc:
        raise ModelFileError(f"{path}: cannot read the .keras archive (truncated or corrupt?): {exc}") from None
    with zf, tempfile.TemporaryFile() as weights:
        infos = {}
        for info in zf.infolist():
            if info.filename in infos:
                raise ModelFileError(f"{path}: the .keras archive holds two members named {info.filename!r}")
            infos[info.filename] = info
        for needed in ("config.json", "model.weights.h5"):
            if needed not in infos:
                raise ModelFileError(f"{path}: a zip archive but not a Keras .keras archive: no {needed} "
                                     f"(it has {sorted(infos)[:20]})")
        json_cap = min(_MAX_JSON_BYTES, max_bytes)
        cfg = _parse_json(_read_member(zf, infos["config.json"], path, json_cap), f"{path}:config.json")
        meta = {}
        if "metadata.json" in infos:
            meta = _parse_json(_read_member(zf, infos["metadata.json"], path, json_cap), f"{path}:metadata.json")
        version = meta.get("keras_version")
        if version is not None and not isinstance(version, str):
            raise ConfigError(f"{path}:metadata.json: keras_version must be a string. Received: {version!r}")
        flavor = _flavor(cfg, version)
        model = _build(cfg, flavor, path, max_bytes)
        _read_member(zf, infos["model.weights.h5"], path, max_bytes, into=weights)
        weights.seek(0)
        label = f"{path}:model.weights.h5"
        with h5read.open_h5(weights, label) as f:
            assign_weights(model, f, label)
    return model


def _read_member(zf, info, path, cap, into=None):
    """A member's bytes (or streamed ``into`` a file), refusing before reading what the budget or
    Python cannot take: encrypted members, unknown compression, a declared size above ``cap``."""
    where = f"{path}: .keras member {info.filename!r}"
    if info.flag_bits & 0x1:
        raise ModelFileError(f"{where} is encrypted; Keras archives never are")
    if info.compress_type not in _ZIP_METHODS:
        raise ModelFileError(f"{where} uses compression method {info.compress_type}, which is not one of "
                             f"{sorted(_ZIP_METHODS.values())}")
    if info.file_size > cap:
        raise ResourceError(f"{where} declares {info.file_size} bytes, beyond the limit of {cap} bytes (max_bytes=)")
    out, total = into if into is not None else [], 0
    try:
        with zf.open(info) as src:
            while True:
                chunk = src.read(1 << 20)
                if not chunk:
                    break
                total += len(chunk)
                if total > info.file_size:   # zipfile stops at the declared size; this is a second guard
                    raise ResourceError(f"{where} holds more than the {info.file_size} bytes it declares")
                out.write(chunk) if into is not None else out.append(chunk)
    except ScratchError:
        raise
    except _ZIP_ERRORS as exc:
        raise ModelFileError(f"{where}: cannot read it (truncated or corrupt?): {type(exc).__name__}: {exc}") from None
    return None if into is not None else b"".join(out)


def _read_config_arg(config):
    if isinstance(config, dict):
        cfg, label = config, "config"
    else:
        cpath = Path(config)
        label = str(cpath)
        if not cpath.is_file():
            raise ModelFileError(f"{cpath}: no such config file")
        if cpath.stat().st_size > _MAX_JSON_BYTES:
            raise ResourceError(f"{cpath}: {cpath.stat().st_size} bytes is too large for a model config "
                                f"(limit {_MAX_JSON_BYTES})")
        cfg = _parse_json(cpath.read_bytes(), label)
    if "class_name" not in cfg or "config" not in cfg:
        raise ModelFileError(f"{label}: not a Keras model config "
                             "(expected the keys 'class_name' and 'config', as model.to_json() writes)")
    version = cfg.get("keras_version")
    if version is not None and not isinstance(version, str):
        raise ConfigError(f"{label}: keras_version must be a string. Received: {version!r}")
    return cfg, _flavor(cfg, version)


def _parse_json(raw, label):
    """A JSON object from text, bytes or an HDF5 string attribute; nesting is bounded."""
    if isinstance(raw, np.ndarray) and raw.shape == ():
        raw = raw[()]
    if not isinstance(raw, (bytes, str)):
        raise ConfigError(f"{label}: the model config should be JSON text, found {type(raw).__name__}")
    try:
        value = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except RecursionError:
        raise ConfigError(f"{label}: the model config is nested too deeply (limit {schema.MAX_DEPTH} levels)") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{label}: the model config is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{label}: the JSON should be an object, found {type(value).__name__}")
    return value   # its depth is bounded by model_from_config, before any recursive walk


def _flavor(cfg, keras_version):
    """'tf_keras' for files written by Keras 2 / tf_keras, else 'keras3'."""
    if keras_version:
        return "tf_keras" if str(keras_version).startswith("2.") else "keras3"
    # Without a version: Keras 3 writes dict nodes and DTypePolicy dicts, tf_keras lists and strings.
    text = json.dumps(cfg)
    return "keras3" if '"__keras_tensor__"' in text or '"DTypePolicy"' in text else "tf_keras"


def _build(cfg, flavor, source, max_bytes):
    model = model_from_config(cfg, flavor=flavor, source=str(source), max_bytes=max_bytes)
    weight_bytes = 4 * model.count_params()
    sample_bytes = 4 * _values_per_sample(model)
    model.bytes_per_sample = sample_bytes
    if weight_bytes + sample_bytes > max_bytes:
        raise ResourceError(f"{source}: the config declares {weight_bytes} bytes of weights and {sample_bytes} bytes "
                            f"of activations per sample, beyond the memory budget of {max_bytes} bytes (max_bytes=)")
    return model


def _values_per_sample(model):
    """Activation values one sample creates (every tensor of the graph, nested models included)."""
    total = 0
    for shape in getattr(model, "_shapes", {}).values():
        if shape is not None:
            total += int(np.prod([d or 1 for d in shape[1:]], dtype=np.float64))
    for layer in model.layers:
        if isinstance(layer, Model):
            total += _values_per_sample(layer)
    return total
