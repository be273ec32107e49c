"""Recurrent layers: SimpleRNN, LSTM and GRU, with masks, a step API and backprop through time.

All three share one time loop (``_Recurrent``) that mirrors Keras's ``backend.rnn`` (the
TensorFlow while-loop path, keras/src/backend/tensorflow/rnn.py):

- Input ``(batch, timesteps, features)``; states are ``(batch, units)`` arrays, in Keras order
  (LSTM: ``[h, c]``; GRU and SimpleRNN: ``[h]``), zeros unless ``initial_state`` is given.
- ``go_backwards`` walks time from the end and returns the output sequence in that walking order
  (reversed), exactly as Keras does.
- Masks ``(batch, timesteps)``, True = real step. At a masked step every state is carried
  unchanged and the output repeats the previous step's output (zeros before the first real
  step); with ``zero_output_for_mask`` (Bidirectional sets it) a masked output is zero instead.
  ``return_sequences=False`` returns the last output of the walk, i.e. h at the last real step.
- Outputs: the sequence ``(batch, timesteps, units)`` or the last output ``(batch, units)``; with
  ``return_state`` a list ``[output, *states]``.

The cell math (one implementation, used by ``forward`` and by ``step``) lives in
``recurrent_cells``. ``dropout``/``recurrent_dropout`` are the identity at inference; training
with them is refused because Keras's random masks cannot be reproduced.
"""

import numpy as np

from . import activations
from .base import Layer, LayerError
from .recurrent_cells import gru_cell, lstm_cell, simple_rnn_cell


