"""Keras model configs -> scratch ``Model`` graphs (Keras's ``functional_from_config``, in NumPy).

The config is checked first, in this order and before any layer exists: nothing in the whole tree
may run code (registry.code_problems, any shape), the tree has the shape the builder reads
(schema.normalize_model), every unsupported layer is reported at once (registry.check_model_config),
and no declared size exceeds the memory budget. Then each layer is built from its config and each call (``inbound_nodes``)
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

import heapq

import numpy as np

from ..saving import registry, schema
from ..layers.base import LayerError
from ..errors import GraphError, ResourceError, ScratchError, UnsupportedLayerError
from .graph import InputLayer, Node, Ref
from .model import Model

# Config keys that size a weight or an activation: checked against the budget before anything is built.
SIZE_KEYS = ("units", "filters", "input_dim", "output_dim", "n", "depth_multiplier")
DEFAULT_MAX_BYTES = 2 * 1024 ** 3


def model_from_config(model_cfg, flavor="keras3", source=None, check=True, max_bytes=DEFAULT_MAX_BYTES):
    """Build (and shape-infer) a model from ``{class_name, config}``; refuses before building.

    With ``check`` (the top-level call): the whole tree is searched for code first, then its shape
    is checked (``schema.normalize_model``), then every unsupported layer is listed at once, then
    the sizes the config declares are held against ``max_bytes`` -- all before any layer exists.
    """
    if check:
        label = source or "config"
        schema.check_depth(model_cfg, label)
        problems = registry.code_problems(model_cfg)
        if problems:
            raise UnsupportedLayerError(problems, source)
        model_cfg = schema.normalize_model(model_cfg, label)
        problems = registry.check_model_config(model_cfg, code_checked=True)
        kind = model_cfg.get("class_name")
        if kind not in registry.MODEL_CLASSES:
            problems.insert(0, (str(model_cfg["config"].get("name", "?")), kind, "not a Sequential or Functional model"))
        if problems:
            raise UnsupportedLayerError(problems, source)
        _check_declared_sizes(model_cfg, label, max_bytes)
    kind = model_cfg["class_name"]
    config = model_cfg.get("config", {})
    build = _build_sequential if kind == "Sequential" else _build_functional
    model = build(config, flavor, source)
    model.keras_trainable = config.get("trainable", True) is not False
    model.keras_flavor = flavor   # "keras3" or "tf_keras": whose semantics the file gets (scratch.keras_logits)
    build_shape = (model_cfg.get("build_config") or {}).get("input_shape")
    if not model.built:
        try:
            model.build(build_shape or config.get("build_input_shape"))
        except ScratchError:
            raise
        except KeyError as exc:   # shape inference met a Ref whose layer call has fewer outputs
            raise GraphError(f"model '{model.name}'{_where(source)}: the graph refers to tensor {exc.args[0]}, "
                             "which its layer call does not produce") from None
        except (MemoryError, OverflowError) as exc:
            raise ResourceError(f"{source or 'config'}: model '{model.name}': the config declares weights too large "
                                f"to allocate ({type(exc).__name__}: {exc})") from None
        missing = [tuple(r) for r in model.outputs if r not in model._shapes]
        if missing:
            raise GraphError(f"model '{model.name}'{_where(source)}: output {missing[0]} is not produced by the graph "
                             "(its layer call has fewer outputs)")
    return model


def _check_declared_sizes(model_cfg, label, max_bytes):
    """Refuse a single declared size (``units``, an input's per-sample size...) that alone exceeds the
    budget, before a layer allocates it."""
    limit = max_bytes // 4   # float32 elements
    stack = [model_cfg]
    while stack:
        lc = stack.pop()
        cfg = lc.get("config", {})
        stack.extend(cfg.get("layers", []))
        if isinstance(cfg.get("layer"), dict):
            stack.append(cfg["layer"])
        name = cfg.get("name") or lc.get("name") or "?"
        for key in SIZE_KEYS:
            v = cfg.get(key)
            if isinstance(v, int) and v > limit:
                raise ResourceError(f"{label}: layer '{name}' ({lc.get('class_name')}) declares {key}={v}, beyond the "
                                    f"memory budget of {max_bytes} bytes (max_bytes=)")
        for key in ("batch_input_shape", "batch_shape", "shape", "input_shape"):
            dims = cfg.get(key)
            if isinstance(dims, list):
                size = 1
                for d in dims[1:] if key.startswith("batch") else dims:
                    size *= d or 1
                if size > limit:
                    raise ResourceError(f"{label}: layer '{name}' ({lc.get('class_name')}) declares {key}={dims}: "
                                        f"{size} values per sample, beyond the memory budget of {max_bytes} bytes")


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
        except (UnsupportedLayerError, GraphError):
            raise
        except (LayerError, ValueError, TypeError, OverflowError) as exc:
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
    if any(isinstance(l, InputLayer) for l in body):
        raise GraphError(f"Sequential model '{config.get('name')}'{_where(source)}: an InputLayer can only come first")
    nodes, prev = [], Ref(inp.name)
    for layer in body:
        nodes.append(Node(layer, 0, [prev], {}, auto_mask="keras3"))
        prev = Ref(layer.name)
    return Model(config.get("name", "sequential"), [inp] + body, nodes, [Ref(inp.name)], [prev],
                 kind="Sequential", source=source)


def _where(source):
    return f" in {source}" if source else ""


def _build_functional(config, flavor, source):
    cfgs = list(config.get("layers", []))
    layers = _make_all(cfgs, flavor, source)
    model_name = f"model '{config.get('name')}'{_where(source)}"
    by_name = {}
    for lc, layer in zip(cfgs, layers):   # the graph refers to layers by their config-level name
        layer.name = lc.get("name", layer.name)
        if layer.name in by_name:
            raise GraphError(f"{model_name}: two layers are named '{layer.name}'")
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
        if isinstance(layer, InputLayer) and lc.get("inbound_nodes"):
            raise GraphError(f"{model_name}: InputLayer '{layer.name}' lists inbound nodes; an input is not called")
        for k, node_data in enumerate(lc.get("inbound_nodes", [])):
            if isinstance(node_data, list):
                args, kwargs = _legacy_node(node_data, layer, offset)
                pending.append(Node(layer, k, args, kwargs, auto_mask="tf_keras"))
            else:
                args = _keras3_struct(node_data.get("args", []), offset)
                kwargs = _keras3_struct(node_data.get("kwargs", {}), offset)
                pending.append(Node(layer, k, args, kwargs, auto_mask="keras3"))
    for n in pending:   # shape inference and the run hand args[0] to the layer: it must be tensors
        first = n.args[0] if n.args else None
        if not _is_tensors(first):
            raise GraphError(f"{model_name}: layer '{n.layer.name}' call {n.index} must take a tensor (or a list of "
                             f"tensors) as its first argument. Received: {type(first).__name__}")
    inputs = _io_refs(config.get("input_layers", []), offset)
    outputs = _io_refs(config.get("output_layers", []), offset)
    for r in inputs:
        if not isinstance(by_name.get(r[0]), InputLayer) or r[1] != 0:
            raise GraphError(f"{model_name}: input {tuple(r)} is not an InputLayer of the model "
                             f"(its InputLayers: {[l.name for l in layers if isinstance(l, InputLayer)]})")
    ordered = _place(pending, layers, by_name, model_name)
    produced = {(n.layer.name, n.index) for n in ordered} | {(l.name, 0) for l in layers if isinstance(l, InputLayer)}
    for r in outputs:
        if (r[0], r[1]) not in produced:
            raise GraphError(f"{model_name}: output {tuple(r)} is not produced by the graph")
    return Model(config.get("name", "functional"), layers, ordered, inputs, outputs, source=source)


def _is_tensors(value):
    if isinstance(value, Ref):
        return True
    return isinstance(value, list) and bool(value) and all(_is_tensors(v) for v in value)


def _place(pending, layers, by_name, model_name):
    """The calls in an order where every input exists first: a topological sort (Kahn), linear in
    the graph's size, that keeps Keras's order (config order, a layer's calls in their order)
    whenever the config lists layers in dependency order. Dangling references and cycles are named."""
    inputs = {(l.name, 0) for l in layers if isinstance(l, InputLayer)}
    producer = {(n.layer.name, n.index): i for i, n in enumerate(pending)}
    if len(producer) != len(pending):
        raise GraphError(f"{model_name}: a layer lists the same call twice")
    deps = []
    for i, n in enumerate(pending):
        d = set()
        for r in n.refs():
            key = (r[0], r[1])
            if key in inputs:
                continue
            if key not in producer:
                what = "no such layer" if r[0] not in by_name else f"layer '{r[0]}' has no call {r[1]}"
                raise GraphError(f"{model_name}: layer '{n.layer.name}' call {n.index} takes tensor {tuple(r)}: "
                                 f"{what}")
            d.add(producer[key])
        if n.index > 0 and (n.layer.name, n.index - 1) in producer:   # a layer's calls stay in order
            d.add(producer[(n.layer.name, n.index - 1)])
        deps.append(d)
    users = [[] for _ in pending]
    indegree = [len(d) for d in deps]
    for i, d in enumerate(deps):
        for j in d:
            users[j].append(i)
    ready = [i for i, k in enumerate(indegree) if k == 0]
    heapq.heapify(ready)
    ordered = []
    while ready:
        i = heapq.heappop(ready)
        ordered.append(pending[i])
        for u in users[i]:
            indegree[u] -= 1
            if indegree[u] == 0:
                heapq.heappush(ready, u)
    if len(ordered) < len(pending):
        raise GraphError(f"{model_name}: the graph has a cycle: {' -> '.join(_cycle(deps, indegree, pending))}")
    return ordered


def _cycle(deps, indegree, pending):
    """One cycle among the calls the sort could not place, as ``layer@call`` names."""
    start = next(i for i, k in enumerate(indegree) if k > 0)
    seen, path, i = {}, [], start
    while i not in seen:
        seen[i] = len(path)
        path.append(i)
        i = next(j for j in deps[i] if indegree[j] > 0)
    loop = [f"{pending[j].layer.name}@{pending[j].index}" for j in reversed(path[seen[i]:] + [i])]
    if len(loop) > 10:   # a long cycle: its ends and its length, not 3,000 names on one line
        loop = loop[:5] + [f"... ({len(loop) - 1} calls in the cycle) ..."] + loop[-3:]
    return loop


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
        if isinstance(kind, str) and kind in _CONSTANTS:   # a list as class_name must not reach a dict lookup
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
