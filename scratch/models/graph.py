"""The pieces a model graph is made of, and the helpers that walk them (model.py runs the graph).

A graph is InputLayers plus ``Node``s (one per layer call) whose arguments hold ``Ref`` leaves,
each naming a tensor as Keras does: ``(layer_name, node_index, tensor_index)``. Apart from
model.py so that from_config.py can build graphs and backprop.py can walk them without either
depending on how ``Model`` runs them.
"""

import inspect

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
        return self.cast(x)


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
