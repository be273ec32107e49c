"""Keras 3 operation nodes of a Functional graph, run with NumPy from a fixed table, forward and backward.

A Functional model built with ``x + y``, ``x * 0.5``, ``keras.ops.*`` or an activation called on
a tensor (``keras.activations.relu(x, max_value=6)``) serializes *operations*, not layers:
``{"module": "keras.src.ops.numpy", "class_name": "Add", "config": {"name": "add"}}`` (module
``keras.src.ops.*``, or ``keras.src.activations.activations`` for the generalized ``ReLU``).
Keras 3 also records the mask computations of Embedding/Masking/merge layers this way
(``NotEqual``, ``ExpandDims``, ``LogicalOr``, ``Any``) and passes their result as ``mask=``.
An operation has no weights and is not part of ``model.layers``.

The call's positional args are in the node, in Keras's order: tensors, and constants stored
inline (``x * 0.5`` -> ``[x, 0.5]``, ``2.0 - x`` -> ``[2.0, x]``; arrays as ``__numpy__``,
slices as ``__slice__``); the op's own settings (``axis``, ``newshape``) are its config. Python
scalars stay weak, so ``x + 3`` runs in x's dtype as it does in Keras (NumPy 2 promotion).

The engine maps a node's class name through ``OPS`` and nothing else: it never imports the
module a file names. Each entry turns the op's config into ``(forward, backward)``:
``forward(*args) -> y`` and ``backward(args, y, dy)`` -> one gradient per positional arg (a list
for a list arg such as Concatenate's; None for constants and non-float tensors). Broadcast
arguments get their gradient summed back to their own shape. Derivatives at kinks follow
TensorFlow's gradient kernels (Maximum's goes to x on ties, clip passes it at its bounds,
Max reduction splits it among ties).
"""

import math

import numpy as np

from .errors import LayerError
from .layers import activations as act
from .layers.base import Layer
from .layers.core import ReLU as _ReLULayer

OP_MODULES = ("keras.src.ops.", "keras.src.activations.")

_erf = np.vectorize(math.erf, otypes=[np.float64])


# ---- helpers ---------------------------------------------------------------------------------------
def _is_float(a):
    return isinstance(a, np.ndarray) and a.dtype.kind == "f"


def _to(g, a):
    """``g`` summed down to the shape of arg ``a`` (undoing broadcasting), or None if ``a`` takes none."""
    if not _is_float(a):
        return None
    g = np.asarray(g)
    extra = g.ndim - a.ndim
    if extra > 0:
        g = g.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, (n, m) in enumerate(zip(a.shape, g.shape)) if n == 1 and m != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return np.asarray(g, dtype=a.dtype).reshape(a.shape)