class _Recurrent(Layer):
    """The shared time loop. Subclasses set ``cell`` (a cell module), ``gates`` and ``state_names``."""

    weight_names = ("kernel", "recurrent_kernel", "bias")
    supports_masking = True
    consumes_mask = True
    gates = 1
    state_names = ("h",)
    cell = None

    def __init__(self, units, *, activation, recurrent_activation, use_bias, return_sequences,
                 return_state, go_backwards, stateful, unroll, zero_output_for_mask, dropout,
                 recurrent_dropout, use_cudnn="auto", implementation=None, time_major=False, **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units < 1:
            raise LayerError(f"units must be a positive integer. Received: units={units!r}")
        if stateful:
            raise LayerError("stateful=True is not supported: the scratch engine keeps no state between calls. "
                             "Received: stateful=True")
        if time_major:
            raise LayerError("time_major=True is not supported. Received: time_major=True")
        self.units = int(units)
        self.activation = activations.get(activation)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.use_bias = bool(use_bias)
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self.dropout = float(dropout)
        self.recurrent_dropout = float(recurrent_dropout)
        # unroll, use_cudnn and implementation pick among kernels that compute the same function.
        self.unroll, self.use_cudnn, self.implementation = unroll, use_cudnn, implementation
        self._cache = None

    # ---- weights -------------------------------------------------------------------------
    def active_weight_names(self):
        return self.weight_names if self.use_bias else self.weight_names[:2]

    def bias_shape(self):
        return (self.gates * self.units,)

    def expected_weight_shape(self, name):
        if name == "recurrent_kernel":
            return (self.units, self.gates * self.units)
        if name == "bias":
            return self.bias_shape()
        return super().expected_weight_shape(name)

    def build(self, input_shape, rng=None):
        if len(input_shape) != 3:
            raise LayerError(f"{type(self).__name__} expects input of shape (batch, timesteps, features). "
                             f"Received: input_shape={tuple(input_shape)}")
        shapes = {"kernel": (int(input_shape[-1]), self.gates * self.units),
                  "recurrent_kernel": (self.units, self.gates * self.units),
                  "bias": self.bias_shape()}
        self.weights = {}
        for name in self.active_weight_names():
            w = np.zeros(shapes[name]) if rng is None else rng.normal(0.0, 0.5, size=shapes[name])
            self.weights[name] = w.astype(self.dtype)
        self.built = True

    # ---- shapes and masks ----------------------------------------------------------------
    def compute_output_shape(self, input_shape):
        batch, steps = input_shape[0], input_shape[1]
        out = (batch, steps, self.units) if self.return_sequences else (batch, self.units)
        if self.return_state:
            return [out] + [(batch, self.units) for _ in self.state_names]
        return out

    def compute_mask(self, inputs, mask=None):
        # Keras keeps the time mask only on a returned sequence; states never carry one.
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        out_mask = mask if self.return_sequences else None
        if self.return_state:
            return [out_mask] + [None for _ in self.state_names]
        return out_mask

    # ---- step API ------------------------------------------------------------------------
    def initial_states(self, batch):
        """Zero states, in Keras order (LSTM ``[h, c]``, GRU/SimpleRNN ``[h]``), each (batch, units)."""
        return [np.zeros((batch, self.units), dtype=self.dtype) for _ in self.state_names]

    def step(self, x_t, states):
        """One time step: ``x_t`` (batch, features), ``states`` as from ``initial_states``.

        Returns ``(output_t, new_states)``. It is the cell ``forward`` runs at every step (no mask).
        """
        x_t = self.cast(x_t)
        states = self._check_states(states, x_t.shape[0])
        out, new_states, _ = self.cell.forward(self, x_t, states)
        return out, new_states

    # ---- forward -------------------------------------------------------------------------
    def forward(self, x, mask=None, initial_state=None, training=False):
        x = self.cast(x)
        if x.ndim != 3:
            raise LayerError(f"{type(self).__name__} expects input of shape (batch, timesteps, features). "
                             f"Received: shape={x.shape}")
        if training and (self.dropout or self.recurrent_dropout):
            raise LayerError("training with dropout or recurrent_dropout is not supported (Keras draws random "
                             f"masks). Received: dropout={self.dropout}, recurrent_dropout={self.recurrent_dropout}")
        batch, steps, _ = x.shape
        if steps < 1:
            raise LayerError(f"{type(self).__name__} needs at least one time step. Received: shape={x.shape}")
        mask = self._check_mask(mask, batch, steps)
        states = self.initial_states(batch) if initial_state is None else self._check_states(initial_state, batch)
        order = range(steps - 1, -1, -1) if self.go_backwards else range(steps)
        prev_out = np.zeros((batch, self.units), dtype=self.dtype)
        outputs, caches = [], []
        for t in order:
            out, new_states, cache = self.cell.forward(self, x[:, t], states)
            # A step where every sample is real changes nothing below (a decoding step model
            # runs one such step per token: the three selects were a third of its LSTM's time).
            if mask is not None and not mask[:, t].all():
                m = mask[:, t, None]
                out = np.where(m, out, 0.0 if self.zero_output_for_mask else prev_out).astype(self.dtype)
                new_states = [np.where(m, new, old) for new, old in zip(new_states, states)]
            outputs.append(out)
            caches.append(cache)
            prev_out, states = out, new_states
        self._cache = dict(x_shape=x.shape, mask=mask, order=list(order), caches=caches,
                           has_initial_state=initial_state is not None)
        result = np.stack(outputs, axis=1) if self.return_sequences else outputs[-1]
        if self.return_state:
            return [result, *states]
        return result

    def _check_mask(self, mask, batch, steps):
        if mask is None:
            return None
        mask = np.asarray(mask)
        if mask.shape != (batch, steps):
            raise LayerError(f"{type(self).__name__} expects a mask of shape (batch, timesteps)={(batch, steps)}. "
                             f"Received: mask.shape={mask.shape}")
        return mask.astype(bool)

    def _check_states(self, states, batch):
        if isinstance(states, np.ndarray) and len(self.state_names) == 1:
            states = [states]
        states = [self.cast(s) for s in states]
        want = (batch, self.units)
        if len(states) != len(self.state_names) or any(s.shape != want for s in states):
            raise LayerError(f"{type(self).__name__} expects {len(self.state_names)} state(s) "
                             f"{list(self.state_names)} of shape {want}. "
                             f"Received: {[s.shape for s in states]}")
        return states

    # ---- backward (BPTT) -----------------------------------------------------------------
    def backward(self, dout):
        """Backprop through time. ``dout`` mirrors the outputs (a list with return_state, None = no gradient).

        Returns dx, or ``[dx, *d_initial_states]`` when forward was given ``initial_state``.
        """
        c = self._cache
        if c is None:
            raise LayerError(f"{type(self).__name__}.backward called before forward")
        batch, steps, _ = c["x_shape"]
        zeros = np.zeros((batch, self.units), dtype=self.dtype)
        if self.return_state:
            d_out, *d_states = dout
        else:
            d_out, d_states = dout, [None] * len(self.state_names)
        d_states = [zeros if d is None else self.cast(d) for d in d_states]
        out_shape = (batch, steps, self.units) if self.return_sequences else (batch, self.units)
        d_out = np.zeros(out_shape, dtype=self.dtype) if d_out is None else self.cast(d_out)

        self.grads = {n: np.zeros_like(self.weights[n]) for n in self.active_weight_names()}
        dx = np.zeros(c["x_shape"], dtype=self.dtype)
        mask = c["mask"]
        d_carried_out = zeros  # reaches the previous output through a masked step's repeat
        for k in range(steps - 1, -1, -1):
            t = c["order"][k]
            if self.return_sequences:
                g_out = d_carried_out + d_out[:, k]
            else:
                g_out = d_carried_out + (d_out if k == steps - 1 else 0.0)
            if mask is None:
                g_cell, g_new = g_out, d_states
                d_carried_out, d_kept = zeros, [zeros] * len(d_states)
            else:
                m = mask[:, t, None]
                g_cell = np.where(m, g_out, 0.0)
                g_new = [np.where(m, d, 0.0) for d in d_states]
                d_carried_out = zeros if self.zero_output_for_mask else np.where(m, 0.0, g_out)
                d_kept = [np.where(m, 0.0, d) for d in d_states]
            dx[:, t], d_prev = self.cell.backward(self, g_cell, g_new, c["caches"][k], self.grads)
            d_states = [(a + b).astype(self.dtype) for a, b in zip(d_prev, d_kept)]
        if c["has_initial_state"]:
            return [dx, *d_states]
        return dx


# The constructor arguments every recurrent class takes (Keras's config keys, named in each class's
# signature so that the catalog lists them) and passes to _Recurrent unchanged.
_SHARED_OPTIONS = ("return_sequences", "return_state", "go_backwards", "stateful", "unroll", "zero_output_for_mask",
                   "dropout", "recurrent_dropout")


def _rnn_options(scope):
    """The shared options and the remaining ``kwargs`` from a constructor's ``locals()``."""
    return {**{k: scope[k] for k in _SHARED_OPTIONS}, **scope["kwargs"]}


class SimpleRNN(_Recurrent):
    """Fully connected recurrence: ``h_t = act(x_t @ kernel + bias + h_{t-1} @ recurrent_kernel)``.

    Input (batch, timesteps, in) -> output (batch, timesteps, units) with return_sequences, else
    (batch, units); return_state appends h. Weights: kernel (in, units), recurrent_kernel
    (units, units), bias (units,). Parameters: units * (in + units + 1) (no +units without bias).
    """

    cell = simple_rnn_cell

    def __init__(self, units, activation="tanh", use_bias=True, dropout=0.0, recurrent_dropout=0.0,
                 return_sequences=False, return_state=False, go_backwards=False, stateful=False,
                 unroll=False, zero_output_for_mask=False, **kwargs):
        super().__init__(units, activation=activation, recurrent_activation=None, use_bias=use_bias,
                         **_rnn_options(locals()))


class LSTM(_Recurrent):
    """Long short-term memory, Keras's gate layout.

    ``z = x_t @ kernel + h_{t-1} @ recurrent_kernel + bias``, split into columns **i, f, c, o**::

        i, f, o = ra(z_i), ra(z_f), ra(z_o)        (ra = recurrent_activation, sigmoid by default)
        c_t = f * c_{t-1} + i * act(z_c)           (act = activation, tanh by default)
        h_t = o * act(c_t)

    Input (batch, timesteps, in) -> (batch, timesteps, units) or (batch, units); return_state
    appends ``h, c``. Weights: kernel (in, 4u), recurrent_kernel (u, 4u), bias (4u,).
    Parameters: 4u * (in + u + 1). ``unit_forget_bias`` only affects the initial bias (ones in the
    forget slice, as Keras initializes it); for tf_keras files pass
    ``recurrent_activation='hard_sigmoid_tf_keras'`` where the file says 'hard_sigmoid'.
    """

    cell = lstm_cell
    gates = 4
    state_names = ("h", "c")

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 unit_forget_bias=True, dropout=0.0, recurrent_dropout=0.0, return_sequences=False,
                 return_state=False, go_backwards=False, stateful=False, unroll=False,
                 zero_output_for_mask=False, **kwargs):
        super().__init__(units, activation=activation, recurrent_activation=recurrent_activation,
                         use_bias=use_bias, **_rnn_options(locals()))
        self.unit_forget_bias = bool(unit_forget_bias)

    def build(self, input_shape, rng=None):
        super().build(input_shape, rng)
        if rng is None and self.use_bias and self.unit_forget_bias:
            self.weights["bias"][self.units:2 * self.units] = 1.0


