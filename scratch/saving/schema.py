"""The shape of a Keras model config, checked before the engine reads any part of it.

A config comes from a file, so every part may be of any JSON type. ``normalize_model`` walks the
whole tree once and returns a copy in the one shape the builder reads, or raises ``ConfigError``
naming the path of the offending part (``layers[2].config.units``), what was expected and what was
found. The shapes either loader (legacy ``.h5`` and ``.keras`` / ``to_json()``) accepts:

- model: ``{"class_name": "Sequential"|"Functional"|"Model", "config": {...}}``; a Sequential's
  ``config`` may also be a bare list of layers (the Keras 2.0 style), which becomes ``{"layers": [...]}``;
- layer: ``{"class_name": str, "config": dict, "name"?: str, "inbound_nodes"?: list, ...}``; a
  nested model is a layer that is itself a model; a wrapper's ``config.layer`` is a layer;
- node: tf_keras ``[[layer, node, tensor, kwargs?], ...]`` or Keras 3 ``{"args": list, "kwargs": dict}``
  whose ``__keras_tensor__`` leaves hold ``config.keras_history = [layer, node, tensor]``;
- ``input_layers`` / ``output_layers``: one ``[layer, node, tensor]``, a list of them, or a dict of
  them; never empty;
- ``dtype``: a plain numeric dtype name, or a ``DTypePolicy`` dict naming one.

Limits: ``MAX_DEPTH`` levels of JSON nesting (Keras's own configs use about 12) and ``MAX_LAYERS``
layers in the whole tree. Integers must fit in int64 (JSON has no limit; NumPy has).
"""

from ..errors import ConfigError
from ..ops import is_op

MAX_DEPTH = 100
MAX_LAYERS = 20_000
MODEL_CLASSES = ("Sequential", "Functional", "Model")
WRAPPERS = ("Bidirectional", "TimeDistributed")

FLOAT_DTYPES = ("float16", "float32", "float64", "bfloat16")
INPUT_DTYPES = FLOAT_DTYPES + ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool")
_INT_LIMIT = 2 ** 63 - 1


def check_depth(value, label, limit=MAX_DEPTH):
    """Refuse JSON nested deeper than ``limit`` (iteratively: no recursion on hostile input)."""
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            if d > limit:
                raise ConfigError(f"{label}: the config is nested more than {limit} levels deep")
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
        elif isinstance(v, int) and not isinstance(v, bool) and abs(v) > _INT_LIMIT:
            raise ConfigError(f"{label}: the config holds the integer {str(v)[:30]}..., beyond int64")