def _axes(axis, ndim):
    """Keras's ``axis`` (None = all, int, or list) as a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    return tuple(sorted(int(a) % ndim for a in axes))


def _axis_arg(axis):
    return tuple(axis) if isinstance(axis, list) else axis


def _no_grad(args, y, dy):
    return [None] * len(args)


# ---- elementwise ---------------------------------------------------------------------------------
def _unary(f, df):
    """f(x); ``df(x, y, dy)`` is the input gradient."""
    return lambda cfg: (lambda x: np.asarray(f(x)),
                        lambda args, y, dy: [_to(df(args[0], y, dy), args[0])])


def _binary(f, da, db):
    """f(a, b) with broadcasting; ``da``/``db(a, b, y, dy)`` are only evaluated for a float tensor arg."""
    def backward(args, y, dy):
        a, b = args
        return [_to(da(a, b, y, dy), a) if _is_float(a) else None,
                _to(db(a, b, y, dy), b) if _is_float(b) else None]
    return lambda cfg: (lambda a, b: np.asarray(f(a, b)), backward)


def _pow_db(a, b, y, dy):
    a = np.asarray(a)
    return dy * y * np.log(np.where(a > 0, a, 1))   # TF's PowGrad: zero where the base is not positive


def _clip(cfg):
    lo, hi = cfg.get("x_min"), cfg.get("x_max")
    return (lambda x: np.clip(x, lo, hi),
            lambda args, y, dy: [_to(dy * ((args[0] >= lo) & (args[0] <= hi)), args[0])])


def _leaky(slope):
    slope = float(np.float32(slope))   # tf.nn.leaky_relu's alpha is a 32-bit float attribute
    return (lambda x: np.where(x > 0, x, x * slope).astype(x.dtype),
            lambda args, y, dy: [_to(dy * np.where(args[0] > 0, 1.0, slope), args[0])])


def _elu(cfg):
    alpha = cfg.get("alpha", 1.0)

    def forward(x):
        y = np.where(x > 0, x, np.expm1(np.minimum(x, 0))).astype(x.dtype)
        return y if alpha == 1 else np.where(x > 0, y, alpha * y).astype(x.dtype)
    return forward, lambda args, y, dy: [_to(dy * np.where(args[0] > 0, 1.0, alpha * np.exp(np.minimum(args[0], 0))),
                                             args[0])]


def _hard_silu_df(x, y, dy):
    hs = np.clip(x + 3.0, 0.0, 6.0) / 6.0
    return dy * (hs + x * ((x > -3.0) & (x < 3.0)) / 6.0)


_GELU_TANH_C = 0.7978845608028654   # sqrt(2/pi), as tf.nn.gelu writes it
# tf.nn.gelu casts the Python float 0.044715 through a float32 tensor, so it is float32-rounded in float64 too.
_GELU_TANH_A = float(np.float32(0.044715))


def _gelu(cfg):
    if not cfg.get("approximate", True):   # Gelu's own default is the tanh form
        return _named("gelu")(cfg)

    def forward(x):
        return (0.5 * x * (1.0 + np.tanh(_GELU_TANH_C * (x + _GELU_TANH_A * x ** 3)))).astype(x.dtype)

    def backward(args, y, dy):
        x = args[0]
        t = np.tanh(_GELU_TANH_C * (x + _GELU_TANH_A * x ** 3))
        dt = (1.0 - t * t) * _GELU_TANH_C * (1.0 + 3 * _GELU_TANH_A * x * x)
        return [_to(dy * (0.5 * (1.0 + t) + 0.5 * x * dt), x)]
    return forward, backward


def _named(name):
    """An activation that scratch/layers/activations.py defines (forward(x), backward(x, y, dy))."""
    def make(cfg):
        fn = act.get(name)
        return fn.forward, lambda args, y, dy: [_to(fn.backward(args[0], y, dy), args[0])]
    return make


def _keras_relu(cfg):
    """``keras.activations.relu(x, negative_slope, max_value, threshold)``: the ReLU layer's math."""
    layer = _ReLULayer(max_value=cfg.get("max_value"), negative_slope=cfg.get("negative_slope", 0.0),
                       threshold=cfg.get("threshold", 0.0))

    def forward(x):
        layer.dtype = x.dtype
        return layer.forward(x)

    def backward(args, y, dy):
        forward(args[0])
        return [_to(layer.backward(dy), args[0])]
    return forward, backward


def _softmax(cfg, log=False):
    axis = _axis_arg(cfg.get("axis", -1))

    def forward(x):
        m = np.max(x, axis=axis, keepdims=True)
        z = x - m
        if log:
            return (z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True))).astype(x.dtype)
        e = np.exp(z)
        return (e / np.sum(e, axis=axis, keepdims=True)).astype(x.dtype)

    def backward(args, y, dy):
        if log:
            return [_to(dy - np.exp(y) * np.sum(dy, axis=axis, keepdims=True), args[0])]
        return [_to(y * (dy - np.sum(dy * y, axis=axis, keepdims=True)), args[0])]
    return forward, backward


# ---- reductions ------------------------------------------------------------------------------------
def _spread(dy, x, axis, keepdims):
    """dy of a reduction over ``axis`` broadcast back to x's shape."""
    dy = np.asarray(dy)
    if not keepdims:
        dy = np.expand_dims(dy, _axes(axis, x.ndim))
    return np.broadcast_to(dy, x.shape)


