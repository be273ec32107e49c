"""Whole-model gradient parity: d loss / d every trainable weight, scratch against tf.GradientTape.

The Keras side runs ``model(x, training=...)`` and the Keras loss of the same class and settings
inside one ``tf.function`` (as ``fit`` does, so a softmax output is fused with its cross-entropy and
the output mask reaches the loss); the scratch side is ``Trainer.loss_and_grads`` (the moving
statistics are restored afterwards). Dropout rates are set to 0 on both sides for the comparison:
Keras's random stream cannot be reproduced (the docs of ``scratch.trainer`` say so).

Weights pair up by position: Keras's ``model.trainable_weights`` against scratch's
``keras_weight_slots()`` (the same order by construction); shapes are checked. Each weight's
gradient is compared under ``parity.tolerance`` with ``kind="backward"`` and the reduction
``2 * chain + samples * positions``, the forward rule's chain of sums read for a gradient: each
term of a weight gradient carries the rounding of the forward pass and of the backward pass through
the model (each bounded by ``chain``, the sum of every layer's own reduction,
``parity.compare.own_reduction``), and the gradient then sums those terms over every sample and every
position the weight is used at (the largest spatial/time extent of any layer output bounds
``positions``). The first weight in
Keras order that fails is the *first diverging weight*.
"""

import inspect
import math

import numpy as np

from . import compare as cmp
from . import keras_runner as kr
from .tolerance import compare as compare_arrays


def zero_dropout(kmodel, smodel):
    """Dropout rate 0 on both sides (Keras's masks cannot be reproduced); either may be None."""
    for layer in _keras_leaves(kmodel) if kmodel is not None else ():
        if hasattr(layer, "rate") and "Dropout" in type(layer).__name__:
            layer.rate = 0.0
    from scratch.trainer import _leaves

    if smodel is None:
        return
    for layer in _leaves(smodel):
        if hasattr(layer, "rate") and "Dropout" in type(layer).__name__:
            layer.rate = 0.0


def _keras_leaves(model):
    for layer in model.layers:
        if kr._is_model(layer):
            yield from _keras_leaves(layer)
        else:
            yield layer


def keras_loss(kmodel, loss):
    """The Keras (or tf_keras) loss matching a scratch loss: same class, same settings."""
    lib = kr._model_api(kmodel)
    cfg = {k: v for k, v in loss.get_config().items() if k != "name"}
    if cfg.get("reduction") == "none":
        cfg["reduction"] = None if lib.__name__ == "keras" else "none"
    cls = getattr(lib.losses, type(loss).__name__)
    accepted = inspect.signature(cls).parameters
    dropped = {k: v for k, v in cfg.items() if k not in accepted}
    if any(v not in (None, -1) for v in dropped.values()):   # tf_keras's sparse CCE has no axis (always -1)
        raise ValueError(f"{lib.__name__}.losses.{cls.__name__} does not take {dropped}")
    return cls(**{k: v for k, v in cfg.items() if k in accepted})


def keras_loss_and_grads(kmodel, xs, y, sample_weight, loss, training=True):
    """``(loss, [gradients in trainable_weights order])`` from one traced GradientTape step."""
    _, tf = kr._import()
    kloss = keras_loss(kmodel, loss)
    feed = xs if len(xs) > 1 else xs[0]

    floats = [i for i, x in enumerate(xs) if np.asarray(x).dtype.kind == "f"]

    @tf.function
    def step(feed, y, sw):
        inputs = list(feed) if len(xs) > 1 else [feed]
        with tf.GradientTape() as tape:
            for i in floats:
                tape.watch(inputs[i])
            out = kmodel(feed, training=training)
            value = kloss(y, out, sample_weight=sw)
        grads = tape.gradient(value, list(kmodel.trainable_weights) + [inputs[i] for i in floats])
        # an Embedding's gradient is IndexedSlices: densify it
        return value, [None if g is None else tf.convert_to_tensor(g) for g in grads]

    value, grads = step(feed, y, sample_weight)
    grads = [None if g is None else np.asarray(g) for g in grads]
    n = len(grads) - len(floats)
    return float(value), grads[:n], dict(zip(floats, grads[n:]))


def weight_keys(smodel):
    """Scratch ``model.weights`` keys of the trainable weights, in Keras's trainable_weights order."""
    from scratch.models.model import Model

    keys = {}

    def walk(model, prefix):
        for layer in model.layers:
            if isinstance(layer, Model):
                walk(layer, f"{prefix}{layer.name}/")
            else:
                for n in layer.active_weight_names():
                    keys[(id(layer), n)] = f"{prefix}{layer.name}/{n}"
    walk(smodel, "")
    return [keys[(id(layer), n)] for layer, n, t in smodel.keras_weight_slots() if t]


def gradient_reduction(infos, samples):
    chain = sum(cmp.own_reduction(i["class_name"], i.get("config"), i.get("input_shape")) for i in infos)
    positions = 1
    for i in infos:
        for shape in i.get("output_shape") or []:
            if shape and len(shape) > 2:
                positions = max(positions, math.prod(int(d or 1) for d in shape[1:-1]))
    return max(1, 2 * chain + samples * positions)


