"""Keras 3 operation nodes (scratch/ops.py) against the real Keras operations, forward and backward.

Each case builds the Keras ``Operation`` class from the config a file would hold and calls it
eagerly (the backend function a loaded graph runs), then the scratch ``Op`` built from the same
class name and config. Gradients: float64 centered differences for every op, and TensorFlow's own
gradient at the kinks, where the derivative is a convention (ties, bounds, thresholds).
"""

import re

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import scratch
from parity.compare import op_reduction
from parity.tolerance import assert_close, assert_gradient_close, numerical_gradient
from scratch.errors import GraphError, LayerError, UnsupportedLayerError
from scratch.ops import OPS, Op
from tests.scratch.test_loader import check_model, randomize, save_all

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")
from keras.src.activations import activations as kact  # noqa: E402
from keras.src.ops import math as kmath, nn as knn, numpy as knp  # noqa: E402

POS = "pos"   # the op needs positive inputs (log, sqrt, a divisor, a power's base)

# id: (Keras class, config, argument kind, domain)
CASES = {
    "Add": (knp.Add, {}, "xy", None), "Add+3": (knp.Add, {}, "xc", None),
    "Subtract": (knp.Subtract, {}, "xy", None), "2-x": (knp.Subtract, {}, "cx", None),
    "Multiply": (knp.Multiply, {}, "xy", None), "x*0.5": (knp.Multiply, {}, "xc", None),
    "Divide": (knp.Divide, {}, "xy", POS), "TrueDivide/2": (knp.TrueDivide, {}, "xc", None),
    "Power": (knp.Power, {}, "xy", POS), "x**2": (knp.Power, {}, "xc2", None),
    "Maximum": (knp.Maximum, {}, "xy", None), "Minimum": (knp.Minimum, {}, "xc", None),
    "Negative": (knp.Negative, {}, "x", None), "Square": (knp.Square, {}, "x", None),
    "Sqrt": (knp.Sqrt, {}, "x", POS), "Rsqrt": (kmath.Rsqrt, {}, "x", POS),
    "Reciprocal": (knp.Reciprocal, {}, "x", POS), "Absolute": (knp.Absolute, {}, "x", None),
    "Exp": (knp.Exp, {}, "x", None), "Expm1": (knp.Expm1, {}, "x", None), "Log": (knp.Log, {}, "x", POS),
    "Log1p": (knp.Log1p, {}, "x", POS), "Erf": (kmath.Erf, {}, "x", None), "Sin": (knp.Sin, {}, "x", None),
    "Cos": (knp.Cos, {}, "x", None), "Clip": (knp.Clip, {"x_min": -0.5, "x_max": 0.7}, "x", None),
    "ReLU": (kact.ReLU, {"negative_slope": 0.1, "max_value": 0.8, "threshold": 0.3}, "x", None),
    "ReLU/leaky": (kact.ReLU, {"negative_slope": 0.3}, "x", None),
    "Relu": (knn.Relu, {}, "x", None), "Relu6": (knn.Relu6, {}, "x6", None),
    "LeakyRelu": (knn.LeakyRelu, {"negative_slope": 0.15}, "x", None), "Elu": (knn.Elu, {"alpha": 0.7}, "x", None),
    "Selu": (knn.Selu, {}, "x", None), "Sigmoid": (knn.Sigmoid, {}, "x", None), "Tanh": (knp.Tanh, {}, "x", None),
    "HardSigmoid": (knn.HardSigmoid, {}, "x6", None), "HardSilu": (knn.HardSilu, {}, "x6", None),
    "Silu": (knn.Silu, {}, "x", None), "Gelu": (knn.Gelu, {"approximate": False}, "x", None),
    "Gelu/tanh": (knn.Gelu, {"approximate": True}, "x", None), "Softplus": (knn.Softplus, {}, "x", None),
    "Softsign": (knn.Softsign, {}, "x", None), "Softmax": (knn.Softmax, {"axis": 1}, "x", None),
    "Celu": (knn.Celu, {"alpha": 0.6}, "x", None), "LogSigmoid": (knn.LogSigmoid, {}, "x", None),
    "TanhShrink": (knn.TanhShrink, {}, "x", None), "HardTanh": (knn.HardTanh, {}, "x", None),
    "SoftShrink": (knn.SoftShrink, {"threshold": 0.4}, "x", None),
    "HardShrink": (knn.HardShrink, {"threshold": 0.4}, "x", None),
    "SparsePlus": (knn.SparsePlus, {}, "x", None), "SparseSigmoid": (knn.SparseSigmoid, {}, "x", None),
    "Glu": (knn.Glu, {"axis": -1}, "x", None),
    "LogSoftmax": (knn.LogSoftmax, {"axis": -1}, "x", None),
    "Mean": (knp.Mean, {"axis": 1, "keepdims": False}, "x", None),
    "Sum": (knp.Sum, {"axis": [1, 2], "keepdims": True}, "x", None),
    "Max": (knp.Max, {"axis": -1, "keepdims": False}, "x", None), "Min": (knp.Min, {"axis": None}, "x", None),
    "Matmul": (knp.Matmul, {}, "mm", None), "Einsum": (knp.Einsum, {"subscripts": "bij,bkj->bik"}, "xx", None),
    "Reshape": (knp.Reshape, {"newshape": [-1, 12]}, "x", None),
    "Transpose": (knp.Transpose, {"axes": [0, 2, 1]}, "x", None),
    "ExpandDims": (knp.ExpandDims, {"axis": 1}, "x", None), "Squeeze": (knp.Squeeze, {"axis": 1}, "x1", None),
    "Concatenate": (knp.Concatenate, {"axis": -1}, "list", None), "Stack": (knp.Stack, {"axis": 1}, "list", None),
    "GetItem": (knp.GetItem, {}, "key", None), "Where": (knp.Where, {}, "where", None),
}


