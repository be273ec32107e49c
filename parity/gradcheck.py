"""Finite-difference gradient check of any layer: ``parity.gradcheck(layer, x)``.

Works on every object with ``forward``/``backward`` and, optionally, ``weights``/``grads`` dicts and
``trainable_weight_names()`` (the scratch layer contract, and the usual shape of a student's layer).
The objective is ``sum(forward(x) * dout)`` for a random ``dout``, so ``backward(dout)`` must return
its gradient with respect to each input, and fill ``grads`` for each weight. Differences are centered, in
float64 (``parity.tolerance.GRADIENT_STEP``), and judged by ``parity.tolerance.assert_gradient_close``.

    >>> from parity import gradcheck
    >>> errors = gradcheck(my_conv, x)        # {"dx0": 3e-10, "kernel": 1e-9, "bias": 4e-11}

An AssertionError names the input or weight whose gradient is wrong.
"""

import numpy as np

from .tolerance import assert_gradient_close, numerical_gradient


def _weight_names(layer):
    names = getattr(layer, "trainable_weight_names", None)
    if callable(names):
        return list(names())
    return list(getattr(layer, "weights", {}) or {})


def gradcheck(layer, inputs, *, rng=None, label=None, forward_kwargs=None, argnums=None):
    """Centered-difference check of ``layer.backward`` for every input and weight; returns {name: rel_error}.

    ``inputs`` is one array or a list (multi-input layers); the layer must hold float64 weights (a
    scratch layer: ``layer.to_dtype("float64")``). ``argnums`` limits which inputs are checked (e.g.
    not the integer ids of an Embedding).
    """
    rng = np.random.default_rng(0) if rng is None else rng
    label = label or type(layer).__name__
    forward_kwargs = forward_kwargs or {}
    multi = isinstance(inputs, (list, tuple))
    xs = [np.array(x, dtype=np.float64) for x in (inputs if multi else [inputs])]

    def run():
        return layer.forward(xs if multi else xs[0], **forward_kwargs)

    out = run()
    outs = out if isinstance(out, (list, tuple)) else [out]
    douts = [rng.normal(size=np.shape(o)) for o in outs]
    dxs = layer.backward(douts if isinstance(out, (list, tuple)) else douts[0])
    dxs = dxs if multi else [dxs]
    analytic_w = {n: np.array(g, copy=True) for n, g in getattr(layer, "grads", {}).items()}

    def objective():
        o = run()
        os_ = o if isinstance(o, (list, tuple)) else [o]
        return sum(np.sum(np.asarray(a, np.float64) * d) for a, d in zip(os_, douts))

    errors = {}
    for i, (x, dx) in enumerate(zip(xs, dxs)):
        if argnums is not None and i not in argnums:
            continue
        num = numerical_gradient(objective, x, 1.0)
        errors[f"dx{i}"] = assert_gradient_close(np.asarray(dx, np.float64), num, label=f"{label} dx{i}")
    for name in _weight_names(layer):
        if name not in analytic_w:
            raise AssertionError(f"[{label}] backward filled no gradient for weight {name!r}")
        num = numerical_gradient(objective, layer.weights[name], 1.0)
        errors[name] = assert_gradient_close(analytic_w[name], num, label=f"{label} d{name}")
    return errors