class _Walk:
    def __init__(self, label):
        self.label, self.layers = label, 0

    def fail(self, path, want, got):
        found = type(got).__name__ if not isinstance(got, (str, int, float)) or isinstance(got, bool) else repr(got)
        if isinstance(got, str) and len(got) > 60:
            found = repr(got[:60] + "...")
        raise ConfigError(f"{self.label}: {path or 'the config'} must be {want}. Received: {found}")

    def need(self, value, types, path, want):
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
            self.fail(path, want, value)
        return value

    # ---- models and layers ----------------------------------------------------------------
    def model(self, cfg, path):
        self.need(cfg, dict, path, "a JSON object with 'class_name' and 'config'")
        cls = self.need(cfg.get("class_name"), str, _join(path, "class_name"), "a string")
        out = dict(cfg)
        config = cfg.get("config", {})
        if cls == "Sequential" and isinstance(config, list):   # Keras 2.0: the config is the layer list
            config = {"layers": config}
        config = self.need(config, dict, _join(path, "config"), "a JSON object")
        config = dict(config)
        if cls not in MODEL_CLASSES:   # the caller reports "not a model"; nothing more to read
            out["config"] = config
            return out
        self._opt_str(config, "name", _join(path, "config"))
        layers = self.need(config.get("layers", []), list, _join(path, "config.layers"), "a list of layers")
        if not layers:
            raise ConfigError(f"{self.label}: {_join(path, 'config.layers')}: the model has no layers")
        functional = cls != "Sequential"
        config["layers"] = [self.layer(lc, f"{_join(path, 'config.layers')}[{i}]", functional)
                            for i, lc in enumerate(layers)]
        if functional:
            for key in ("input_layers", "output_layers"):
                config[key] = self.io_spec(config.get(key), _join(path, f"config.{key}"))
        out["config"] = config
        if "build_config" in cfg and cfg["build_config"] is not None:
            self.need(cfg["build_config"], dict, _join(path, "build_config"), "a JSON object")
            self.shapes(cfg["build_config"].get("input_shape"), _join(path, "build_config.input_shape"))
        return out

    def layer(self, lc, path, functional=False):
        self.layers += 1
        if self.layers > MAX_LAYERS:
            raise ConfigError(f"{self.label}: the config holds more than {MAX_LAYERS} layers")
        self.need(lc, dict, path, "a layer: a JSON object with 'class_name' and 'config'")
        cls = self.need(lc.get("class_name"), str, _join(path, "class_name"), "a string")
        if cls in MODEL_CLASSES:
            out = self.model(lc, path)
        else:
            out = dict(lc)
            cfg = self.need(lc.get("config", {}), dict, _join(path, "config"), "a JSON object")
            out["config"] = self.layer_config(cls, cfg, _join(path, "config"), op=is_op(lc))
        self._opt_str(lc, "name", path)
        self._opt_str(out["config"], "name", _join(path, "config"))
        if functional:
            nodes = self.need(lc.get("inbound_nodes", []), list, _join(path, "inbound_nodes"), "a list")
            out["inbound_nodes"] = [self.node(n, f"{_join(path, 'inbound_nodes')}[{k}]") for k, n in enumerate(nodes)]
        return out

    def layer_config(self, cls, cfg, path, op=False):
        cfg = dict(cfg)
        if "dtype" in cfg:   # a layer computes in floats; inputs and operations (masks) may be ints or bools
            self.dtype(cfg["dtype"], _join(path, "dtype"), INPUT_DTYPES if op or cls == "InputLayer"
                       else FLOAT_DTYPES)
        for key in ("batch_input_shape", "batch_shape", "input_shape", "shape"):
            if key in cfg:
                self.shape(cfg[key], _join(path, key))
        if cls in WRAPPERS:
            for key in ("layer", "backward_layer"):
                if key in cfg and (key == "layer" or cfg[key] is not None):
                    cfg[key] = self.layer(cfg[key], _join(path, key))
        return cfg

    def _opt_str(self, d, key, path):
        if key in d and d[key] is not None:
            self.need(d[key], str, _join(path, key), "a string")

    # ---- values ---------------------------------------------------------------------------
    def dtype(self, value, path, allowed):
        if value is None:
            return
        if isinstance(value, dict):   # Keras 3 DTypePolicy
            inner = self.need(value.get("config"), dict, _join(path, "config"), "a JSON object")
            value = self.need(inner.get("name"), str, _join(path, "config.name"), "a dtype name")
            path = _join(path, "config.name")
            if value.startswith("mixed_"):
                return   # the layer refuses mixed precision with its own message
        if not isinstance(value, str) or value not in allowed:
            self.fail(path, "one of " + ", ".join(allowed), value)

    def shape(self, value, path):
        if value is None:
            return
        self.need(value, list, path, "a list of dimensions (integers or null)")
        for i, d in enumerate(value):
            if d is not None and (not isinstance(d, int) or isinstance(d, bool) or d < 0):
                self.fail(f"{path}[{i}]", "a non-negative integer or null", d)

    def shapes(self, value, path):
        """One shape, or a list / dict of shapes (a multi-input build_config)."""
        if isinstance(value, dict):
            for k, v in value.items():
                self.shapes(v, _join(path, str(k)))
        elif isinstance(value, list) and any(isinstance(v, (list, dict)) for v in value):
            for i, v in enumerate(value):
                self.shapes(v, f"{path}[{i}]")
        else:
            self.shape(value, path)

    def history(self, h, path):
        self.need(h, list, path, "[layer_name, node_index, tensor_index]")
        if len(h) < 3:
            self.fail(path, "[layer_name, node_index, tensor_index]", h)
        self.need(h[0], str, f"{path}[0]", "a layer name")
        for i in (1, 2):
            if not isinstance(h[i], int) or isinstance(h[i], bool) or h[i] < 0:
                self.fail(f"{path}[{i}]", "a non-negative integer", h[i])

    def node(self, node, path):
        if isinstance(node, list):   # tf_keras: one entry per input tensor
            if not node:
                self.fail(path, "a non-empty list of [layer, node, tensor, kwargs]", node)
            for i, entry in enumerate(node):
                self.history(entry, f"{path}[{i}]")
                if len(entry) > 3:
                    self.need(entry[3], dict, f"{path}[{i}][3]", "a JSON object of call arguments")
            return node
        self.need(node, dict, path, "a node: a list (tf_keras) or {'args': [...], 'kwargs': {...}} (Keras 3)")
        self.need(node.get("args", []), list, _join(path, "args"), "a list")
        self.need(node.get("kwargs", {}), dict, _join(path, "kwargs"), "a JSON object")
        self.tensors(node, path)
        return node

    def tensors(self, value, path):
        """Every ``__keras_tensor__`` leaf in a Keras 3 node has a valid keras_history."""
        stack = [(value, path)]
        while stack:
            v, p = stack.pop()
            if isinstance(v, dict):
                if v.get("class_name") == "__keras_tensor__":
                    cfg = self.need(v.get("config"), dict, _join(p, "config"), "a JSON object")
                    self.history(cfg.get("keras_history"), _join(p, "config.keras_history"))
                    continue
                stack.extend((c, _join(p, str(k))) for k, c in v.items())
            elif isinstance(v, list):
                stack.extend((c, f"{p}[{i}]") for i, c in enumerate(v))

    def io_spec(self, spec, path):
        if isinstance(spec, dict):
            spec = list(spec.values())
        self.need(spec, list, path, "a list of [layer_name, node_index, tensor_index]")
        if len(spec) >= 3 and isinstance(spec[0], str):
            spec = [spec]
        if not spec:
            raise ConfigError(f"{self.label}: {path} is empty: a model needs at least one")
        for i, s in enumerate(spec):
            self.history(s, f"{path}[{i}]")
        return spec


def normalize_model(cfg, label):
    """A checked copy of a model config in the shape the builder reads (see the module docstring).

    The caller has bounded its depth (``check_depth``): the walk recurses along models and layers."""
    return _Walk(label).model(cfg, "")


def _join(path, key):
    return f"{path}.{key}" if path else key


def _as_tuple(types):
    return types if isinstance(types, tuple) else (types,)