def make_args(kind, domain, seed, dtype, batch=2):
    rng = np.random.default_rng(seed)

    def t(*shape):
        v = rng.normal(size=shape) * (4 if kind == "x6" else 1)
        return (np.abs(v) + 0.5 if domain == POS else v).astype(dtype)
    if kind in ("x", "x6"):
        return [t(batch, 3, 4)]
    if kind == "x1":
        return [t(batch, 1, 4)]
    if kind == "xy":   # broadcasting: the second operand has size-1 axes
        return [t(batch, 3, 4), t(1, 3, 1) if seed % 2 else t(batch, 3, 4)]
    if kind == "xc":
        return [t(batch, 3, 4), [3, 0.5, -0.25][seed % 3]]
    if kind == "xc2":
        return [t(batch, 3, 4), 2]
    if kind == "cx":
        return [2.0, t(batch, 3, 4)]
    if kind == "mm":
        return [t(batch, 3, 4), t(batch, 4, 5) if seed % 2 else t(4, 5)]
    if kind == "xx":
        return [t(batch, 3, 4), t(batch, 5, 4)]
    if kind == "list":
        return [[t(batch, 3, 4), t(batch, 3, 4)]]
    if kind == "key":
        return [t(batch, 3, 4), [slice(None), slice(1, 3), seed % 4]]
    if kind == "where":
        return [rng.random((batch, 3, 4)) < 0.5, t(batch, 3, 4), t(1, 1, 4)]
    raise ValueError(kind)


def keras_result(case, args):
    cls, cfg, _, _ = CASES[case]
    op = cls.from_config(dict(cfg, name="op"))
    return np.asarray(op(*[tuple(a) if isinstance(a, list) and not isinstance(a[0], np.ndarray) else a
                           for a in args]))


def scratch_op(case):
    cls, cfg, _, _ = CASES[case]
    return Op(cls.__name__, name="op", **cfg)


def _shapes(args):
    return [np.shape(a) for a in (args[0] if isinstance(args[0], list) else args) if isinstance(a, np.ndarray)]


@pytest.mark.parametrize("case", sorted(CASES))
@settings(max_examples=3)
@given(seed=st.integers(0, 2**31 - 1), dtype=st.sampled_from(["float32", "float64"]), batch=st.integers(1, 3))
@example(seed=1, dtype="float32", batch=1).via("broadcast operand, a batch of one")
@example(seed=2, dtype="float64", batch=2).via("same-shape operands")
def test_op_matches_keras(case, seed, dtype, batch):
    _, cfg, kind, domain = CASES[case]
    args = make_args(kind, domain, seed, dtype, batch)
    desired = keras_result(case, args)
    actual = scratch_op(case).forward(*args)
    shapes = _shapes(args)
    assert_close(actual, desired, label=f"{case} {dtype}",
                 reduction=max(1, op_reduction(CASES[case][0].__name__, cfg, shapes[0] if len(shapes) == 1 else shapes)))


