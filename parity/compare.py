"""Per-layer comparison engine: Keras intermediate outputs against the scratch trace.

Inputs are plain data, so this module imports neither TensorFlow nor the scratch engine:
- ``keras_outputs`` / ``scratch_outputs``: ordered {layer name: array, or list of arrays for a
  layer with several outputs}. Nested models' layers use qualified names (``encoder/conv2d``).
- ``infos``: what ``parity.keras_runner.layer_infos`` says about each layer (class, config,
  input shapes, inbound layer names).
- optionally ``truth``: the scratch trace run in float64, the error budget's reference. It
  arbitrates *rounding*: which float32 side lost more precision. It shares scratch's semantics, so
  a semantic bug in scratch (a padding split, a gate order) moves the truth too, and then Keras
  looks "further"; the verdict says so when Keras is beyond rounding error from the truth.

Tolerance per layer
-------------------
``parity.tolerance.compare`` is the rule; this module only picks ``reduction``. A layer's *own*
reduction is read from its config (``kh*kw*cin/groups`` for a conv, ``in`` for Dense, ``T*(in+u)``
for a recurrence, the pool window for average pooling, ...). Outputs are compared end to end, so a
layer's output also carries the rounding of every layer before it. Independent rounding errors add
in variance, so the *effective* reduction is the layer's own plus the largest effective reduction
among its inbound layers: the longest chain of sums behind one output element, which is what the
rule's ``reduction`` means.

``parity.compare_table`` prints a result as the per-layer table.
"""

import math
import re

import numpy as np

from .tolerance import compare, compare_to_truth


class SampleOrderError(AssertionError):
    """Keras and scratch were about to be compared on different samples or in a different order."""


def assert_same_samples(keras_ids, scratch_ids, *, what="test split"):
    """Guard: both sides must see the same sample ids in the same order before anything is compared.

    Equal metrics on shuffled predictions is a real, published failure: compare ids, not counts.
    """
    a = [str(i) for i in np.asarray(keras_ids).ravel().tolist()]
    b = [str(i) for i in np.asarray(scratch_ids).ravel().tolist()]
    if len(a) != len(b):
        raise SampleOrderError(f"{what}: Keras saw {len(a)} samples, scratch {len(b)}")
    for pos, (x, y) in enumerate(zip(a, b)):
        if x != y:
            same_set = sorted(a) == sorted(b)
            raise SampleOrderError(
                f"{what}: sample order differs at position {pos}: Keras id {x!r} vs scratch id {y!r}"
                + (" (same ids, different order)" if same_set else " (different ids)"))
    return len(a)


# ---- reductions ---------------------------------------------------------------------------------
_CONV = {"Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
         "LocallyConnected1D", "LocallyConnected2D"}
_RNN = {"SimpleRNN", "LSTM", "GRU"}
_WRAPPERS = {"Bidirectional", "TimeDistributed"}
_ELEMENTWISE = {"Activation", "ReLU", "LeakyReLU", "ELU", "PReLU", "BatchNormalization", "Add",
                "Subtract", "Multiply", "Average", "Maximum", "Minimum",
                "Rescaling", "Normalization", "LayerScale", "CustomScaleLayer"}
_LAST_AXIS_ACTIVATIONS = ("softmax", "log_softmax", "sparsemax", "glu")


def _shape(shape):
    """First input shape (a layer with several inputs is given a list of shapes)."""
    if shape and isinstance(shape[0], (list, tuple)):
        return tuple(shape[0])
    return tuple(shape or ())


def _prod(xs):
    return int(np.prod([int(v) for v in xs])) if xs else 1


# Keras 3 operation nodes that only move, pick or compare values: no rounding of their own.
_EXACT_OPS = {"Reshape", "Transpose", "ExpandDims", "Squeeze", "Concatenate", "Stack", "GetItem", "Cast", "Where",
              "Max", "Min", "Maximum", "Minimum", "Negative", "Absolute", "Abs", "Relu", "Relu6", "Clip",
              "ZerosLike", "OnesLike", "NotEqual", "Equal", "Greater", "GreaterEqual", "Less", "LessEqual",
              "LogicalAnd", "LogicalOr", "LogicalNot", "Any", "All"}


