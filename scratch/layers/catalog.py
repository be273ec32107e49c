"""What the engine supports, read off the layer classes themselves: ``parity layers`` and the README table.

Nothing here is a second list of layers. The classes come from ``LAYER_MODULES`` (the one table),
and each class's settings are found by *trying* them: every value Keras allows for a setting that
takes one of a few values (padding, data_format, activation, ...) is passed to the scratch
constructor, and the values it refuses are listed with the refusal's own message. So the catalog
cannot claim a setting the engine would refuse, or miss one it accepts.
"""

import inspect

from ..errors import ScratchError
from . import LAYER_MODULES, layer_class

# The activation names Keras 3.15.1 serializes (keras.src.activations.ALL_OBJECTS_DICT).
KERAS_ACTIVATIONS = (
    "celu", "elu", "exponential", "gelu", "glu", "hard_shrink", "hard_sigmoid", "hard_silu", "hard_swish",
    "hard_tanh", "leaky_relu", "linear", "log_sigmoid", "log_softmax", "mish", "relu", "relu6", "selu", "sigmoid",
    "silu", "soft_shrink", "softmax", "softplus", "softsign", "sparse_plus", "sparse_sigmoid", "sparsemax",
    "squareplus", "swish", "tanh", "tanh_shrink", "threshold",
)

# Every value Keras accepts for the settings that take one of a few values.
KERAS_CHOICES = {
    "padding": ("valid", "same", "causal"),
    "data_format": ("channels_last", "channels_first"),
    "interpolation": ("nearest", "bilinear", "bicubic", "lanczos3", "lanczos5", "area"),
    "activation": KERAS_ACTIVATIONS,
    "recurrent_activation": KERAS_ACTIVATIONS,
    "merge_mode": ("concat", "sum", "mul", "ave", None),
    "score_mode": ("dot", "concat"),
    "reset_after": (True, False),
    "go_backwards": (True, False),
    "stateful": (True, False),
    "return_sequences": (True, False),
    "return_state": (True, False),
    "rms_scaling": (True, False),
    "invert": (True, False),
    "keepdims": (True, False),
    "use_causal_mask": (True, False),
}

# Values for required constructor arguments, so that each class can be built to be probed.
_PROBE_ARGS = {
    "filters": 4, "kernel_size": 3, "units": 2, "rate": 0.25, "target_shape": (4,), "n": 2, "input_dim": 4,
    "output_dim": 2, "activation": "linear", "dims": (1,), "cropping": 1, "size": 2, "num_heads": 2, "key_dim": 2,
    "equation": "ab,bc->ac", "output_shape": 2, "scale": 1.0, "stddev": 0.1, "axes": 1, "init_values": 0.1,
    "projection_dim": 2, "groups": 1, "depth_multiplier": 1, "pool_size": 2,
}
_WRAPPED = {"Bidirectional": ("LSTM", {"units": 2}), "TimeDistributed": ("Dense", {"units": 2})}


def _required(cls_name, params):
    """Keyword arguments that build ``cls_name`` with its defaults, or None if one cannot be guessed."""
    kwargs = {}
    for p in params.values():
        if p.name == "self" or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or p.default is not p.empty:
            continue
        if p.name == "layer" and cls_name in _WRAPPED:
            kwargs["layer"] = _WRAPPED[cls_name]
        elif p.name in _PROBE_ARGS:
            kwargs[p.name] = _PROBE_ARGS[p.name]
        else:
            return None
    return kwargs


def _try(cls, kwargs):
    """The refusal's first line, or None when ``cls(**kwargs)`` builds."""
    # A wrapper gets a new inner layer each time, as a loaded file would give it.
    kwargs = {k: (layer_class(v[0])(**v[1]) if k == "layer" else v) for k, v in kwargs.items()}
    try:
        cls(**kwargs)
    except (ScratchError, ValueError, TypeError) as exc:
        return str(exc).splitlines()[0]
    return None


def describe(cls_name):
    """``{class, family, keys, settings: {key: [accepted]}, refused: {key: {value: reason}}, probed}``."""
    cls = layer_class(cls_name)
    params = inspect.signature(cls.__init__).parameters
    keys = [p for p in params if p != "self" and params[p].kind not in (params[p].VAR_KEYWORD,
                                                                         params[p].VAR_POSITIONAL)]
    entry = {"class": cls_name, "family": LAYER_MODULES[cls_name], "keys": keys, "settings": {}, "refused": {},
             "probed": False, "weights": list(cls.weight_names)}
    base = _required(cls_name, params)
    if base is None or _try(cls, base) is not None:
        return entry
    entry["probed"] = True
    for key, values in KERAS_CHOICES.items():
        # A key of the same name with another meaning (ZeroPadding2D's padding amounts) is not probed.
        if key not in params or params[key].default not in (*values, None, params[key].empty):
            continue
        accepted, refused = [], {}
        for value in values:
            reason = _try(cls, {**base, key: value})
            if reason is None:
                accepted.append(value)
            else:
                refused[value] = reason
        entry["settings"][key] = accepted
        if refused:
            entry["refused"][key] = refused
    return entry


def catalog():
    """``describe`` of every class in the one table, sorted by family then name."""
    return [describe(name) for name in sorted(LAYER_MODULES, key=lambda n: (LAYER_MODULES[n], n))]
