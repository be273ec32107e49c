"""Keras model configs -> scratch ``Model`` graphs (Keras's ``functional_from_config``, in NumPy).

The config is checked first (registry.check_model_config: every refused or unsupported layer is
reported at once), then each layer is built from its config and each call (``inbound_nodes``)
becomes a ``Node``. Two node formats exist:

- Keras 3: ``{"args": [...], "kwargs": {...}}`` with ``__keras_tensor__`` leaves whose
  ``keras_history`` is ``[layer, node_index, tensor_index]``; masks appear as explicit ``mask=``
  tensors produced by operation nodes.
- tf_keras (legacy): a list of ``[layer, node_index, tensor_index, kwargs]``, several entries for a
  multi-input call; a recurrent layer's ``initial_state`` is listed as extra inputs.

Nested models: Keras numbers a nested model's nodes from 1 in some places (its own graph is node
0): tf_keras everywhere for Functional and Sequential, Keras 3 only in ``input_layers`` /
``output_layers`` and only for Functional.
"""

import numpy as np

from ..saving import registry
from ..layers.base import LayerError
from ..errors import GraphError, UnsupportedLayerError
from .graph import InputLayer, Node, Ref
from .model import Model


def model_from_config(model_cfg, flavor="keras3", source=None, check=True):
    """Build (and shape-infer) a model from ``{class_name, config}``; refuses before building."""
    if check:
        problems = registry.check_model_config(model_cfg)
        top = registry.object_problem({k: v for k, v in model_cfg.items() if k != "config"})
        kind = model_cfg.get("class_name")
        if top is None and kind not in registry.MODEL_CLASSES:
            top = "not a Sequential or Functional model"
        if top is not None:
            problems.insert(0, (str(model_cfg.get("config", {}).get("name", "?")), kind, top))
        if problems:
            raise UnsupportedLayerError(problems, source)
    kind = model_cfg["class_name"]
    config = model_cfg.get("config", {})
    build = _build_sequential if kind == "Sequential" else _build_functional
    model = build(config, flavor, source)
    model.keras_trainable = config.get("trainable", True) is not False
    build_shape = (model_cfg.get("build_config") or {}).get("input_shape")
    if not model.built:
        model.build(build_shape or config.get("build_input_shape"))
    return model


def _make(layer_cfg, flavor, source):
    cls = layer_cfg["class_name"]
    if cls == "InputLayer":
        layer = InputLayer(**layer_cfg.get("config", {}))
    elif cls in registry.MODEL_CLASSES:
        layer = model_from_config(layer_cfg, flavor, source, check=False)
    else:
        layer = registry.make_layer(layer_cfg, flavor)
    layer.keras_class = cls
    layer.keras_trainable = layer_cfg.get("config", {}).get("trainable", True) is not False
    return layer


def _make_all(layer_cfgs, flavor, source):
    layers, problems = [], []
    for lc in layer_cfgs:
        try:
            layers.append(_make(lc, flavor, source))
        except (LayerError, ValueError, TypeError) as exc:
            name = lc.get("config", {}).get("name") or lc.get("name")
            problems.append((str(name), lc.get("class_name"), f"unsupported configuration: {exc}"))
    if problems:
        raise UnsupportedLayerError(problems, source)
    return layers


def _build_sequential(config, flavor, source):
    cfgs = list(config.get("layers", []))
    layers = _make_all(cfgs, flavor, source)
    if layers and isinstance(layers[0], InputLayer):
        inp, body = layers[0], layers[1:]
    else:
        first = cfgs[0].get("config", {}) if cfgs else {}
        shape = first.get("batch_input_shape") or first.get("batch_shape")
        inp = InputLayer(batch_shape=shape, dtype=first.get("dtype") if isinstance(first.get("dtype"), str) else None,
                         name=f"{config.get('name', 'sequential')}_input")
        body = layers
    nodes, prev = [], Ref(inp.name)
    for layer in body:
        nodes.append(Node(layer, 0, [prev], {}, auto_mask="keras3"))
        prev = Ref(layer.name)
    return Model(config.get("name", "sequential"), [inp] + body, nodes, [Ref(inp.name)], [prev],
                 kind="Sequential", source=source)