def op_reduction(class_name, config, input_shape):
    """Longest sum behind one output element of a Keras 3 operation node (``x + y``, ``ops.mean``, ...)."""
    config = config or {}
    shape = _shape(input_shape)
    if class_name in ("Mean", "Sum"):
        axis = config.get("axis")
        axes = range(len(shape)) if axis is None else [axis] if isinstance(axis, int) else axis
        return _prod([shape[a] or 1 for a in axes]) if shape else 1
    if class_name in ("Softmax", "LogSoftmax"):
        axis = config.get("axis", -1)
        axes = range(len(shape)) if axis is None else [axis] if isinstance(axis, int) else axis
        return _prod([shape[a] or 1 for a in axes]) if shape else 1
    if class_name == "Matmul":
        return int(shape[-1] or 1) if shape else 1
    if class_name == "Einsum":
        ins, _, out = str(config.get("subscripts", "")).partition("->")
        shapes = input_shape if input_shape and isinstance(input_shape[0], (list, tuple)) else [input_shape]
        sizes = {c: d for sub, shp in zip(ins.split(","), shapes) for c, d in zip(sub, shp or ())}
        return _prod([sizes[c] or 1 for c in sizes if c not in out])
    return 0 if class_name in _EXACT_OPS else 1   # elementwise arithmetic and activations: one rounding


