"""Helpers the tests share: random Keras weights, gradient checks, masks, the grid's parameter count."""

import numpy as np

from parity.tolerance import assert_gradient_close, numerical_gradient


def randomize_keras_weights(keras_layer, rng, scale=0.5):
    """Give a built Keras layer random weights (so that biases and BN statistics are not trivial)."""
    new = []
    for w in keras_layer.get_weights():
        v = rng.normal(0.0, scale, size=w.shape).astype(w.dtype)
        if "variance" in _weight_name(keras_layer, len(new)):
            v = np.abs(v) + 0.1  # a variance must stay positive
        new.append(v)
    keras_layer.set_weights(new)
    return new


def _weight_name(keras_layer, i):
    return keras_layer.weights[i].name if i < len(keras_layer.weights) else ""


def check_layer_gradients(layer, inputs, *, rng, label, forward_kwargs=None, argnums=None):
    """Centered-difference check of ``layer.backward`` for dx and every weight, in float64.

    ``inputs`` is one array or a list (multi-input layers); ``layer`` must already be float64 and
    built. Returns {name: rel_error}.
    """
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
    analytic_w = {n: g.copy() for n, g in layer.grads.items()}

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
    for name in layer.trainable_weight_names():
        w = layer.weights[name]
        num = numerical_gradient(objective, w, 1.0)
        errors[name] = assert_gradient_close(analytic_w[name], num, label=f"{label} d{name}")
    return errors


def make_mask(rng, mode, batch, steps):
    """(batch, steps) bool mask, or None for mode 'none'; 'right'/'left' pad one side with random
    lengths 0..steps, 'random' masks steps independently."""
    if mode == "none":
        return None
    if mode == "random":
        return rng.random((batch, steps)) < 0.6
    lengths = rng.integers(0, steps + 1, size=batch)
    t = np.arange(steps)[None, :]
    return t < lengths[:, None] if mode == "right" else t >= (steps - lengths)[:, None]


def expected_grid_params(cfg, cin=1, n_classes=10):
    """A grid CNN's parameter count from the architecture on paper: conv kernels + biases, Dense head."""
    total, k = 0, cfg["kernel"]
    for f in cfg["filters"]:
        total += k * k * cin * f + f
        cin = f
    return total + cin * 64 + 64 + 64 * n_classes + n_classes
