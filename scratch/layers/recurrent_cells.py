"""The per-step math of SimpleRNN, LSTM and GRU, forward and backward.

Each cell is a namespace with two functions, used by both the full-sequence loop and the step API:

- ``forward(layer, x_t, states) -> (output_t, new_states, cache)``
- ``backward(layer, d_output_t, d_new_states, cache, grads) -> (dx_t, d_states)``, adding the
  weight gradients of this step into ``grads``.

Weights are read from ``layer.weights`` at call time. The order of the float operations follows
Keras's cells (implementation 2, keras/src/layers/rnn/*.py), so that float32 rounding matches as
closely as possible: e.g. LSTM adds ``x @ K`` and ``h @ R`` before the bias, SimpleRNN adds the
bias to ``x @ K`` before ``h @ R``.
"""

from types import SimpleNamespace

import numpy as np


# ---- SimpleRNN ---------------------------------------------------------------------------
def _simple_forward(layer, x, states):
    w = layer.weights
    (h_prev,) = states
    a = x @ w["kernel"]
    if layer.use_bias:
        a = a + w["bias"]
    a = a + h_prev @ w["recurrent_kernel"]
    h = layer.activation.forward(a)
    return h, [h], (x, h_prev, a, h)


def _simple_backward(layer, d_out, d_new, cache, grads):
    w = layer.weights
    x, h_prev, a, h = cache
    da = layer.activation.backward(a, h, d_out + d_new[0])
    grads["kernel"] += x.T @ da
    grads["recurrent_kernel"] += h_prev.T @ da
    if layer.use_bias:
        grads["bias"] += da.sum(axis=0)
    return da @ w["kernel"].T, [da @ w["recurrent_kernel"].T]


simple_rnn_cell = SimpleNamespace(forward=_simple_forward, backward=_simple_backward)


# ---- LSTM (gate columns i, f, c, o) ----------------------------------------------------------
def _lstm_forward(layer, x, states):
    w = layer.weights
    h_prev, c_prev = states
    z = x @ w["kernel"]
    z = z + h_prev @ w["recurrent_kernel"]
    if layer.use_bias:
        z = z + w["bias"]
    zi, zf, zc, zo = np.split(z, 4, axis=1)
    ra, act = layer.recurrent_activation, layer.activation
    i, f, g, o = ra.forward(zi), ra.forward(zf), act.forward(zc), ra.forward(zo)
    c = f * c_prev + i * g
    tc = act.forward(c)
    h = o * tc
    return h, [h, c], (x, h_prev, c_prev, z, i, f, g, o, c, tc)


def _lstm_backward(layer, d_out, d_new, cache, grads):
    w = layer.weights
    x, h_prev, c_prev, z, i, f, g, o, c, tc = cache
    zi, zf, zc, zo = np.split(z, 4, axis=1)
    ra, act = layer.recurrent_activation, layer.activation
    dh = d_out + d_new[0]
    dc = d_new[1] + act.backward(c, tc, dh * o)
    dz = np.concatenate([
        ra.backward(zi, i, dc * g),
        ra.backward(zf, f, dc * c_prev),
        act.backward(zc, g, dc * i),
        ra.backward(zo, o, dh * tc),
    ], axis=1)
    grads["kernel"] += x.T @ dz
    grads["recurrent_kernel"] += h_prev.T @ dz
    if layer.use_bias:
        grads["bias"] += dz.sum(axis=0)
    return dz @ w["kernel"].T, [dz @ w["recurrent_kernel"].T, dc * f]


lstm_cell = SimpleNamespace(forward=_lstm_forward, backward=_lstm_backward)


# ---- GRU (gate columns z, r, h) --------------------------------------------------------------
def _gru_forward(layer, x, states):
    w = layer.weights
    (h_prev,) = states
    u = layer.units
    kernel, rec = w["kernel"], w["recurrent_kernel"]
    mx = x @ kernel
    if layer.use_bias:
        mx = mx + (w["bias"][0] if layer.reset_after else w["bias"])
    xz, xr, xh = np.split(mx, 3, axis=1)
    if layer.reset_after:
        mi = h_prev @ rec
        if layer.use_bias:
            mi = mi + w["bias"][1]
    else:
        mi = h_prev @ rec[:, :2 * u]
    rz, rr = mi[:, :u], mi[:, u:2 * u]
    ra, act = layer.recurrent_activation, layer.activation
    az, ar = xz + rz, xr + rr
    z, r = ra.forward(az), ra.forward(ar)
    if layer.reset_after:
        rh = mi[:, 2 * u:]
        ah = xh + r * rh
    else:
        rh = None
        ah = xh + (r * h_prev) @ rec[:, 2 * u:]
    hh = act.forward(ah)
    h = z * h_prev + (1 - z) * hh
    return h, [h], (x, h_prev, az, ar, ah, z, r, hh, rh)


def _gru_backward(layer, d_out, d_new, cache, grads):
    w = layer.weights
    x, h_prev, az, ar, ah, z, r, hh, rh = cache
    u = layer.units
    kernel, rec = w["kernel"], w["recurrent_kernel"]
    ra, act = layer.recurrent_activation, layer.activation
    dh = d_out + d_new[0]
    d_ah = act.backward(ah, hh, dh * (1 - z))
    d_az = ra.backward(az, z, dh * (h_prev - hh))
    dh_prev = dh * z
    if layer.reset_after:
        d_ar = ra.backward(ar, r, d_ah * rh)
        d_mi = np.concatenate([d_az, d_ar, d_ah * r], axis=1)
        grads["recurrent_kernel"] += h_prev.T @ d_mi
        dh_prev = dh_prev + d_mi @ rec.T
    else:
        d_rh = d_ah @ rec[:, 2 * u:].T  # gradient w.r.t. r * h_prev
        grads["recurrent_kernel"][:, 2 * u:] += (r * h_prev).T @ d_ah
        d_ar = ra.backward(ar, r, d_rh * h_prev)
        d_mi = np.concatenate([d_az, d_ar], axis=1)
        grads["recurrent_kernel"][:, :2 * u] += h_prev.T @ d_mi
        dh_prev = dh_prev + d_rh * r + d_mi @ rec[:, :2 * u].T
    d_mx = np.concatenate([d_az, d_ar, d_ah], axis=1)
    grads["kernel"] += x.T @ d_mx
    if layer.use_bias:
        if layer.reset_after:
            grads["bias"][0] += d_mx.sum(axis=0)
            grads["bias"][1] += d_mi.sum(axis=0)
        else:
            grads["bias"] += d_mx.sum(axis=0)
    return d_mx @ kernel.T, [dh_prev]


gru_cell = SimpleNamespace(forward=_gru_forward, backward=_gru_backward)