def own_reduction(class_name, config, input_shape, op=False):
    """Longest sum behind one output element of this layer (or operation node, ``op``) alone."""
    if op:
        return op_reduction(class_name, config, input_shape)
    config = config or {}
    shape = _shape(input_shape)
    if class_name in _WRAPPERS:
        inner = config.get("layer", {})
        inner_shape = shape[:1] + shape[2:] if class_name == "TimeDistributed" else shape
        return own_reduction(inner.get("class_name", ""), inner.get("config", {}), inner_shape)
    act = config.get("activation")
    # Activations that sum over the last axis (softmax, log_softmax, sparsemax, glu) add its length.
    softmax = config.get("units", None) if act in _LAST_AXIS_ACTIVATIONS else 0
    if class_name == "Dense":
        return int(shape[-1] or 1) + int(softmax or 0) + (1 if act not in (None, "linear") else 0)
    if class_name in ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"):
        # An output element gathers ceil(k/s) kernel offsets per axis, each summing cin products.
        k, s = config.get("kernel_size", 1), config.get("strides", 1)
        k, s = ([k] if isinstance(k, int) else list(k)), ([s] if isinstance(s, int) else list(s))
        s = s * len(k) if len(s) == 1 else s
        offsets = _prod([-(-int(kk) // int(ss)) for kk, ss in zip(k, s)])
        return offsets * int(shape[-1] or 1) + (1 if act not in (None, "linear") else 0)
    if class_name in _CONV:
        k = config.get("kernel_size", 1)
        k = [k] if isinstance(k, int) else list(k)
        cin = int(shape[-1] or 1)
        groups = int(config.get("groups", 1) or 1)
        return _prod(k) * cin // groups + (1 if act not in (None, "linear") else 0)
    if class_name in ("DepthwiseConv2D", "DepthwiseConv1D", "SeparableConv2D", "SeparableConv1D"):
        k = config.get("kernel_size", 1)
        taps = _prod([k] if isinstance(k, int) else k)
        if class_name.startswith("Separable"):
            # The pointwise sum runs over cin*dm depthwise outputs, each itself a sum of taps.
            taps *= int(shape[-1] or 1) * int(config.get("depth_multiplier", 1) or 1)
        return taps + (1 if act not in (None, "linear") else 0)
    if class_name in _RNN:
        steps = int(shape[1] or 1) if len(shape) > 2 else 1
        return steps * (int(shape[-1] or 1) + int(config.get("units", 1)))
    if class_name.startswith("AveragePooling"):
        p = config.get("pool_size", 2)
        return _prod([p] if isinstance(p, int) else p)
    if class_name.startswith("GlobalAveragePooling"):
        return _prod([d or 1 for d in shape[1:-1]])
    if class_name == "UpSampling2D" and config.get("interpolation") == "bilinear":
        return 4   # a + (b - a) * t across columns, then the same across rows: up to 4 input terms
    if class_name in ("Softmax",) or (class_name == "Activation" and act in _LAST_AXIS_ACTIVATIONS):
        return int(shape[-1] or 1)
    if class_name in ("LayerNormalization", "UnitNormalization"):
        # The moments (or the norm) sum over every normalized axis.
        axis = config.get("axis", -1)
        axes = {a % len(shape) for a in (axis if isinstance(axis, (list, tuple)) else [axis])} if shape else ()
        return _prod([shape[a] or 1 for a in axes])
    if class_name == "GroupNormalization":
        # One group's moments: every non-batch element of the sample, over the number of groups.
        groups = int(config.get("groups", 1) or 1)
        channels = int(shape[config.get("axis", -1)] or 1) if shape else 1
        return _prod([d or 1 for d in shape[1:]]) // (channels if groups == -1 else groups)
    if class_name in ("Add", "Average"):
        return max(1, len(input_shape) if input_shape and isinstance(input_shape[0], (list, tuple)) else 1)
    if class_name in _ELEMENTWISE:
        return 1
    if class_name in _ATTENTION:
        return _attention_reduction(class_name, config, input_shape)
    return 0  # copies: Flatten, Reshape, Dropout, ZeroPadding, MaxPooling, Concatenate, Embedding ...


_ATTENTION = {"Dot", "EinsumDense", "Attention", "AdditiveAttention", "MultiHeadAttention"}


def _attention_reduction(class_name, config, input_shape):
    """Dot: the contracted axis (twice with normalize: the norm sums it too); EinsumDense: the
    contracted input axes; Attention: the score's sum over dim plus the sum over value steps;
    MultiHeadAttention: input projection, key_dim, value steps, then heads * value_dim."""
    shapes = [tuple(s) for s in input_shape] if input_shape and isinstance(input_shape[0], (list, tuple)) \
        else [tuple(input_shape or ())]
    query, value = shapes[0], shapes[1] if len(shapes) > 1 else shapes[0]
    size = lambda d: int(d or 1)
    if class_name == "Dot":
        axes = config.get("axes", -1)
        axis = axes if isinstance(axes, int) else axes[0]
        return size(query[axis] if query else 1) * (2 if config.get("normalize") else 1)
    if class_name == "EinsumDense":
        eq = str(config.get("equation", "")).replace("...", "")
        ins, _, rest = eq.partition(",")
        kernel, _, out = rest.partition("->")
        named = query[:len(ins)] if "..." not in str(config.get("equation", ""))[:3] else query[len(query) - len(ins):]
        act = config.get("activation")
        return _prod([size(d) for c, d in zip(ins, named) if c in kernel and c not in out]) + (
            1 if act not in (None, "linear") else 0)
    steps = _prod([size(d) for d in value[1:-1]])
    if class_name in ("Attention", "AdditiveAttention"):
        return size(query[-1] if query else 1) + steps
    heads, key_dim = int(config.get("num_heads", 1)), int(config.get("key_dim", 1))
    value_dim = int(config.get("value_dim") or key_dim)
    return size(query[-1] if query else 1) + key_dim + steps + heads * value_dim


def effective_reductions(infos):
    """{name: own + max(effective of inbound layers)}, in ``infos`` order (a topological order)."""
    eff = {}
    for info in infos:
        own = own_reduction(info["class_name"], info.get("config"), info.get("input_shape"), op=info.get("op", False))
        inbound = [eff[n] for n in info.get("inbound", []) if n in eff]
        eff[info["name"]] = own + (max(inbound) if inbound else 0)
    return {k: max(1, v) for k, v in eff.items()}


# ---- comparison ---------------------------------------------------------------------------------
def flatten_outputs(outputs):
    """{name: array | [arrays]} -> flat {name: array}, naming output i > 0 ``name[i]`` as the trace does."""
    flat = {}
    for name, value in outputs.items():
        if isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                flat[name if i == 0 else f"{name}[{i}]"] = np.asarray(v)
        else:
            flat[name] = np.asarray(value)
    return flat


def _base(name):
    """The layer behind a trace name: ``lstm[1]`` and ``dense@2`` are outputs of ``lstm``/``dense``."""
    return re.sub(r"@\d+", "", re.sub(r"\[\d+\]$", "", name))


def _slim(stats):
    keep = ("max_abs", "max_rel", "mean_abs", "eps_units", "frac_beyond", "headroom", "atol", "rtol", "passed",
            "worst_index", "worst_actual", "worst_desired")
    return {k: stats[k] for k in keep}


def compare_layers(keras_outputs, scratch_outputs, infos=None, *, truth=None, atol=None, rtol=None,
                   reductions=None, keras_truth=None):
    """Compare every node; returns a JSON-ready dict (see ``summarize`` for the headline).

    ``reductions`` overrides the config-derived effective reductions ({name: n}). When ``infos``
    list each node's trace names (``nodes``, as ``keras_runner.layer_infos`` does), every one of
    them must be compared: a node the Keras probe or the scratch trace lacks is a failing row, so
    a check that compared fewer nodes than the graph has never passes. Rows of model outputs are
    flagged ``model_output``, and an output that was not compared fails the check.

    ``keras_truth`` ({name: Keras's float64 twin's output}, ``parity.keras_truth``) enables the
    amplified-rounding rule (``parity.tolerance.compare_to_truth``) for end-to-end runs: a float
    node that fails the direct rule is judged against the twin too, and passes if scratch is no
    further from it than Keras's float32 output is, plus the rule (row ``vs_truth``; ``judged_by``
    says when that judge passed it). Not with ``atol``/``rtol`` overrides: those replace the
    policy, this extends it.
    """
    keras_truth = {} if keras_truth is None or atol is not None or rtol is not None else flatten_outputs(keras_truth)
    keras_flat = flatten_outputs(keras_outputs)
    scratch_flat = flatten_outputs(scratch_outputs)
    truth_flat = flatten_outputs(truth) if truth is not None else {}
    info_by_name = {i["name"]: i for i in (infos or [])}
    eff = effective_reductions(infos or [])
    eff.update(reductions or {})
    rows = []
    for depth, (name, k) in enumerate(keras_flat.items()):
        info = info_by_name.get(_base(name), {})
        red = int(eff.get(_base(name), 1))
        row = dict(name=name, class_name=info.get("class_name", "?"), depth=depth,
                   shape=list(k.shape), reduction=red)
        s = scratch_flat.get(name)
        if s is None:
            row.update(status="missing", passed=False,
                       reason=f"scratch trace has no output named {name!r}")
            rows.append(row)
            continue
        if s.shape != k.shape:
            row.update(status="shape", passed=False,
                       reason=f"shape mismatch: scratch {tuple(s.shape)} vs Keras {tuple(k.shape)}")
            rows.append(row)
            continue
        if k.dtype.kind not in "fc":
            equal = bool(np.array_equal(k, s))
            row.update(status="ok" if equal else "diverged", passed=equal, max_abs=0.0 if equal else
                       float(np.max(np.abs(k.astype(np.float64) - s))), max_rel=0.0, mean_abs=0.0,
                       eps_units=0.0, frac_beyond=0.0 if equal else float(np.mean(k != s)), atol=0.0, rtol=0.0,
                       headroom=0.0 if equal else math.inf)
            rows.append(row)
            continue
        stats = compare(s, k, reduction=red, atol=atol, rtol=rtol, dtype=k.dtype)
        row.update(_slim(stats), status="ok" if stats["passed"] else "diverged")
        kt = keras_truth.get(name)
        if not stats["passed"] and kt is not None and kt.shape == k.shape:
            row["vs_truth"] = compare_to_truth(s, k, kt, reduction=red, dtype=k.dtype)
            if row["vs_truth"]["passed"]:
                row.update(passed=True, status="ok", judged_by="float64 truth (amplified rounding)")
        t = truth_flat.get(name)
        if t is not None and t.shape == k.shape:
            row["truth"] = error_budget(k, s, t, reduction=red)
        rows.append(row)
    graph = [n for i in (infos or []) for n in i.get("nodes", [])]
    outputs = {n for i in (infos or []) for n in i.get("model_outputs", [])}
    for name in graph:
        if name not in keras_flat:
            info = info_by_name.get(_base(name), {})
            rows.append(dict(name=name, class_name=info.get("class_name", "?"), depth=len(rows), shape=[],
                             reduction=int(eff.get(_base(name), 1)), status="missing", passed=False,
                             reason=f"the Keras probe has no output for graph node {name!r}"))
    for r in rows:
        r["model_output"] = r["name"] in outputs
    compared = sum(1 for r in rows if r.get("status") in ("ok", "diverged"))
    extra = [n for n in scratch_flat if n not in keras_flat]
    first = next((r for r in rows if not r["passed"]), None)
    return dict(
        layers=rows,
        graph_nodes=len(graph) if graph else None,
        compared=compared,
        outputs_compared=sorted(r["name"] for r in rows if r["model_output"] and r.get("status") in ("ok", "diverged")),
        passed=all(r["passed"] for r in rows) and bool(rows) and compared >= len(graph)
        and all(any(r["name"] == o and r.get("status") in ("ok", "diverged") for r in rows) for o in outputs),
        first_diverging=None if first is None else first["name"],
        first_diverging_reason=None if first is None else _reason(first),
        scratch_only=extra,
        growth=error_growth(rows),
        tolerance_overrides=tolerance_overrides(atol, rtol),
    )


def tolerance_overrides(atol=None, rtol=None):
    """``{"atol": x}`` / ``{"rtol": y}`` for each policy value a user replaced (empty: the policy ran)."""
    return {k: float(v) for k, v in (("atol", atol), ("rtol", rtol)) if v is not None}


def error_budget(keras, scratch, truth, *, reduction=1):
    """Both float32 results against the float64 scratch 'truth'; says which side is further from it."""
    kt = compare(keras, truth, reduction=reduction, dtype=np.float32)
    st = compare(scratch, truth, reduction=reduction, dtype=np.float32)
    if kt["max_abs"] > st["max_abs"]:
        further = "keras"
    elif st["max_abs"] > kt["max_abs"]:
        further = "scratch"
    else:
        further = "tie"
    return dict(keras_max_abs=kt["max_abs"], keras_eps_units=kt["eps_units"], keras_passed=kt["passed"],
                scratch_max_abs=st["max_abs"], scratch_eps_units=st["eps_units"], scratch_passed=st["passed"],
                further=further)


def _reason(row):
    if "reason" in row:
        return row["reason"]
    msg = (f"max abs err {row['max_abs']:.3e} ({row['eps_units']:.1f} eps), "
           f"{100 * row['frac_beyond']:.3f}% beyond atol={row['atol']:.2e} rtol={row['rtol']:.2e} "
           f"(reduction {row['reduction']}); worst at {tuple(row['worst_index'] or ())}: "
           f"scratch {row['worst_actual']!r} vs Keras {row['worst_desired']!r}")
    v = row.get("vs_truth")
    if v:
        msg += (f"; vs Keras's float64 twin: Keras float32 {v['keras_max_abs']:.3e} (err/tol "
                f"{v['keras_headroom']:.3g}{', amplified' if v['amplified'] else ''}), scratch {v['max_abs']:.3e} "
                f"(err/tol {v['headroom']:.3g} of E_K + rule)")
    t = row.get("truth")
    if t:
        msg += (f"; vs float64 truth: Keras {t['keras_max_abs']:.3e}, scratch {t['scratch_max_abs']:.3e} "
                f"-> {t['further']} is further from the truth")
        if not t["keras_passed"]:
            # The truth is scratch's own math in float64: it arbitrates rounding, not semantics.
            msg += (" (Keras is beyond rounding error from the float64 scratch truth: a semantic difference "
                    "in scratch, e.g. padding or gate order, moves the truth with it)")
    return msg


def error_growth(rows):
    """Error vs depth: per compared layer (depth, max_abs, eps_units), and the log10 slope of eps_units."""
    pts = [(r["depth"], r["max_abs"], r["eps_units"]) for r in rows if "eps_units" in r]
    nonzero = [(d, e) for d, _, e in pts if e > 0]
    slope = None
    if len(nonzero) >= 2:
        d, e = np.array(nonzero, dtype=np.float64).T
        slope = float(np.polyfit(d, np.log10(e), 1)[0])
    return dict(depth=[p[0] for p in pts], max_abs=[p[1] for p in pts], eps_units=[p[2] for p in pts],
                log10_eps_units_per_layer=slope)


def worst_layer(result):
    """The compared layer with the largest error in eps units (None if nothing was compared)."""
    rows = [r for r in result["layers"] if "eps_units" in r]
    return max(rows, key=lambda r: (r["eps_units"], r["max_abs"])) if rows else None


def summarize(result):
    worst = worst_layer(result)
    return dict(passed=result["passed"], layers=len(result["layers"]),
                first_diverging=result["first_diverging"],
                worst_layer=None if worst is None else worst["name"],
                worst_max_abs=None if worst is None else worst["max_abs"],
                worst_eps_units=None if worst is None else worst["eps_units"])