class GRU(_Recurrent):
    """Gated recurrent unit, Keras's gate layout: columns **z, r, h** (update, reset, candidate).

    With ``reset_after=True`` (default; bias (2, 3u): row 0 input side, row 1 recurrent side)::

        xz, xr, xh = x_t @ kernel + bias[0];   rz, rr, rh = h_{t-1} @ recurrent_kernel + bias[1]
        z = ra(xz + rz);  r = ra(xr + rr);  hh = act(xh + r * rh)

    With ``reset_after=False`` (bias (3u,), input side only)::

        z = ra(xz + h_{t-1} @ R_z);  r = ra(xr + h_{t-1} @ R_r);  hh = act(xh + (r * h_{t-1}) @ R_h)

    Then ``h_t = z * h_{t-1} + (1 - z) * hh``. Input (batch, timesteps, in) -> (batch, timesteps, u)
    or (batch, u); return_state appends h. Weights: kernel (in, 3u), recurrent_kernel (u, 3u), bias.
    Parameters: 3u * (in + u + 1), plus 3u more with reset_after.
    """

    cell = gru_cell
    gates = 3

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 dropout=0.0, recurrent_dropout=0.0, reset_after=True, return_sequences=False,
                 return_state=False, go_backwards=False, stateful=False, unroll=False,
                 zero_output_for_mask=False, **kwargs):
        super().__init__(units, activation=activation, recurrent_activation=recurrent_activation,
                         use_bias=use_bias, **_rnn_options(locals()))
        self.reset_after = bool(reset_after)

    def bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)
