"""Keras 3 operation nodes of a Functional graph, run with NumPy from a fixed table.

Keras 3 records the mask computations of Embedding/Masking/merge layers as operation nodes in a
Functional config (``NotEqual``, ``ExpandDims``, ``LogicalOr``, ``Any``, ...; module
``keras.src.ops.*``) and passes their result as an explicit ``mask=``. They are plain NumPy
here; they have no weights and are not part of ``model.layers``. The engine maps a node's class
name through ``OPS`` and nothing else: it never imports the module a file names.
"""

import numpy as np

from .layers.base import Layer


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
