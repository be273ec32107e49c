"""Keras class names -> scratch classes, and the safety check that runs before anything is built.

A model file names classes by string. The engine maps those strings through the fixed table below
and nothing else: it never imports a module named in a file, never unmarshals code, and refuses
by name everything that would need either:

- ``Lambda`` / ``TFOpLambda`` / ``SlicingOpLambda`` layers and ``__lambda__`` objects (they carry
  Python bytecode or call arbitrary TensorFlow functions);
- objects whose ``module`` lies outside Keras (``my_project.layers``, ``__main__``, ...);
- objects registered under a custom ``registered_name`` (``"package>Name"``).

``check_model_config`` walks the whole config first and reports every offender at once; only
then does ``make_layer`` construct anything.

Files written by tf_keras (Keras 2) differ in one place that changes results: their
``hard_sigmoid`` is ``clip(0.2x + 0.5, 0, 1)``, which scratch calls ``hard_sigmoid_tf_keras``.
``make_layer(..., flavor="tf_keras")`` translates the name.
"""

import importlib
import re

import numpy as np

from .base import Layer, LayerError

# Keras class name -> scratch module that defines a class of the same name.
LAYER_MODULES = {
    **dict.fromkeys(["Dense", "Activation", "ReLU", "Softmax", "Flatten", "Reshape", "Dropout"], "core"),
    **dict.fromkeys(["Conv2D", "LocallyConnected2D", "ZeroPadding2D"], "conv"),
    **dict.fromkeys(["MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D"],
                    "pooling"),
    "BatchNormalization": "normalization",
    **dict.fromkeys(["Add", "Concatenate", "Subtract", "Multiply", "Average", "Maximum", "Minimum"], "merge"),
    "Embedding": "embedding",
    **dict.fromkeys(["SimpleRNN", "LSTM", "GRU"], "recurrent"),
    **dict.fromkeys(["Bidirectional", "TimeDistributed"], "wrappers"),
    **dict.fromkeys(["Masking", "RepeatVector"], "sequence"),
}
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
def layer_class(class_name):
    """The scratch class for a Keras layer class name (imported from the fixed table only)."""
    module = importlib.import_module(f"{__package__}.{LAYER_MODULES[class_name]}")
    return getattr(module, class_name)


def translate_config(class_name, config, flavor):
    """Keras config -> scratch constructor kwargs (tf_keras's hard_sigmoid and no-op keys)."""
    config = dict(config)
    if flavor == "tf_keras":
        for key in ("activation", "recurrent_activation"):
            if config.get(key) == "hard_sigmoid":
                config[key] = "hard_sigmoid_tf_keras"
        for key, noop in _TF_KERAS_NOOP_KEYS.items():
            if key in config and config[key] == noop:
                del config[key]
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


# ---- Keras 3 graph operations -----------------------------------------------------------------
# Keras 3 records the mask computations of Embedding/Masking/merge layers as operation nodes in a
# Functional config (``NotEqual``, ``ExpandDims``, ``LogicalOr``, ``Any``, ...; module
# ``keras.src.ops.*``) and passes their result as an explicit ``mask=``. They are plain NumPy
# here; they have no weights and are not part of ``model.layers``.
def _axis(cfg):
    axis = cfg.get("axis")
    return tuple(axis) if isinstance(axis, list) else axis


def _like(fill):
    return lambda cfg: lambda x: np.full(np.shape(x), fill, dtype=cfg.get("dtype") or np.asarray(x).dtype)


def _reduce(fn):
    return lambda cfg: lambda x: fn(np.asarray(x), axis=_axis(cfg), keepdims=bool(cfg.get("keepdims", False)))


# op class name -> (config -> function of the call's positional args)
OPS = {
    "NotEqual": lambda cfg: np.not_equal, "Equal": lambda cfg: np.equal,
    "LogicalAnd": lambda cfg: np.logical_and, "LogicalOr": lambda cfg: np.logical_or,
    "LogicalNot": lambda cfg: np.logical_not,
    "Any": _reduce(np.any), "All": _reduce(np.all),
    "ExpandDims": lambda cfg: lambda x: np.expand_dims(x, _axis(cfg)),
    "Squeeze": lambda cfg: lambda x: np.squeeze(x, _axis(cfg)),
    "ZerosLike": _like(0), "OnesLike": _like(1),
    "Concatenate": lambda cfg: lambda xs: np.concatenate(xs, axis=_axis(cfg) if cfg.get("axis") is not None else 0),
    "Stack": lambda cfg: lambda xs: np.stack(xs, axis=_axis(cfg) or 0),
    "Cast": lambda cfg: lambda x: np.asarray(x).astype(cfg.get("dtype") or "float32"),
}


def is_op(layer_cfg):
    """A Keras 3 operation node (``keras.src.ops.*``) rather than a layer.

    Legacy ``.h5`` configs drop ``module``; there an operation is told from a layer of the same
    class name (``Concatenate``) by its config, which has no ``trainable`` key.
    """
    module = layer_cfg.get("module")
    if isinstance(module, str):
        return module.startswith("keras.src.ops")
    cfg = layer_cfg.get("config") or {}
    return layer_cfg.get("class_name") in OPS and "trainable" not in cfg


class Op(Layer):
    """One Keras 3 operation node of a Functional graph, run with NumPy."""

    is_op = True

    def __init__(self, class_name, name=None, **config):
        super().__init__(name=name)
        self.fn = OPS[class_name](config)

    def compute_output_shape(self, *shapes):
        return None   # no layer's weights depend on a mask's shape

    def compute_mask(self, inputs, mask=None):
        return None

    def forward(self, *args):
        return self.fn(*args)
