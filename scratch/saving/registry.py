"""Keras class names -> scratch classes, and the safety check that runs before anything is built.

A model file names classes by string. The engine maps those strings through two fixed tables,
``LAYER_MODULES`` (scratch/layers/__init__.py) and ``OPS`` (scratch/ops.py), and nothing else: it
never imports a module named in a file, never unmarshals code, and refuses by name everything that
would need either:

- ``Lambda`` / ``TFOpLambda`` / ``SlicingOpLambda`` layers and ``__lambda__`` objects (they carry
  Python bytecode or call arbitrary TensorFlow functions);
- objects whose ``module`` lies outside Keras (``my_project.layers``, ``__main__``, ...);
- objects registered under a custom ``registered_name`` (``"package>Name"``).

``check_model_config`` walks the whole config first and reports every offender at once; only
then does ``make_layer`` construct anything.

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


def _is_keras_module(module):
    return module.split(".")[0] in ("keras", "tf_keras")


def object_problem(obj):
    """Why a serialized ``{class_name, module, registered_name, ...}`` dict is refused, or None."""
    cls = obj.get("class_name")
    if cls in CODE_CLASSES:
        return CODE_CLASSES[cls]
    module = obj.get("module")
    registered = obj.get("registered_name")
    custom_module = isinstance(module, str) and not _is_keras_module(module)
    custom_name = isinstance(registered, str) and ">" in registered
    if not (custom_module or custom_name):
        return None
    what = f"custom object {cls!r}"
    if custom_name:
        what += f" registered as {registered!r}"
    if custom_module:
        what += f" from module {module!r}"
    return what + "; the engine runs only built-in Keras classes and never imports modules named in a file"
    return None


def _walk_objects(value):
    """Every dict in a config tree that names a class, outermost first."""
    if isinstance(value, dict):
        if "class_name" in value:
            yield value
        for v in value.values():
            yield from _walk_objects(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk_objects(v)


def check_model_config(model_cfg):
    """Every ``(layer_name, class_name, reason)`` the engine refuses or lacks, nested models included."""
    problems = []
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
        reason = object_problem(lc)
        if reason is None and cls in MODEL_CLASSES:
            reason = object_problem({k: v for k, v in lc.items() if k != "config"})
            if reason is None:
                _check_layers(cfg.get("layers", []), problems, prefix=name + "/")
                continue
        if reason is None and is_op(lc):
            reason = None if cls in OPS else "Keras operation with no scratch implementation"
        elif reason is None:
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
                reason = object_problem(inner) or _layer_problem(inner.get("class_name"), inner.get("config", {}))
                if reason is not None:
                    return f"wrapped {key} {inner.get('class_name')!r}: {reason}"
    return _nested_problem(cfg)


def _nested_problem(cfg):
    # Activations, initializers, ... serialized as objects: a custom one is refused too.
    for obj in _walk_objects(cfg):
        reason = object_problem(obj)
        if reason is not None:
            return reason
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
