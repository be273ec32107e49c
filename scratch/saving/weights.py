"""Giving a built model the weights a Keras file holds, by the file's own layout (see io.py):

- **legacy** (``model.save("m.h5")``, legacy ``save_weights``): ``layer_names`` lists a group per
  layer, each with ``weight_names`` in the layer's get_weights order;
- **Keras 3** (``.weights.h5``, a ``.keras`` archive's ``model.weights.h5``): ``layers/<key>/vars/0..n``
  with the keys of ``registry.v3_keys``, sublayers under their attribute names.

Every dataset's dtype and shape are checked from its header before any is read; a missing, extra or
misshapen weight is a ``WeightMismatchError`` naming the layer and the path in the file.
"""

import h5py
import numpy as np

from . import h5read, registry
from .registry import keras_class
from ..errors import WeightMismatchError
from ..layers.base import LayerError
from ..models.model import Model


# ---- weights: legacy layer_names / weight_names -------------------------------------------------
def assign_weights(model, f, source):
    """Assign ``f``'s weights to ``model`` in whichever layout the file has."""
    if h5read.attr(f, "layer_names", source) is not None or h5read.attr(f, "layer_names0", source) is not None:
        assign_legacy(model, f, source)
    elif h5read.member(f, "layers", source, h5py.Group) is not None:
        _assign_v3(model, f, source)
    else:
        raise WeightMismatchError(f"{source}: no weights found (neither 'layers/' nor a 'layer_names' attribute)")


def assign_legacy(model, group, source, by_name=False):
    """Weights of each layer from ``group/<layer name>``; unless ``by_name``, every weighted layer
    of the file must be in the model too."""
    names = h5read.attr_list(group, "layer_names", source)
    known = {l.name for l in model.layers}
    for layer in model.layers:
        slots = _legacy_slots(layer)
        if not slots:
            continue
        g = h5read.member(group, layer.name, source, h5py.Group) if layer.name in names else None
        if g is None:
            raise WeightMismatchError(f"{source}: layer '{layer.name}' ({keras_class(layer)}) has {len(slots)} weights "
                                      f"but the file has no weights group '{group.name.rstrip('/')}/{layer.name}'")
        wnames = h5read.attr_list(g, "weight_names", source)
        if len(wnames) != len(slots):
            raise WeightMismatchError(
                f"{source}: layer '{layer.name}' ({keras_class(layer)}) expects {len(slots)} weights "
                f"{[_qual(l, n, layer) for l, n, _ in slots]}, the file lists {len(wnames)}: {wnames[:20]}")
        datasets = []
        for wn in wnames:
            d = h5read.member(g, wn, source, h5py.Dataset)
            if d is None:
                raise WeightMismatchError(f"{source}: layer '{layer.name}' ({keras_class(layer)}): weight '{wn}' is "
                                          f"listed in weight_names but its dataset '{g.name}/{wn}' is missing")
            datasets.append((f"{g.name}/{wn}", d))
        _set_slots(slots, datasets, source, layer)
    if by_name:
        return
    for name in names:
        if name in known:
            continue
        g = h5read.member(group, name, source)
        if isinstance(g, h5py.Group) and h5read.attr_list(g, "weight_names", source):
            raise WeightMismatchError(f"{source}: the file has weights for layer '{name}', which the model config "
                                      "does not contain")


def _legacy_slots(layer):
    if isinstance(layer, Model):
        return [(l, n, t) for l, n, t in layer.keras_weight_slots()]
    return [(layer, n, True) for n in layer.active_weight_names()]


