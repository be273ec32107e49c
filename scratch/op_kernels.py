"""The forward/backward pairs behind scratch/ops.py's table of Keras 3 operation nodes.

Each builder takes an op's config and returns ``(forward(*args) -> y, backward(args, y, dy))``;
``backward`` gives one gradient per positional arg (a list for a list arg such as Concatenate's;
None for constants and non-float tensors). Broadcast arguments get their gradient summed back to
their own shape (``_to``). Derivatives at kinks follow TensorFlow's gradient kernels (Maximum's
goes to x on ties, clip passes it at its bounds, a Max reduction splits it among ties).
"""

import math

import numpy as np

from .errors import LayerError
from .layers import activations as act
from .layers import activation_functions as fn

erf = np.vectorize(math.erf, otypes=[np.float64])


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


def axis_arg(axis):
    return tuple(axis) if isinstance(axis, list) else axis


def _no_grad(args, y, dy):
    return [None] * len(args)


# ---- elementwise ---------------------------------------------------------------------------------
def unary(f, df):
    """f(x); ``df(x, y, dy)`` is the input gradient."""
    return lambda cfg: (lambda x: np.asarray(f(x)),
                        lambda args, y, dy: [_to(df(args[0], y, dy), args[0])])


def binary(f, da, db):
    """f(a, b) with broadcasting; ``da``/``db(a, b, y, dy)`` are only evaluated for a float tensor arg."""
    def backward(args, y, dy):
        a, b = args
        return [_to(da(a, b, y, dy), a) if _is_float(a) else None,
                _to(db(a, b, y, dy), b) if _is_float(b) else None]
    return lambda cfg: (lambda a, b: np.asarray(f(a, b)), backward)


def pow_db(a, b, y, dy):
    a = np.asarray(a)
    return dy * y * np.log(np.where(a > 0, a, 1))   # TF's PowGrad: zero where the base is not positive


def clip(cfg):
    lo, hi = cfg.get("x_min"), cfg.get("x_max")
    return (lambda x: np.clip(x, lo, hi),
            lambda args, y, dy: [_to(dy * ((args[0] >= lo) & (args[0] <= hi)), args[0])])


def shared(forward, backward, **params):
    """An activation of layers/activation_functions.py run with the op's own settings (slope, alpha, axis)."""
    return (lambda x: np.asarray(forward(x, **params), dtype=x.dtype),
            lambda args, y, dy: [_to(backward(args[0], y, dy, **params), args[0])])


_GELU_TANH_C = 0.7978845608028654   # sqrt(2/pi), as tf.nn.gelu writes it
# tf.nn.gelu casts the Python float 0.044715 through a float32 tensor, so it is float32-rounded in float64 too.
_GELU_TANH_A = float(np.float32(0.044715))


def gelu(cfg):
    if not cfg.get("approximate", True):   # Gelu's own default is the tanh form
        return named("gelu")(cfg)

    def forward(x):
        return (0.5 * x * (1.0 + np.tanh(_GELU_TANH_C * (x + _GELU_TANH_A * x ** 3)))).astype(x.dtype)

    def backward(args, y, dy):
        x = args[0]
        t = np.tanh(_GELU_TANH_C * (x + _GELU_TANH_A * x ** 3))
        dt = (1.0 - t * t) * _GELU_TANH_C * (1.0 + 3 * _GELU_TANH_A * x * x)
        return [_to(dy * (0.5 * (1.0 + t) + 0.5 * x * dt), x)]
    return forward, backward


def named(name):
    """An activation that scratch/layers/activations.py defines (forward(x), backward(x, y, dy))."""
    def make(cfg):
        f = act.get(name)
        return f.forward, lambda args, y, dy: [_to(f.backward(args[0], y, dy), args[0])]
    return make


def keras_relu(cfg):
    """``keras.activations.relu(x, negative_slope, max_value, threshold)``: the ReLU layer's own math."""
    relu = act.ParametricReLU(cfg.get("negative_slope", 0.0), cfg.get("max_value"), cfg.get("threshold", 0.0))
    return relu.forward, lambda args, y, dy: [_to(relu.backward(args[0], y, dy), args[0])]


def softmax(cfg, log=False):
    axis = axis_arg(cfg.get("axis", -1))

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


def reduce(kind):
    def make(cfg):
        axis, keepdims = axis_arg(cfg.get("axis")), bool(cfg.get("keepdims", False))
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


def shape_op(fn):
    return lambda cfg: (lambda x: fn(cfg, x), _reshape_back)


def transpose(cfg):
    axes = cfg.get("axes")

    def backward(args, y, dy):
        order = axes if axes is not None else tuple(reversed(range(args[0].ndim)))
        return [_to(np.transpose(dy, np.argsort(order)), args[0])]
    return lambda x: np.transpose(x, axes), backward


def concatenate(cfg):
    axis = cfg.get("axis", 0)

    def backward(args, y, dy):
        xs = args[0]
        cuts = np.cumsum([np.shape(x)[axis] for x in xs])[:-1]
        return [[_to(g, x) for g, x in zip(np.split(dy, cuts, axis=axis), xs)]]
    return lambda xs: np.concatenate(xs, axis=axis), backward


def stack(cfg):
    axis = cfg.get("axis", 0) or 0

    def backward(args, y, dy):
        return [[_to(np.take(dy, i, axis=axis), x) for i, x in enumerate(args[0])]]
    return lambda xs: np.stack(xs, axis=axis), backward


def get_item(cfg):
    def forward(x, key):
        return np.asarray(x[tuple(key) if isinstance(key, list) else key])

    def backward(args, y, dy):
        x, key = args
        dx = np.zeros_like(x)
        dx[tuple(key) if isinstance(key, list) else key] += dy   # basic indexing: every element once
        return [_to(dx, x), None]
    return forward, backward


def matmul_backward(args, y, dy):
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


def einsum(cfg):
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


def where(cfg):
    def backward(args, y, dy):
        c = np.asarray(args[0], dtype=bool)
        return [None, _to(np.where(c, dy, 0), args[1]), _to(np.where(c, 0, dy), args[2])]
    return lambda c, x1, x2: np.where(c, x1, x2), backward


def cast(cfg):
    """Cast to the config's dtype; ``Op.to_dtype`` widens a float target for a float64 truth run."""
    def backward(args, y, dy):
        return [_to(dy, args[0])]
    return lambda x: np.asarray(x).astype(cfg.get("dtype") or "float32"), backward


def like(fill):
    return lambda cfg: (lambda x: np.full(np.shape(x), fill, dtype=cfg.get("dtype") or np.asarray(x).dtype),
                        _no_grad)


def logic(fn):
    return lambda cfg: (fn, _no_grad)