def _reduce(kind):
    def make(cfg):
        axis, keepdims = _axis_arg(cfg.get("axis")), bool(cfg.get("keepdims", False))
        initial = cfg.get("initial")

        def forward(x):
            if kind in ("any", "all"):
                return getattr(np, kind)(x, axis=axis, keepdims=keepdims)
            y = getattr(np, kind)(x, axis=axis, keepdims=keepdims)
            if initial is not None:
                y = (np.maximum if kind == "max" else np.minimum)(y, initial)
            return np.asarray(y, dtype=x.dtype)

        def backward(args, y, dy):
            x = args[0]
            if kind in ("any", "all") or not _is_float(x):
                return [None]
            g = _spread(dy, x, axis, keepdims)
            if kind == "mean":
                g = g / (x.size // max(1, np.asarray(y).size))
            elif kind in ("max", "min"):
                hit = x == _spread(y, x, axis, keepdims)   # TF splits the gradient among tied maxima
                g = g * hit / _spread(np.sum(hit, axis=axis, keepdims=keepdims), x, axis, keepdims)
            return [_to(g, x)]
        return forward, backward
    return make


# ---- shapes ----------------------------------------------------------------------------------------
def _reshape_back(args, y, dy):
    return [_to(np.reshape(dy, args[0].shape), args[0])] + [None] * (len(args) - 1)


def _shape_op(fn):
    return lambda cfg: (lambda x: fn(cfg, x), _reshape_back)


def _transpose(cfg):
    axes = cfg.get("axes")

    def backward(args, y, dy):
        order = axes if axes is not None else tuple(reversed(range(args[0].ndim)))
        return [_to(np.transpose(dy, np.argsort(order)), args[0])]
    return lambda x: np.transpose(x, axes), backward


def _concatenate(cfg):
    axis = cfg.get("axis", 0)

    def backward(args, y, dy):
        xs = args[0]
        cuts = np.cumsum([np.shape(x)[axis] for x in xs])[:-1]
        return [[_to(g, x) for g, x in zip(np.split(dy, cuts, axis=axis), xs)]]
    return lambda xs: np.concatenate(xs, axis=axis), backward


def _stack(cfg):
    axis = cfg.get("axis", 0) or 0

    def backward(args, y, dy):
        return [[_to(np.take(dy, i, axis=axis), x) for i, x in enumerate(args[0])]]
    return lambda xs: np.stack(xs, axis=axis), backward


def _get_item(cfg):
    def forward(x, key):
        return np.asarray(x[tuple(key) if isinstance(key, list) else key])

    def backward(args, y, dy):
        x, key = args
        dx = np.zeros_like(x)
        dx[tuple(key) if isinstance(key, list) else key] += dy   # basic indexing: every element once
        return [_to(dx, x), None]
    return forward, backward


def _matmul_backward(args, y, dy):
    a, b = (np.asarray(v) for v in args)
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    d = np.asarray(dy)
    if a.ndim == 1:
        d = np.expand_dims(d, -2)
    if b.ndim == 1:
        d = np.expand_dims(d, -1)
    da = _to(d @ np.swapaxes(b2, -1, -2), a2) if _is_float(a) else None
    db = _to(np.swapaxes(a2, -1, -2) @ d, b2) if _is_float(b) else None
    return [None if da is None else da.reshape(a.shape), None if db is None else db.reshape(b.shape)]


def _einsum(cfg):
    """``np.einsum`` with explicit output subscripts; the gradient of operand i contracts dy with the others."""
    subs = str(cfg.get("subscripts", "")).replace(" ", "")
    if "..." in subs or "->" not in subs:
        raise LayerError(f"einsum needs explicit output subscripts and no ellipsis. Received: subscripts={subs!r}")
    ins, out = subs.split("->")
    ins = ins.split(",")
    if any(len(set(s)) != len(s) for s in ins):
        raise LayerError(f"einsum with a repeated index in one operand is not supported. Received: subscripts={subs!r}")

    def backward(args, y, dy):
        grads = []
        for i, x in enumerate(args):
            if not _is_float(x):
                grads.append(None)
                continue
            others = [(s, a) for j, (s, a) in enumerate(zip(ins, args)) if j != i]
            seen = set(out).union(*(set(s) for s, _ in others))
            target = "".join(c for c in ins[i] if c in seen)
            g = np.einsum(",".join([out] + [s for s, _ in others]) + "->" + target, dy, *(a for _, a in others))
            # an index only this operand has was summed away: its gradient is the same along it
            g = np.broadcast_to(g.reshape([x.shape[k] if c in seen else 1 for k, c in enumerate(ins[i])]), x.shape)
            grads.append(_to(g, x))
        return grads
    return lambda *xs: np.einsum(subs, *xs), backward


def _where(cfg):
    def backward(args, y, dy):
        c = np.asarray(args[0], dtype=bool)
        return [None, _to(np.where(c, dy, 0), args[1]), _to(np.where(c, 0, dy), args[2])]
    return lambda c, x1, x2: np.where(c, x1, x2), backward


def _cast(cfg):
    """Cast to the config's dtype; ``Op.to_dtype`` widens a float target for a float64 truth run."""
    def backward(args, y, dy):
        return [_to(dy, args[0])]
    return lambda x: np.asarray(x).astype(cfg.get("dtype") or "float32"), backward


def _like(fill):
    return lambda cfg: (lambda x: np.full(np.shape(x), fill, dtype=cfg.get("dtype") or np.asarray(x).dtype),
                        _no_grad)


def _logic(fn):
    return lambda cfg: (fn, _no_grad)


# op class name -> (config -> (forward(*args), backward(args, y, dy)))
OPS = {
    # arithmetic
    "Add": _binary(np.add, lambda a, b, y, d: d, lambda a, b, y, d: d),
    "Subtract": _binary(np.subtract, lambda a, b, y, d: d, lambda a, b, y, d: -d),
    "Multiply": _binary(np.multiply, lambda a, b, y, d: d * b, lambda a, b, y, d: d * a),
    "Divide": _binary(np.true_divide, lambda a, b, y, d: d / b, lambda a, b, y, d: -d * y / b),
    "TrueDivide": _binary(np.true_divide, lambda a, b, y, d: d / b, lambda a, b, y, d: -d * y / b),
    "Power": _binary(np.power, lambda a, b, y, d: d * b * np.power(a, np.asarray(b) - 1), _pow_db),
    "Maximum": _binary(np.maximum, lambda a, b, y, d: d * (a >= b), lambda a, b, y, d: d * ~(a >= b)),
    "Minimum": _binary(np.minimum, lambda a, b, y, d: d * (a <= b), lambda a, b, y, d: d * ~(a <= b)),
    "Negative": _unary(np.negative, lambda x, y, d: -d),
    "Square": _unary(np.square, lambda x, y, d: 2 * x * d),
    "Sqrt": _unary(np.sqrt, lambda x, y, d: 0.5 * d / y),
    "Rsqrt": _unary(lambda x: 1 / np.sqrt(x), lambda x, y, d: -0.5 * d * y ** 3),
    "Reciprocal": _unary(np.reciprocal, lambda x, y, d: -d * y * y),
    "Absolute": _unary(np.abs, lambda x, y, d: d * np.sign(x)),
    "Abs": _unary(np.abs, lambda x, y, d: d * np.sign(x)),
    "Exp": _unary(np.exp, lambda x, y, d: d * y),
    "Expm1": _unary(np.expm1, lambda x, y, d: d * (y + 1)),
    "Log": _unary(np.log, lambda x, y, d: d / x),
    "Log1p": _unary(np.log1p, lambda x, y, d: d / (1 + x)),
    "Erf": _unary(lambda x: _erf(x).astype(x.dtype), lambda x, y, d: d * 2 / math.sqrt(math.pi) * np.exp(-x * x)),
    "Sin": _unary(np.sin, lambda x, y, d: d * np.cos(x)),
    "Cos": _unary(np.cos, lambda x, y, d: -d * np.sin(x)),
    "Clip": _clip,
    # activations (keras.activations.* and keras.ops.* on tensors)
    "ReLU": _keras_relu,
    "Relu": _unary(lambda x: np.maximum(x, 0), lambda x, y, d: d * (y > 0)),
    "Relu6": _unary(lambda x: np.clip(x, 0, 6), lambda x, y, d: d * ((x > 0) & (x < 6))),
    "LeakyRelu": lambda cfg: _leaky(cfg.get("negative_slope", 0.2)),
    "Elu": _elu,
    "Selu": _named("selu"),
    "Sigmoid": _named("sigmoid"),
    "Tanh": _named("tanh"),
    "HardSigmoid": _named("hard_sigmoid"),
    "HardSilu": _unary(lambda x: x * (np.clip(x + 3.0, 0.0, 6.0) / 6.0), _hard_silu_df),
    "Silu": _named("silu"),
    "Gelu": _gelu,
    "Softplus": _unary(lambda x: np.logaddexp(0, x).astype(x.dtype), lambda x, y, d: d * act.sigmoid(x)),
    "Softsign": _unary(lambda x: x / (1 + np.abs(x)), lambda x, y, d: d / np.square(1 + np.abs(x))),
    "Softmax": _softmax,
    "LogSoftmax": lambda cfg: _softmax(cfg, log=True),
    # reductions and linear algebra
    "Mean": _reduce("mean"), "Sum": _reduce("sum"), "Max": _reduce("max"), "Min": _reduce("min"),
    "Any": _reduce("any"), "All": _reduce("all"),
    "Matmul": lambda cfg: (np.matmul, _matmul_backward),
    "Einsum": _einsum,
    # shapes
    "Reshape": _shape_op(lambda cfg, x: np.reshape(x, cfg["newshape"])),
    "Transpose": _transpose,
    "ExpandDims": _shape_op(lambda cfg, x: np.expand_dims(x, _axis_arg(cfg["axis"]))),
    "Squeeze": _shape_op(lambda cfg, x: np.squeeze(x, _axis_arg(cfg.get("axis")))),
    "Concatenate": _concatenate,
    "Stack": _stack,
    "GetItem": _get_item,
    "Cast": _cast,
    "Where": _where,
    # masks and comparisons (no gradient)
    "NotEqual": _logic(np.not_equal), "Equal": _logic(np.equal), "Greater": _logic(np.greater),
    "GreaterEqual": _logic(np.greater_equal), "Less": _logic(np.less), "LessEqual": _logic(np.less_equal),
    "LogicalAnd": _logic(np.logical_and), "LogicalOr": _logic(np.logical_or), "LogicalNot": _logic(np.logical_not),
    "ZerosLike": _like(0), "OnesLike": _like(1),
}


def is_op(layer_cfg):
    """A Keras 3 operation node (module ``keras.src.ops.*`` or ``keras.src.activations.*``), not a layer.

    Legacy ``.h5`` configs drop ``module``; there an operation is told from a layer of the same
    class name (``Add``, ``ReLU``, ``Concatenate``) by its config, which has no ``trainable`` key
    (every Keras layer's config has one).
    """
    module = layer_cfg.get("module")
    if isinstance(module, str):
        return module.startswith(OP_MODULES)
    cfg = layer_cfg.get("config") or {}
    return layer_cfg.get("class_name") in OPS and "trainable" not in cfg


class Op(Layer):
    """One Keras 3 operation node of a Functional graph: ``forward(*args)`` and ``backward(dy)``.

    ``backward`` returns one gradient per positional arg of the last ``forward`` (None for
    constants and masks). Output shapes are found by running the op on two dummy batches
    (``infer_output_shape``), so any op in the table has one without a shape rule of its own.
    """

    is_op = True

    def __init__(self, class_name, name=None, **config):
        super().__init__(name=name)
        if class_name not in OPS:
            raise LayerError(f"no scratch implementation of the Keras operation {class_name!r}")
        self.op_class, self.config = class_name, dict(config)
        self._forward, self._backward = OPS[class_name](self.config)

    def to_dtype(self, dtype):
        super().to_dtype(dtype)
        if self.op_class == "Cast" and np.dtype(self.config.get("dtype") or "float32").kind == "f":
            self.config["dtype"] = self.dtype.name   # a float64 truth run stays float64 through casts
        return self

    def infer_output_shape(self, args_small, args_large):
        """Output shape from two runs whose unknown (batch) dims were 2 and 3: dims that differ are None."""
        with np.errstate(all="ignore"):
            a, b = np.shape(self._forward(*args_small)), np.shape(self._forward(*args_large))
        if len(a) != len(b):
            return None
        return tuple(n if n == m else None for n, m in zip(a, b))

    def compute_mask(self, inputs, mask=None):
        return None

    def forward(self, *args, **kwargs):
        if kwargs:
            raise LayerError(f"operation '{self.name}' ({self.op_class}) is called with keyword arguments "
                             f"{sorted(kwargs)}, which the scratch operation does not take")
        y = self._forward(*args)
        self._cache = (args, y)
        return y

    def backward(self, dout):
        args, y = self._cache
        return self._backward(args, y, np.asarray(dout))
