"""The pieces a model graph is made of, and the helpers that walk them (model.py runs the graph).

A graph is InputLayers plus ``Node``s (one per layer call) whose arguments hold ``Ref`` leaves,
each naming a tensor as Keras does: ``(layer_name, node_index, tensor_index)``. Apart from
model.py so that from_config.py can build graphs and backprop.py can walk them without either
depending on how ``Model`` runs them.
"""

import inspect
import sys

import numpy as np

from ..errors import InputError
from ..layers.base import Layer, LayerError


class InputLayer(Layer):
    """A model input: ``batch_shape`` (batch axis included) and ``dtype`` (int32 ids for Embedding)."""

    def __init__(self, batch_shape=None, batch_input_shape=None, shape=None, input_shape=None,
                 dtype="float32", sparse=False, ragged=False, optional=False, name=None, **kwargs):
        super().__init__(name=name, dtype=dtype or "float32", **kwargs)
        if sparse or ragged:
            raise LayerError(f"sparse/ragged inputs are not supported. Received: sparse={sparse}, ragged={ragged}")
        shape_ = batch_shape or batch_input_shape
        if shape_ is None and (shape or input_shape) is not None:
            shape_ = [None, *(shape or input_shape)]
        self.batch_shape = None if shape_ is None else tuple(shape_)

    def to_dtype(self, dtype):
        if self.dtype.kind == "f":   # integer id inputs stay integers
            super().to_dtype(dtype)
        return self

    def forward(self, x, training=False):
        return self.cast(check_input(x, self.dtype, self.name))


def check_input(x, dtype, name):
    """An input array the model can take without losing values: numbers (no objects, strings or
    complex values), at least one sample, and for an integer input (Embedding ids) integral values
    that fit its dtype; NumPy would wrap ``10**12`` to ``-727379968`` in int32 silently."""
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise InputError(f"input '{name}' has dtype {x.dtype}; expected numbers ({dtype})")
    if x.ndim == 0 or x.shape[0] == 0:
        raise InputError(f"input '{name}' has shape {x.shape}: no samples (the first axis is the batch)")
    if dtype.kind in "iu" and x.dtype.kind in "iuf" and x.size:
        info = np.iinfo(dtype)
        lo, hi = x.min(), x.max()
        if x.dtype.kind == "f" and not (np.all(np.isfinite(x)) and np.array_equal(x, np.round(x))):
            raise InputError(f"input '{name}' is {dtype} (token ids) but holds non-integer values")
        if lo < info.min or hi > info.max:
            raise InputError(f"input '{name}' is {dtype} but holds values in [{lo}, {hi}], outside "
                             f"[{info.min}, {info.max}]")
    return x


class Node:
    """One layer call: ``layer(*args, **kwargs)``; Ref leaves inside args/kwargs name tensors."""

    def __init__(self, layer, index, args, kwargs, auto_mask="keras3"):
        self.layer, self.index, self.args, self.kwargs, self.auto_mask = layer, index, args, kwargs, auto_mask
        self.output_shape = None

    def refs(self):
        return list(leaves((self.args, self.kwargs)))


class Ref(tuple):
    """``(layer_name, node_index, tensor_index)``: a tensor of the graph."""

    def __new__(cls, layer, node=0, tensor=0):
        return super().__new__(cls, (str(layer), int(node), int(tensor)))


def leaves(struct):
    if isinstance(struct, Ref):
        yield struct
    elif isinstance(struct, (list, tuple)):
        for s in struct:
            yield from leaves(s)
    elif isinstance(struct, dict):
        for s in struct.values():
            yield from leaves(s)


def resolve(struct, table):
    if isinstance(struct, Ref):
        return table[struct]
    if isinstance(struct, (list, tuple)):
        return [resolve(s, table) for s in struct]
    if isinstance(struct, dict):
        return {k: resolve(v, table) for k, v in struct.items()}
    return struct


def squash(mask):
    """A list of masks that are all None is no mask."""
    if isinstance(mask, list) and all(m is None for m in mask):
        return None
    return mask


def as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def resolve_masks(struct, masks):
    if isinstance(struct, Ref):
        return masks.get(struct)
    if isinstance(struct, (list, tuple)):
        return [resolve_masks(s, masks) for s in struct]
    return None


_ACCEPTED = {}


def accepted_kwargs(layer):
    cls = type(layer)
    if cls not in _ACCEPTED:
        params = inspect.signature(layer.forward).parameters
        _ACCEPTED[cls] = {n for i, n in enumerate(params) if i > 0}
    return _ACCEPTED[cls]


def tensor_arguments(layer, node):
    """``[(name, struct)]`` of the tensor arguments of a call to a layer that takes several
    (``tensor_call_args``, e.g. MultiHeadAttention's query, value, key): positional arguments are
    named by the layer's ``forward`` parameters, as Keras binds them to ``call``."""
    names = list(inspect.signature(layer.forward).parameters)
    given = dict(zip(names, node.args))
    given.update({k: v for k, v in node.kwargs.items() if k not in given})
    return [(n, given[n]) for n in layer.tensor_call_args if given.get(n) is not None]


def shape_call_kwargs(layer, node):
    """Call arguments that change a layer's output shapes (``return_attention_scores`` adds one),
    for the layers whose ``compute_output_shape`` takes them."""
    params = inspect.signature(layer.compute_output_shape).parameters
    return {k: v for k, v in node.kwargs.items() if k == "return_attention_scores" and k in params}


def trace_name(layer_name, node_index, tensor_index):
    name = layer_name if node_index == 0 else f"{layer_name}@{node_index}"
    return name if tensor_index == 0 else f"{name}[{tensor_index}]"


def fmt_shape(shape):
    if shape is None:
        return "?"
    if isinstance(shape, list):
        return "[" + ", ".join(fmt_shape(s) for s in shape) + "]"
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _held(values, ref):
    """(values[ref], its reference count as seen here)."""
    x = values.get(ref)
    return x, sys.getrefcount(x)


# What ``_held`` sees for an array that only the ``values`` dict holds (measured, not assumed:
# interpreters count borrowed references differently).
_SOLE_REFS = _held({0: np.empty(1)}, 0)[1]


def sole_owner(values, ref):
    """True when ``values[ref]`` is an array that owns its memory and that nothing else references:
    no other graph tensor (an identity layer passes the same object on), no view of it (a view
    holds its base), no layer state, no caller. Writing into it then changes nothing anyone reads."""
    x, refs = _held(values, ref)
    return type(x) is np.ndarray and x.base is None and x.flags.writeable and refs <= _SOLE_REFS
