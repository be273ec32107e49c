"""``parity.check_layer``: a student's own layer against the Keras layer, forward and backward.

Any object with ``forward(x)`` and ``backward(dout)`` can be checked; nothing of the scratch engine
is required. The Keras weights are copied into it first (``set_weights``, as Keras orders them),
unless it has none or ``copy_weights=False``. Then, on the same input:

- forward: ``my.forward(x)`` against ``keras_layer(x, training=False)``;
- backward: for one random ``dout``, ``my.backward(dout)`` (dx) and each weight gradient, against
  ``tf.GradientTape`` on ``sum(keras_layer(x) * dout)``. Weight gradients are read from
  ``get_gradients()`` (Keras order) when the layer has it, else from ``grads[name]`` by the Keras
  weight's name (``kernel``, ``bias``, ...).

Every comparison follows ``parity.tolerance`` (``kind="forward"`` and ``kind="backward"``). The
forward reduction is the layer's own (``parity.compare.own_reduction``); a gradient element sums at
most one term per output element, each carrying the forward rounding, so the backward reduction is
the forward one plus the output size (the rule of tests/parity/test_gradient_parity.py).

    >>> import keras, numpy as np, parity
    >>> ref = keras.layers.Conv2D(4, 3, padding="same")
    >>> result = parity.check_layer(MyConv2D(4, 3, padding="same"), ref, np.random.rand(2, 8, 8, 3))
    >>> print(result)          # one row per compared array: max error, tolerance, err/tol, ok/FAIL
    >>> assert result.passed
"""

import numpy as np

from .compare import own_reduction
from .tolerance import compare


class LayerCheck:
    """The outcome: ``rows`` of (what, stats), ``passed``; ``str()`` is a table."""

    def __init__(self, label, rows):
        self.label, self.rows = label, rows
        self.passed = all(stats["passed"] for _, stats in rows)

    def __getitem__(self, what):
        return dict(self.rows)[what]

    def __str__(self):
        lines = [f"check_layer {self.label}: {'PASS' if self.passed else 'FAIL'}",
                 f"  {'compared':<18} {'max abs':>10} {'atol':>10} {'err/tol':>8}  status"]
        for what, s in self.rows:
            lines.append(f"  {what:<18} {s['max_abs']:>10.3e} {s['atol']:>10.3e} {s['headroom']:>8.3f}  "
                         f"{'ok' if s['passed'] else 'FAIL'}"
                         + ("" if s["passed"] else f" (worst at {s['worst_index']}: mine {s['worst_actual']!r} vs "
                                                    f"Keras {s['worst_desired']!r})"))
        return "\n".join(lines)

    __repr__ = __str__


def _my_gradients(layer, keras_weights):
    if callable(getattr(layer, "get_gradients", None)):
        return list(layer.get_gradients())
    grads = getattr(layer, "grads", {}) or {}
    missing = [w.name for w in keras_weights if w.name not in grads]
    if missing:
        raise AssertionError(f"backward filled no gradient for {missing}; it has {sorted(grads)}")
    return [grads[w.name] for w in keras_weights]


def check_layer(my_layer, keras_layer, x, *, seed=0, copy_weights=True, atol=None, rtol=None):
    """Compare ``my_layer`` with ``keras_layer`` on ``x`` (one array); returns a LayerCheck.

    ``x`` is cast to the Keras layer's compute dtype (``keras.layers.Dense(3, dtype="float64")``
    checks in float64).
    """
    import tensorflow as tf

    # Compare in the Keras layer's compute dtype: that is the precision its numbers carry.
    dtype = np.dtype(keras_layer.compute_dtype)
    x = np.asarray(x).astype(dtype)
    xt = tf.constant(x)
    keras_layer(xt)                                   # builds it on this input
    if copy_weights and keras_layer.weights and callable(getattr(my_layer, "set_weights", None)):
        my_layer.set_weights([np.asarray(w) for w in keras_layer.get_weights()])
    trainable = list(keras_layer.trainable_weights)
    dout = np.random.default_rng(seed).normal(size=keras_layer.compute_output_shape(x.shape)).astype(dtype)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = keras_layer(xt, training=False)
        objective = tf.reduce_sum(y * tf.constant(dout, dtype=y.dtype))
    keras_dx, *keras_dw = tape.gradient(objective, [xt, *trainable])
    mine = np.asarray(my_layer.forward(x))
    mine_dx = np.asarray(my_layer.backward(dout))
    mine_dw = _my_gradients(my_layer, trainable)
    red = max(1, own_reduction(type(keras_layer).__name__, keras_layer.get_config(), x.shape))
    back = red + int(np.size(dout))
    rows = [("forward", _compare(mine, y, red, "forward", atol, rtol)),
            ("dx", _compare(mine_dx, keras_dx, back, "backward", atol, rtol))]
    for w, g_mine, g_keras in zip(trainable, mine_dw, keras_dw):
        rows.append((f"d{w.name}", _compare(g_mine, g_keras, back, "backward", atol, rtol)))
    return LayerCheck(f"{type(my_layer).__name__} vs keras.layers.{type(keras_layer).__name__}", rows)


def _compare(actual, desired, reduction, kind, atol, rtol):
    desired = np.zeros_like(np.asarray(actual)) if desired is None else np.asarray(desired)
    actual = np.asarray(actual)
    if actual.shape != desired.shape:
        return dict(max_abs=float("inf"), atol=0.0, headroom=float("inf"), passed=False,
                    worst_index=f"shape {actual.shape} vs Keras {desired.shape}", worst_actual=None,
                    worst_desired=None)
    return compare(actual, desired, reduction=reduction, kind=kind, atol=atol, rtol=rtol, dtype=desired.dtype)