def _build_functional(config, flavor, source):
    cfgs = list(config.get("layers", []))
    layers = _make_all(cfgs, flavor, source)
    by_name = {l.name: l for l in layers}
    for lc, layer in zip(cfgs, layers):   # the graph refers to layers by their config-level name
        layer.name = lc.get("name", layer.name)
        by_name[layer.name] = layer
    legacy = any(isinstance(n, list) for lc in cfgs for n in lc.get("inbound_nodes", []))

    def offset(name, in_io):
        # Keras indexes the nodes of a nested model from 1 in some places (its own graph is node 0):
        # tf_keras everywhere for Functional and Sequential, Keras 3 only in input/output_layers
        # and only for Functional.
        cls = getattr(by_name.get(name), "keras_class", None)
        if legacy:
            return 1 if cls in registry.MODEL_CLASSES else 0
        return 1 if in_io and cls in ("Functional", "Model") else 0

    pending = []
    for lc, layer in zip(cfgs, layers):
        for k, node_data in enumerate(lc.get("inbound_nodes", [])):
            if isinstance(node_data, list):
                args, kwargs = _legacy_node(node_data, layer, offset)
                pending.append(Node(layer, k, args, kwargs, auto_mask="tf_keras"))
            else:
                args = _keras3_struct(node_data.get("args", []), offset)
                kwargs = _keras3_struct(node_data.get("kwargs", {}), offset)
                pending.append(Node(layer, k, args, kwargs, auto_mask="keras3"))
    inputs = _io_refs(config.get("input_layers", []), offset)
    outputs = _io_refs(config.get("output_layers", []), offset)
    available = {(r[0], r[1]) for r in inputs}   # (layer, node) calls already placed
    available |= {(layer.name, 0) for layer in layers if isinstance(layer, InputLayer)}
    ordered = []
    while pending:   # Keras's own loop: sweep the layers in config order, placing each call once its inputs exist
        placed = False
        for layer in layers:
            for n in [n for n in pending if n.layer is layer]:
                if not all((r[0], r[1]) in available for r in n.refs()):
                    break
                pending.remove(n)
                ordered.append(n)
                available.add((n.layer.name, n.index))
                placed = True
        if not placed:
            missing = sorted({r for n in pending for r in n.refs() if (r[0], r[1]) not in available})
            raise GraphError(f"model '{config.get('name')}'{' in ' + str(source) if source else ''}: the graph "
                             f"refers to tensors that no layer produces, or has a cycle: {missing[:5]}")
    for r in outputs:
        if (r[0], r[1]) not in available:
            raise GraphError(f"model '{config.get('name')}': output {tuple(r)} is not produced by the graph")
    return Model(config.get("name", "functional"), layers, ordered, inputs, outputs, source=source)


def _legacy_node(node_data, layer, offset):
    refs, kwargs = [], {}
    for entry in node_data:
        refs.append(Ref(entry[0], entry[1] - offset(entry[0], False), entry[2]))
        if len(entry) > 3 and isinstance(entry[3], dict):
            kwargs.update({k: v for k, v in entry[3].items() if not _is_tensor_spec(v)})
    if len(refs) > 1 and getattr(layer, "keras_class", None) in registry.RECURRENT + ("Bidirectional",):
        return [refs[0]], {**kwargs, "initial_state": refs[1:]}
    return [refs[0] if len(refs) == 1 else refs], kwargs


def _is_tensor_spec(v):
    return isinstance(v, list) and len(v) >= 3 and isinstance(v[0], str) and isinstance(v[1], int)


def _keras3_struct(value, offset):
    if isinstance(value, dict):
        kind = value.get("class_name")
        if kind == "__keras_tensor__":
            hist = value["config"]["keras_history"]
            return Ref(hist[0], hist[1] - offset(hist[0], False), hist[2])
        if kind in _CONSTANTS:
            return _CONSTANTS[kind](value.get("config") or {})
        if isinstance(kind, str) and kind.startswith("__"):
            raise GraphError(f"a node argument of kind {kind!r} is not supported (known: __keras_tensor__, "
                             f"{', '.join(sorted(_CONSTANTS))})")
        return {k: _keras3_struct(v, offset) for k, v in value.items()}
    if isinstance(value, list):
        return [_keras3_struct(v, offset) for v in value]
    return value


def _array_constant(cfg):
    dtype = np.dtype(cfg.get("dtype") or "float32")
    if dtype.kind not in "biuf":   # plain numbers only: nothing an array could smuggle in
        raise GraphError(f"a constant of dtype {dtype} in a node argument is not supported")
    return np.asarray(cfg.get("value"), dtype=dtype)


# Constants Keras 3 writes inline in a node's args (``x * np.arange(3)``, ``x[:, 1:3]``, ``x[..., None]``).
_CONSTANTS = {
    "__numpy__": _array_constant,
    "__tensor__": _array_constant,
    "__slice__": lambda cfg: slice(cfg.get("start"), cfg.get("stop"), cfg.get("step")),
    "__ellipsis__": lambda cfg: Ellipsis,
}


def _io_refs(spec, offset):
    if isinstance(spec, dict):
        spec = list(spec.values())
    if len(spec) == 3 and isinstance(spec[0], str):
        spec = [spec]
    return [Ref(s[0], s[1] - offset(s[0], True), s[2]) for s in spec]