def keras_gradient_side(kmodel, xs, y, loss, sample_weight=None, training=True):
    """Everything the comparison takes from Keras: {loss, grads (trainable_weights order, None where
    Keras has none), dx ({float input index: d loss / d input}), infos (``layer_infos``)}. Plain
    arrays and JSON, so ``parity run`` can cache it (``parity.suite_training``)."""
    zero_dropout(kmodel, None)
    k_loss, k_grads, k_dx = keras_loss_and_grads(kmodel, xs, y, sample_weight, loss, training)
    return dict(loss=k_loss, grads=k_grads, dx=k_dx, infos=kr.layer_infos(kmodel))


def compare_gradients(kmodel, smodel, xs, y, loss, sample_weight=None, training=True, truth=None, keras_side=None):
    """Per-weight gradient table; ``truth`` is an optional float64 scratch model of the same file;
    ``keras_side`` is ``keras_gradient_side``'s result for these inputs (computed from ``kmodel``
    when None).

    Returns {rows, passed, first_diverging, loss_scratch, loss_keras, reduction}.
    """
    from scratch.trainer import Trainer

    if keras_side is None:
        keras_side = keras_gradient_side(kmodel, xs, y, loss, sample_weight, training)
    zero_dropout(None, smodel)
    keys_extra = []
    k_loss, k_grads, k_dx = keras_side["loss"], list(keras_side["grads"]), keras_side["dx"]
    trainer = Trainer(smodel).compile(loss, "sgd")
    s_loss, s_grads = trainer.loss_and_grads(xs, y, sample_weight, training=training, keep_state=True)
    # d loss / d each float input is compared after the weights: a tie routed to the wrong cell can
    # leave every weight gradient intact (tied cells often hold identical patches) but not dx
    for i, g in k_dx.items():
        key = f"input:{smodel.input_names[i]}"
        keys_extra.append(key)
        k_grads.append(g)
        s_grads[key] = trainer.input_grads[i]
    t_grads = None
    if truth is not None:
        zero_dropout(None, truth)
        t_grads = Trainer(truth).compile(loss, "sgd").loss_and_grads(
            [np.asarray(x, np.float64) if np.asarray(x).dtype.kind == "f" else x for x in xs], y, sample_weight,
            training=training, keep_state=True)[1]
    keys = weight_keys(smodel) + keys_extra
    if len(keys) != len(k_grads):
        raise ValueError(f"Keras has {len(k_grads)} trainable weights, scratch {len(keys)}: {keys}")
    reduction = gradient_reduction(keras_side["infos"], len(xs[0]))
    rows, first = [], None
    for key, kg in zip(keys, k_grads):
        sg = s_grads.get(key)
        if kg is None or sg is None:
            row = dict(weight=key, shape=None, passed=kg is None and sg is None, max_abs=None, note="no gradient")
        elif tuple(kg.shape) != tuple(sg.shape):
            row = dict(weight=key, shape=list(kg.shape), passed=False, max_abs=None,
                       note=f"shape: scratch {sg.shape} vs Keras {kg.shape}")
        else:
            stats = compare_arrays(sg, kg, reduction=reduction, kind="backward", dtype=kg.dtype)
            row = dict(weight=key, shape=list(kg.shape), passed=stats["passed"], max_abs=stats["max_abs"],
                       max_rel=stats["max_rel"], atol=stats["atol"], scale=float(np.max(np.abs(kg), initial=0.0)),
                       worst_index=stats["worst_index"], scratch=stats["worst_actual"], keras=stats["worst_desired"])
            if t_grads is not None and key in t_grads:
                tg = t_grads[key]
                row["scratch_vs_truth"] = float(np.max(np.abs(sg - tg), initial=0.0))
                row["keras_vs_truth"] = float(np.max(np.abs(kg - tg), initial=0.0))
        rows.append(row)
        if not row["passed"] and first is None:
            first = key
    return dict(rows=rows, passed=first is None, first_diverging=first, loss_scratch=s_loss, loss_keras=k_loss,
                reduction=reduction)


def format_gradient_table(result):
    lines = [f"{'weight':<48} {'shape':<18} {'max abs err':>12} {'tolerance':>11} {'|grad| max':>11}  ok",
             "-" * 110]
    for r in result["rows"]:
        err = "-" if r.get("max_abs") is None else f"{r['max_abs']:.3e}"
        tol = "-" if r.get("atol") is None else f"{r['atol']:.2e}"
        scale = "-" if r.get("scale") is None else f"{r['scale']:.3e}"
        mark = "ok" if r["passed"] else "FAIL" + (f" ({r['note']})" if r.get("note") else "")
        lines.append(f"{r['weight']:<48} {str(r['shape']):<18} {err:>12} {tol:>11} {scale:>11}  {mark}")
    lines.append(f"loss: scratch {result['loss_scratch']:.7g}, Keras {result['loss_keras']:.7g}")
    if result["first_diverging"]:
        lines.append(f"first diverging weight: {result['first_diverging']}")
    return "\n".join(lines)