def _float_leaves(args):
    """(path, array) of every float tensor among an op's args (list args flattened)."""
    out = []
    for i, a in enumerate(args):
        for j, v in enumerate(a if isinstance(a, list) else [a]):
            if isinstance(v, np.ndarray) and v.dtype.kind == "f":
                out.append(((i, j if isinstance(a, list) else None), v))
    return out


def _grad_at(grads, path):
    i, j = path
    return grads[i] if j is None else grads[i][j]


@pytest.mark.parametrize("case", sorted(CASES))
def test_op_gradient_matches_finite_differences(case):
    _, _, kind, domain = CASES[case]
    args = make_args(kind, domain, seed=3, dtype="float64")
    op = scratch_op(case).to_dtype("float64")
    y = op.forward(*args)
    dy = np.random.default_rng(4).normal(size=np.shape(y))
    grads = op.backward(dy)
    assert len(grads) == len(args)
    leaves = _float_leaves(args)
    assert leaves
    for path, x in leaves:
        numeric = numerical_gradient(lambda: op.forward(*args), x, dy)
        assert_gradient_close(_grad_at(grads, path), numeric, label=f"{case} d{path}")


# Inputs sitting on kinks: the gradient there is TensorFlow's convention, not a derivative.
KINKS = [
    ("Relu", [-1.0, 0.0, 2.0]), ("Relu6", [0.0, 6.0, 3.0, 7.0]), ("Absolute", [0.0, -2.0, 1.0]),
    ("ReLU", [0.3, 0.8, 0.0, 1.0, -1.0]), ("ReLU/leaky", [0.0, -1.0, 1.0]), ("LeakyRelu", [0.0, -1.0]),
    ("Elu", [0.0, -1.0]), ("HardSigmoid", [-3.0, 3.0, 0.0]), ("HardSilu", [-3.0, 3.0, 0.0]),
    ("Clip", [-0.5, 0.7, 0.0, 2.0]), ("Maximum", [1.0, 1.0]), ("Minimum", [-0.25, 1.0]),
    ("Max", [2.0, 2.0, 1.0]), ("Min", [-1.0, -1.0, 3.0]),
]


@pytest.mark.parametrize("case, values", KINKS, ids=[k for k, _ in KINKS])
def test_gradient_at_kinks_follows_tensorflow(case, values):
    cls, cfg, kind, _ = CASES[case]
    x = np.asarray(values, np.float64).reshape(1, 1, -1)
    args = [x, x[..., ::-1].copy()] if kind == "xy" else [x, -0.25] if kind == "xc" else [x]
    cfg = dict(cfg, axis=-1) if case == "Min" else cfg
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = cls.from_config(dict(cfg, name="op"))(xt, *args[1:])
    dy = np.arange(1.0, np.size(y) + 1).reshape(np.shape(y))
    want = tape.gradient(y, xt, output_gradients=tf.constant(dy)).numpy()
    op = Op(cls.__name__, **cfg).to_dtype("float64")
    op.forward(*args)
    assert_close(op.backward(dy)[0], want, label=f"{case} gradient at {values}")


# ---- op nodes in a model -------------------------------------------------------------------------------
def mixed_model():
    """Layers and operation nodes interleaved; the output is an operation."""
    ops = keras.ops
    x = keras.Input((3, 4), name="x")
    h = keras.layers.Dense(4, name="dense")(x)
    a = keras.activations.relu(h, negative_slope=0.1, max_value=0.8, threshold=0.3)
    b = ops.mean(h * 0.5 + 3, axis=1, keepdims=True)          # constants inline; broadcast back below
    c = ops.concatenate([a - b, ops.sigmoid(h) * x], axis=-1)
    d = ops.matmul(ops.transpose(c, (0, 2, 1)), c)              # (batch, 8, 8)
    e = keras.layers.Dense(2, name="head")(ops.reshape(d, (-1, 64)))
    return keras.Model(x, ops.softmax(e) + ops.sum(e, axis=-1, keepdims=True), name="mixed")


