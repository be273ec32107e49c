"""Keras class names -> scratch classes, and the safety check that runs before anything is built.

A model file names classes by string. The engine maps those strings through two fixed tables,
``LAYER_MODULES`` (scratch/layers/__init__.py) and ``OPS`` (scratch/ops.py), and nothing else: it
never imports a module named in a file, never unmarshals code, and refuses by name everything that
would need either:

- ``Lambda`` / ``TFOpLambda`` / ``SlicingOpLambda`` layers and ``__lambda__`` objects (they carry
  Python bytecode or call arbitrary TensorFlow functions);
- objects whose ``module`` lies outside Keras (``my_project.layers``, ``__main__``, ...);
- objects registered under a custom ``registered_name`` (``"package>Name"``).

``code_problems`` walks the whole config tree first, in whatever shape it has (dicts, lists of
``[key, value]`` pairs, nested models, call arguments in ``inbound_nodes``, operation configs),
and ``check_model_config`` reports every offender at once; only then does ``make_layer``
construct anything.

Files written by tf_keras (Keras 2) differ in two places that change results: their
``hard_sigmoid`` is ``clip(0.2x + 0.5, 0, 1)``, which scratch calls ``hard_sigmoid_tf_keras``, and
their UnitNormalization floors the squared norm at 1e-12 (``tf.linalg.l2_normalize``) where Keras 3
floors the norm itself. ``make_layer(..., flavor="tf_keras")`` translates both.
"""

import re

from ..layers import LAYER_MODULES, layer_class
from ..layers.base import LayerError
from ..ops import OPS, Op, is_op

MODEL_CLASSES = ("Sequential", "Functional", "Model")
RECURRENT = ("SimpleRNN", "LSTM", "GRU")
WRAPPERS = ("Bidirectional", "TimeDistributed")

# Refused whatever their module says: they exist to run code.
CODE_CLASSES = {
    "Lambda": "Lambda layers carry Python code; the engine never runs code from a file",
    "TFOpLambda": "TFOpLambda calls an arbitrary TensorFlow function named in the file",
    "SlicingOpLambda": "SlicingOpLambda calls an arbitrary TensorFlow function named in the file",
    "__lambda__": "a serialized Python lambda; the engine never runs code from a file",
}

# Config keys written by tf_keras that change nothing at inference, when they hold these values.
_TF_KERAS_NOOP_KEYS = {"time_major": False, "ragged": False}


