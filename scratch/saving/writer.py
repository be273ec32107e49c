"""Writing scratch weights back in Keras's formats, atomically.

- ``save_weights_h5(model, path)``: a Keras 3 ``.weights.h5`` (``model.load_weights`` reads it).
  Datasets sit at ``layers/<key>/vars/0,1,..`` where ``<key>`` is the snake_case class name with a
  counter, in ``model.layers`` order (recurrent layers under ``cell/``, Bidirectional under
  ``forward_layer/`` and ``backward_layer/``, nested models under ``layers/``), the layout the loader
  reads (io.py).
- ``save_legacy_h5(model, path, source)``: a legacy full-model ``.h5`` with the *original* model
  config (and ``keras_version``/``backend``) copied from ``source``, the file the model was loaded
  from (``.h5`` or ``.keras``), and the scratch weights under ``model_weights/<layer>/`` with
  ``weight_names`` in each layer's ``get_weights`` order, which is the order Keras's legacy loader
  assigns them in. ``training_config`` is copied too when ``source`` has one.

Each file is written to a temporary name in the destination folder and moved into place with
``os.replace``, so a reader never sees half a file and a failed write leaves the old file intact.
"""

import json
import os
import tempfile
import zipfile
from pathlib import Path

import h5py
import numpy as np

from ..models.model import Model
from . import registry
from .registry import keras_class


def _atomic(path, write):
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


# ---- Keras 3 .weights.h5 ------------------------------------------------------------------------
def save_weights_h5(model, path):
    """Write ``model``'s weights as a Keras 3 ``.weights.h5``; returns the path."""
    def write(f):
        f.attrs["keras_version"] = "3.scratch"
        _write_v3_model(model, f, "layers")
        f.create_group("vars")
    return _atomic(path, write)


def _write_v3_model(model, f, path):
    for layer, key in registry.v3_keys(model.layers):
        sub = f"{path}/{key}"
        if isinstance(layer, Model):
            _write_v3_model(layer, f, f"{sub}/layers")
            f.require_group(f"{sub}/vars")
            continue
        _write_v3_layer(layer, f, sub)


def _write_v3_layer(layer, f, path):
    cls = keras_class(layer)
    if cls in registry.RECURRENT:
        f.require_group(f"{path}/vars")
        return _write_vars(layer, f, f"{path}/cell")
    if cls == "Bidirectional":
        f.require_group(f"{path}/vars")
        _write_v3_layer(layer.forward_layer, f, f"{path}/forward_layer")
        return _write_v3_layer(layer.backward_layer, f, f"{path}/backward_layer")
    if cls == "TimeDistributed":
        f.require_group(f"{path}/vars")
        return _write_v3_layer(layer.layer, f, f"{path}/layer")
    return _write_vars(layer, f, path)


def _write_vars(layer, f, path):
    group = f.require_group(f"{path}/vars")
    group.attrs["name"] = layer.name
    for i, w in enumerate(layer.get_weights()):
        group.create_dataset(str(i), data=np.asarray(w))


# ---- legacy full-model .h5 ----------------------------------------------------------------------
def save_legacy_h5(model, path, source):
    """Write a legacy ``.h5`` with ``source``'s model config and ``model``'s weights; returns the path."""
    attrs = _source_attrs(source)

    def write(f):
        for k, v in attrs.items():
            f.attrs[k] = v
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = np.array([l.name.encode("utf8") for l in model.layers])
        g.attrs["backend"] = attrs.get("backend", "tensorflow")
        g.attrs["keras_version"] = attrs.get("keras_version", "3")
        for layer in model.layers:
            lg = g.create_group(layer.name)
            names, arrays = _legacy_weights(layer)
            lg.attrs["weight_names"] = np.array([n.encode("utf8") for n in names])
            for n, a in zip(names, arrays):
                lg.create_dataset(n, data=a)
    return _atomic(path, write)


def _legacy_weights(layer):
    if isinstance(layer, Model):
        slots = layer.keras_weight_slots()
    else:
        slots = [(layer, n, True) for n in layer.active_weight_names()]
    names, arrays = [], []
    for owner, n, _ in slots:
        stem = layer.name if owner is layer else f"{layer.name}/{owner.name}"
        names.append(f"{stem}/{n.replace('/', '_')}_{len(names)}")   # unique; Keras reads by position
        arrays.append(np.asarray(owner.weights[n]))
    return names, arrays


def _source_attrs(source):
    source = Path(source)
    with open(source, "rb") as fh:
        zipped = fh.read(4) == b"PK\x03\x04"
    if zipped:
        with zipfile.ZipFile(source) as zf:
            cfg = json.loads(zf.read("config.json"))
            meta = json.loads(zf.read("metadata.json")) if "metadata.json" in zf.namelist() else {}
        model_cfg = {k: cfg[k] for k in ("class_name", "config") if k in cfg}
        out = {"model_config": json.dumps(model_cfg), "keras_version": meta.get("keras_version", "3"),
               "backend": "tensorflow"}
        return out
    with h5py.File(source, "r") as f:
        if "model_config" not in f.attrs:
            raise ValueError(f"{source}: no model_config to copy (a weights-only file?)")
        return {k: f.attrs[k] for k in ("model_config", "keras_version", "backend", "training_config")
                if k in f.attrs}
