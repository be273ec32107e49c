"""When Keras's cross-entropy reads the logits behind a model's output instead of the output itself.

Keras's ``sigmoid`` and ``softmax`` (the activation functions, and the TF backend's ops under
``keras.ops.sigmoid``/``softmax``) tag the tensor they return with the input they were given
(``_keras_logits``). Keras 3's and tf_keras's ``categorical_crossentropy``,
``sparse_categorical_crossentropy`` and ``binary_crossentropy`` look for that tag: when ``y_pred``
carries it, they compute the loss from those logits with ``from_logits=True``, whatever
``from_logits`` says (with a warning when it said True), and never clip. The tag is not checked
against the loss: a sigmoid output under a categorical cross-entropy is read as softmax logits.
Any new tensor made from ``y_pred`` loses the tag, so the substitution happens only when

- the loss is one of those three, and ``SparseCategoricalCrossentropy`` has no ``ignore_class``
  (it rebuilds ``y_pred`` with ``where`` first);
- the model's output is the tensor that sigmoid/softmax returned: a layer whose ``call`` ends in its
  ``activation`` (Dense, the convolutions, EinsumDense, Activation; not a recurrent layer, whose
  output is stacked from its steps), a ``Softmax`` layer called without a mask over one axis, or a
  ``Sigmoid``/``Softmax`` operation node;
- the loss does not squeeze ``y_pred``: Keras's ``squeeze_or_expand_to_same_rank`` squeezes a
  ``y_pred`` whose last axis is 1 when it has one more axis than ``y_true`` and ``y_true`` is not
  rank 1 (a rank-1 ``y_true`` is expanded instead); tf_keras squeezes it for a rank-1 ``y_true`` too.

``logits_tap`` follows the same rules for a scratch model: it records the output's logits during
the forward pass and lets the backward pass start below the activation, from the gradient with
respect to those logits. Nothing here imports anything but numpy.
"""

import contextlib
import functools

import numpy as np

from . import losses
from .layers import activations

_CROSSENTROPIES = (losses.CategoricalCrossentropy, losses.SparseCategoricalCrossentropy, losses.BinaryCrossentropy)
_TAGGING = ("sigmoid", "softmax")
# Their activation runs inside each step; the output is stacked from the steps and carries no tag.
_STEPPED = ("SimpleRNN", "LSTM", "GRU", "Bidirectional", "TimeDistributed", "ConvLSTM2D")


def reads_logits(loss):
    """True when ``loss`` would take the logits of a tagged output (first rule above)."""
    if not isinstance(loss, _CROSSENTROPIES):
        return False
    return getattr(loss, "ignore_class", None) is None


def _tagging_layer(layer):
    """'activation' (the layer applies ``layer.activation`` last), 'function' (the layer or operation is
    the sigmoid/softmax itself), or None when the layer's output carries no tag."""
    kind = type(layer).__name__
    if getattr(layer, "is_op", False):
        if layer.op_class == "Sigmoid" or (layer.op_class == "Softmax" and isinstance(layer.config.get("axis", -1), int)):
            return "function"
        return None
    if kind == "Softmax":
        return "function" if not isinstance(layer.axis, list) or len(layer.axis) == 1 else None
    name = getattr(getattr(layer, "activation", None), "name", None)
    return "activation" if name in _TAGGING and kind not in _STEPPED else None


def tags_output(model):
    """True when the model's single output is a tensor Keras's sigmoid/softmax returned (tagged)."""
    return len(model.outputs) == 1 and _tagging_layer(model._all_layers[model.outputs[0][0]]) is not None


def _function_axis(layer):
    axis = layer.config.get("axis", -1) if getattr(layer, "is_op", False) else getattr(layer, "axis", -1)
    return axis[0] if isinstance(axis, list) else axis


def squeezed(y, out, flavor="keras3"):
    """True when Keras's loss squeezes ``out`` to ``y``'s rank, which drops the tag (last rule above).

    Keras 3's ``squeeze_or_expand_to_same_rank`` expands a rank-1 ``y`` instead; tf_keras's
    ``squeeze_or_expand_dimensions`` squeezes ``out`` then too (a (n, 1) sigmoid against (n,) targets)."""
    y_rank, out_rank = np.ndim(y), np.ndim(out)
    if out_rank != y_rank + 1 or np.shape(out)[-1] != 1:
        return False
    return flavor == "tf_keras" or y_rank != 1


class LogitsTap:
    """Within ``logits_tap``: ``active`` when the model's output is the logits (the activation is
    held back); ``activation`` then turns them into the model's real output, with its backward."""

    def __init__(self):
        self.active, self.activation = False, None


@contextlib.contextmanager
def logits_tap(model, loss):
    """Within the block the model's output layer stops before its sigmoid/softmax when Keras's loss
    could read the logits behind it (``tap.active``): the forward pass returns the logits and the
    backward pass takes ``d loss / d logits``. After it, the layer is as it was."""
    tap = LogitsTap()
    layer = model._all_layers[model.outputs[0][0]]
    where = _tagging_layer(layer) if reads_logits(loss) and len(model.outputs) == 1 else None
    if where == "function" and _function_axis(layer) not in (-1, len(model.output_shapes[0]) - 1):
        raise losses.LossError(f"output '{layer.name}' is a softmax over axis {_function_axis(layer)}: Keras's "
                               f"{type(loss).__name__} reads the logits behind it, which scratch does for the last "
                               f"axis only")
    if where == "activation":
        holders = [layer] + [inner for inner in (getattr(layer, "_conv", None),) if inner is not None]
        saved = [h.activation for h in holders]   # Conv1D runs an inner Conv2D with the same activation
        tap.active, tap.activation = True, saved[0]
        for h in holders:
            h.activation = activations.get("linear")
        try:
            yield tap
        finally:
            for h, act in zip(holders, saved):
                h.activation = act
    elif where == "function":
        forward, backward = layer.forward, layer.backward
        tap.activation = activations.get(layer.op_class.lower() if getattr(layer, "is_op", False) else "softmax")

        @functools.wraps(forward)   # the graph reads the signature to pass mask/training
        def logits_forward(x, *args, **kwargs):
            tap.active = kwargs.get("mask") is None   # a masked Softmax rebuilds its output: no tag
            return layer.cast(x) if tap.active else forward(x, *args, **kwargs)

        def logits_backward(dout):
            if not tap.active:
                return backward(dout)
            return [np.asarray(dout)] if getattr(layer, "is_op", False) else dout

        layer.forward, layer.backward = logits_forward, logits_backward
        try:
            yield tap
        finally:
            del layer.forward, layer.backward
    else:
        yield tap