def _set_slots(slots, datasets, source, owner):
    """Give each (layer, weight_name) slot its (dataset_path, dataset): dtype and shape are checked
    from the header of every dataset before any is read."""
    for (layer, name, _), (path, d) in zip(slots, datasets):
        built = layer.weights.get(name) if isinstance(getattr(layer, "weights", None), dict) else None
        h5read.check_weight(d, path, source, layer.expected_weight_shape(name),
                            f"layer '{_qual(layer, None, owner)}' ({keras_class(layer)}) weight '{name}'",
                            integer=built is not None and np.asarray(built).dtype.kind in "iu")
    per_layer = {}
    for (layer, name, _), (path, d) in zip(slots, datasets):
        per_layer.setdefault(id(layer), (layer, {}))[1][name] = h5read.read(d, path, source)
    for layer, named in per_layer.values():
        try:
            layer.set_weights([named[n] for n in layer.active_weight_names()])
        except LayerError as exc:
            raise WeightMismatchError(f"{source}: {exc}") from None


def _qual(layer, name, owner):
    prefix = "" if layer is owner else f"{owner.name}/"
    return f"{prefix}{layer.name}" + (f"/{name}" if name else "")


# ---- weights: Keras 3 layers/<key>/vars ---------------------------------------------------------
def _assign_v3(model, f, source):
    _assign_v3_model(model, f, "layers", source)


def _assign_v3_model(model, f, path, source):
    for layer, key in registry.v3_keys(model.layers):
        sub = f"{path}/{key}"
        if isinstance(layer, Model):
            _assign_v3_model(layer, f, f"{sub}/layers", source)
            continue
        names = layer.active_weight_names()
        if not names:
            continue
        datasets = _v3_datasets(layer, f, sub, source)
        if len(datasets) != len(names):
            raise WeightMismatchError(f"{source}: layer '{layer.name}' ({keras_class(layer)}) expects {len(names)} "
                                      f"weights {list(names)}, the file has {len(datasets)} under '{sub}'")
        _set_slots([(layer, n, True) for n in names], datasets, source, layer)


def _v3_datasets(layer, f, path, source):
    """(dataset_path, dataset) pairs of one layer under ``path``, in its get_weights order."""
    cls = keras_class(layer)
    if cls in registry.RECURRENT:
        return _vars(layer, f, f"{path}/cell", source)
    if cls == "Bidirectional":
        return (_v3_datasets(layer.forward_layer, f, f"{path}/forward_layer", source)
                + _v3_datasets(layer.backward_layer, f, f"{path}/backward_layer", source))
    if cls == "TimeDistributed":
        return _v3_datasets(layer.layer, f, f"{path}/layer", source)
    if hasattr(layer, "v3_parts"):   # sublayers saved under their attribute names (MultiHeadAttention)
        return [d for sub, part in layer.v3_parts() for d in _vars(part, f, f"{path}/{sub}", source)]
    return _vars(layer, f, path, source)


def _group(f, path, source):
    """The group at a slash path, each step through ``h5read.member`` (links refused); None if absent."""
    g = f
    for part in path.split("/"):
        g = h5read.member(g, part, source, h5py.Group)
        if g is None:
            return None
    return g


def _vars(layer, f, path, source):
    want = len(layer.active_weight_names())
    if want == 0:
        return []
    vpath = f"{path}/vars"
    group = _group(f, vpath, source)
    if group is None:
        raise WeightMismatchError(f"{source}: layer '{layer.name}' ({keras_class(layer)}) has {want} weights but the "
                                  f"file has no group '{vpath}'")
    out = []
    for i in range(want):
        d = h5read.member(group, str(i), source, h5py.Dataset)
        if d is None:
            raise WeightMismatchError(f"{source}: layer '{layer.name}' ({keras_class(layer)}): weight "
                                      f"'{layer.active_weight_names()[i]}' is missing (no dataset '{vpath}/{i}')")
        out.append((f"{vpath}/{i}", d))
    extra = [k for k in h5read.keys(group, source) if k.isdigit() and int(k) >= want]
    if extra:
        raise WeightMismatchError(f"{source}: layer '{layer.name}' ({keras_class(layer)}) expects {want} weights but "
                                  f"'{vpath}' holds {want + len(extra)}")
    return out


__all__ = ["load", "sniff"]