def test_op_nodes_in_a_model_match_keras_node_by_node(tmp_path):
    """Each op node is traced under its name and compared; the output (an op) too, from .keras and .h5."""
    model = randomize(mixed_model())
    x = np.random.default_rng(0).normal(size=(5, 3, 4)).astype("float32")
    ref = check_model(model, x, save_all(model, tmp_path, "mixed", formats=("h5", "keras")), label="mixed")
    # Keras's name counters are process-global: 're_lu' is 're_lu_3' after other tests built some.
    assert {"re_lu", "mean", "concatenate", "matmul", "softmax"} <= {re.sub(r"_\d+$", "", n) for n in ref}
    out = model.outputs[0]._keras_history[0].name
    assert out in ref and out not in [l.name for l in model.layers]
    for fmt in ("keras", "h5"):
        smodel = scratch.load(tmp_path / f"mixed.{fmt}")
        assert smodel.get_layer("dense") is not None
        assert all(type(l).__name__ != "ReLU" for l in smodel.layers)   # an operation, not the ReLU layer
        assert smodel.output_shapes == [(None, 2)]


def test_backprop_flows_through_op_nodes(tmp_path):
    """Model.backward through interleaved ops: dx and every Dense weight against finite differences."""
    model = randomize(mixed_model())
    model.save(tmp_path / "mixed.keras")
    smodel = scratch.load(tmp_path / "mixed.keras").to_dtype("float64")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 4))
    dy = rng.normal(size=(2, 2))
    smodel.forward(x)
    dx = smodel.backward(dy)
    grads = dict(smodel.grads)
    assert_gradient_close(dx, numerical_gradient(lambda: smodel.forward(x), x, dy), label="mixed dx")
    for name in ("dense/kernel", "dense/bias", "head/kernel"):
        w = smodel.weights[name]
        assert_gradient_close(grads[name], numerical_gradient(lambda: smodel.forward(x), w, dy), label=name)


def test_inline_array_and_slice_constants(tmp_path):
    x = keras.Input((4, 6), name="x")
    y = x * np.arange(6, dtype="float32") + x[:, 1:3, ::2].shape[1]
    model = keras.Model(x, [y, x[:, 0], x[..., None], keras.ops.where(x > 0, x, 0.0)])
    model.save(tmp_path / "const.keras")
    xs = np.random.default_rng(2).normal(size=(3, 4, 6)).astype("float32")
    for got, want in zip(scratch.load(tmp_path / "const.keras").predict(xs), model.predict(xs, verbose=0)):
        assert_close(got, want, label="inline constants")


# ---- refusals and errors ---------------------------------------------------------------------------------
def test_unknown_operation_is_refused_by_name(tmp_path):
    x = keras.Input((5,), name="x")
    keras.Model(x, keras.ops.cumsum(x, axis=1)).save(tmp_path / "cumsum.keras")
    with pytest.raises(UnsupportedLayerError, match=r"'cumsum' \(Cumsum\): Keras operation with no scratch"):
        scratch.load(tmp_path / "cumsum.keras")


def test_op_errors():
    with pytest.raises(LayerError, match=r"no scratch implementation of the Keras operation 'Sort'"):
        Op("Sort")
    with pytest.raises(LayerError, match=r"einsum needs explicit output subscripts and no ellipsis. "
                                         r"Received: subscripts='...ij->...ji'"):
        Op("Einsum", subscripts="...ij->...ji")
    with pytest.raises(LayerError, match=r"repeated index in one operand"):
        Op("Einsum", subscripts="ii->i")
    with pytest.raises(LayerError, match=r"is called with keyword arguments \['axis'\]"):
        Op("Add").forward(np.ones(2), np.ones(2), axis=0)


def test_unknown_node_argument_kind_is_refused():
    from scratch.models.from_config import _keras3_struct

    with pytest.raises(GraphError, match=r"a node argument of kind '__bytes__' is not supported"):
        _keras3_struct({"class_name": "__bytes__", "config": {"value": "x"}}, lambda *_: 0)
    with pytest.raises(GraphError, match=r"a constant of dtype <U1 in a node argument is not supported"):
        _keras3_struct({"class_name": "__numpy__", "config": {"value": ["a"], "dtype": "<U1"}}, lambda *_: 0)


def test_every_case_is_in_the_table():
    assert {cls.__name__ for cls, *_ in CASES.values()} <= set(OPS)