def snake_case(name):
    """Keras's ``to_snake_case``: the weights-file key stem of a class (``Conv2D`` -> ``conv2d``)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def keras_class(layer):
    """The Keras class name a scratch layer stands for (a nested model's is ``Model``)."""
    return getattr(layer, "keras_class", type(layer).__name__)


def v3_keys(layers):
    """``(layer, key)`` in order: the key of each layer's group in a Keras 3 weights file, its
    class's snake_case stem with a counter per stem (``dense``, ``dense_1``; a nested model is
    ``functional``). Reader and writer both name groups with it, so they cannot disagree."""
    counters = {}
    for layer in layers:
        stem = snake_case("Functional" if keras_class(layer) == "Model" else keras_class(layer))
        counters[stem] = counters.get(stem, -1) + 1
        yield layer, stem if counters[stem] == 0 else f"{stem}_{counters[stem]}"


def _is_keras_module(module):
    return module.split(".")[0] in ("keras", "tf_keras")


def object_problem(obj):
    """Why a serialized ``{class_name, module, registered_name, ...}`` dict is refused, or None."""
    cls = obj.get("class_name")
    names = [c for c in (cls if isinstance(cls, list) else [cls]) if isinstance(c, str)]
    for c in names:
        if c in CODE_CLASSES:
            return CODE_CLASSES[c]
    module = obj.get("module")
    registered = obj.get("registered_name")
    custom_module = module is not None and not (isinstance(module, str) and _is_keras_module(module))
    custom_name = registered is not None and not (isinstance(registered, str) and ">" not in registered)
    if not (custom_module or custom_name):
        return None
    what = f"custom object {cls!r}"
    if custom_name:
        what += f" registered as {registered!r}"
    if custom_module:
        what += f" from module {module!r}"
    return what + "; the engine runs only built-in Keras classes and never imports modules named in a file"


def _as_object(value):
    """A dict, or a list of ``[key, value]`` pairs (which ``dict()`` would accept) as a dict; else None."""
    if isinstance(value, dict):
        return value
    if (isinstance(value, list) and value and isinstance(value[0], (list, tuple)) and len(value[0]) == 2
            and all(isinstance(p, (list, tuple)) and len(p) == 2 and isinstance(p[0], str) for p in value)):
        return dict(value)
    return None


def _object_name(obj, path):
    cfg = obj.get("config")
    for name in (obj.get("name"), cfg.get("name") if isinstance(cfg, dict) else None):
        if isinstance(name, str):
            return name
    return _path_text(path) or "config"


def _path_text(path):
    """``layers[2].config`` from the linked ``(parent, key)`` pairs the walk keeps (built only when needed)."""
    parts = []
    while path is not None:
        path, key = path
        parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
    return "".join(reversed(parts)).lstrip(".")


def code_problems(tree):
    """``(name, class_name, reason)`` of every object anywhere in ``tree`` that would run code or import
    a module: a layer, an activation, a call argument inside ``inbound_nodes``, an operation node's
    config, in any shape (dicts, ``[key, value]`` pair lists, nested models). Iterative, so it runs
    before (and whatever) the shape check says; an offender's insides are not reported again."""
    problems, stack = [], [(tree, None)]
    while stack:
        value, path = stack.pop()
        if not isinstance(value, (dict, list)):
            continue
        obj = _as_object(value)
        if obj is not None:
            if "class_name" in obj or "module" in obj or "registered_name" in obj:
                reason = object_problem(obj)
                if reason is not None:
                    cls = obj.get("class_name")
                    problems.append((_object_name(obj, path), cls if isinstance(cls, str) else repr(cls), reason))
                    continue
            stack.extend((v, (path, k)) for k, v in reversed(list(obj.items())))
        else:
            stack.extend((v, (path, i)) for i, v in reversed(list(enumerate(value))))
    return problems


def check_model_config(model_cfg, code_checked=False):
    """Every ``(layer_name, class_name, reason)`` the engine refuses or lacks, nested models included.

    Objects that would run code are found by ``code_problems`` on the raw tree, whatever its shape;
    only when there are none is the layer check run, on the config ``schema.normalize_model``
    checked (``normalize``), so that it can rely on the shape."""
    problems = [] if code_checked else code_problems(model_cfg)
    if problems:
        return problems
    _check_layers(_layer_configs(model_cfg), problems, prefix="")
    return problems


def _layer_configs(model_cfg):
    cfg = model_cfg.get("config", {})
    return cfg.get("layers", []) if isinstance(cfg, dict) else []


def _check_layers(layer_cfgs, problems, prefix):
    for lc in layer_cfgs:
        cls = lc.get("class_name")
        cfg = lc.get("config") if isinstance(lc.get("config"), dict) else {}
        name = prefix + str(lc.get("name") or cfg.get("name") or "?")
        if cls in MODEL_CLASSES:
            _check_layers(cfg.get("layers", []), problems, prefix=name + "/")
            continue
        if is_op(lc):
            reason = None if cls in OPS else "Keras operation with no scratch implementation"
        else:
            reason = _layer_problem(cls, cfg)
        if reason is not None:
            problems.append((name, cls, reason))


def _layer_problem(cls, cfg):
    if cls == "InputLayer":
        return None
    if cls not in LAYER_MODULES:
        return "no scratch implementation of this layer type"
    if cls in WRAPPERS:
        for key in ("layer", "backward_layer"):
            inner = cfg.get(key)
            if isinstance(inner, dict):
                reason = _layer_problem(inner.get("class_name"), inner.get("config", {}))
                if reason is not None:
                    return f"wrapped {key} {inner.get('class_name')!r}: {reason}"
    return None


# ---- construction ---------------------------------------------------------------------------
def translate_config(class_name, config, flavor):
    """Keras config -> scratch constructor kwargs (tf_keras's hard_sigmoid and no-op keys)."""
    config = dict(config)
    if flavor == "tf_keras" and class_name == "MultiHeadAttention":
        # Its node lists value/key as kwargs and its softmax adds -1e9 (no fused path): not Keras 3's.
        raise LayerError("MultiHeadAttention written by tf_keras is not supported (tf_keras masks its scores "
                         "with an additive -1e9 and passes value/key as node kwargs); save the model with Keras 3")
    if flavor == "tf_keras":
        for key in ("activation", "recurrent_activation"):
            if config.get(key) == "hard_sigmoid":
                config[key] = "hard_sigmoid_tf_keras"
        for key, noop in _TF_KERAS_NOOP_KEYS.items():
            if key in config and config[key] == noop:
                del config[key]
        if class_name == "UnitNormalization":
            config["squared_norm_floor"] = 1e-12   # tf.linalg.l2_normalize's epsilon, on the squared norm
    return config


def make_layer(layer_cfg, flavor="keras3"):
    """Build a scratch layer from one serialized Keras layer (``{class_name, config, ...}``).

    Raises LayerError (with the reason) when the scratch class rejects the configuration.
    """
    cls_name = layer_cfg["class_name"]
    config = translate_config(cls_name, layer_cfg.get("config", {}), flavor)
    if is_op(layer_cfg):
        layer = Op(cls_name, **config)
    else:
        if cls_name in WRAPPERS:
            config["layer"] = make_layer(config["layer"], flavor)
            if isinstance(config.get("backward_layer"), dict):
                config["backward_layer"] = make_layer(config["backward_layer"], flavor)
        try:
            layer = layer_class(cls_name)(**config)
        except TypeError as exc:   # a Keras key the scratch class does not take
            raise LayerError(f"{cls_name} cannot be built from this config: {exc}") from None
    layer.keras_class = cls_name
    return layer
