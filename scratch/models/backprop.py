"""Backprop through a model graph: the record of a forward run and the reverse walk over it.

``Model.forward`` records each layer call as a ``Call`` on a tape; ``Model.backward`` hands
the tape to ``backprop``. Apart from model.py because inference (build, predict, trace) never
needs it.
"""

import numpy as np

from .graph import Ref, as_list, tensor_arguments


class Call:
    """One recorded layer call: the node, its input, the kwargs it ran with, its outputs; ``sub`` is
    the tape of a nested model's own run (None for a plain layer)."""

    def __init__(self, node, x, kwargs, outs, sub=None, rest=()):
        self.node, self.x, self.kwargs, self.outs, self.sub = node, x, kwargs, outs, sub
        self.rest = list(rest)   # positional arguments after the first (MultiHeadAttention's value)


def backprop(model, tape, inputs, douts, acc):
    """dx per model input for output gradients ``douts``; each layer's grads are summed into ``acc``.

    A nested model's call carries its own tape (``sub``) and is walked recursively.
    """
    grad = {}

    def add(ref, d):
        if isinstance(ref, Ref) and d is not None:
            grad[ref] = d if ref not in grad else grad[ref] + d

    for ref, d in zip(model.outputs, douts):
        add(ref, None if d is None else np.asarray(d))
    for call in reversed(tape):
        node, layer = call.node, call.node.layer
        ds = [grad.get(Ref(layer.name, node.index, t)) for t in range(len(call.outs))]
        if all(d is None for d in ds):
            continue
        ds = [np.zeros_like(o) if d is None else d for d, o in zip(ds, call.outs)]
        if getattr(layer, "is_op", False):   # an operation: one gradient per positional arg
            if getattr(layer, "_last_call", None) is not call:
                layer.forward(*call.x, **call.kwargs)
                layer._last_call = call
            _add_struct(add, node.args, layer.backward(ds[0]))
            continue
        if call.sub is not None:   # a nested model (tested so, not by class: model.py imports this module)
            dx = backprop(layer, call.sub, as_list(call.x) if len(layer.inputs) > 1 else [call.x], ds, acc)
            dx = dx if len(layer.inputs) > 1 else dx[0]
            states = []
        else:
            if getattr(layer, "_last_call", None) is not call:   # shared layer: restore this call's cache
                layer.forward(call.x, *call.rest, **call.kwargs)
                layer._last_call = call
            dx = layer.backward(ds if len(ds) > 1 else ds[0])
            _accumulate(acc, layer)
            states = []
            if call.kwargs.get("initial_state") is not None:
                dx, states = dx[0], list(dx[1:])
        main = node.args[0]
        if hasattr(layer, "tensor_call_args") and call.sub is None:   # one dx per tensor argument, in order
            for (_, r), d in zip(tensor_arguments(layer, node), dx):
                add(r, d)
        elif isinstance(main, Ref):
            add(main, dx)
        elif dx is not None:
            for r, d in zip(main, dx):
                add(r, d)
        for r, d in zip(as_list(node.kwargs.get("initial_state") or []), states):
            add(r, d)
    dxs = []
    for r, x, dtype in zip(model.inputs, inputs, model.input_dtypes):
        floating = np.issubdtype(dtype, np.floating)
        dxs.append(grad.get(r, np.zeros(np.shape(x), model.dtype)) if floating else None)
    return dxs


def _add_struct(add, refs, grads):
    """Hand each Ref leaf of ``refs`` (an op's args: tensors, lists of tensors, constants) its gradient."""
    if isinstance(refs, Ref):
        add(refs, grads)
    elif isinstance(refs, (list, tuple)) and isinstance(grads, (list, tuple)):
        for r, g in zip(refs, grads):
            _add_struct(add, r, g)


def _accumulate(acc, layer):
    entry = acc.setdefault(id(layer), (layer, {}))[1]
    for name, g in layer.grads.items():
        entry[name] = g.copy() if name not in entry else entry[name] + g


def set_grads(layer, grads):
    parts = getattr(layer, "_parts", None)   # wrappers keep their grads in the wrapped layers
    if parts is not None:
        for prefix, sub in parts():
            set_grads(sub, {n[len(prefix):]: g for n, g in grads.items() if n.startswith(prefix)})
    else:
        layer.grads = dict(grads)
