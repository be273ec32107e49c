"""Layer wrappers: Bidirectional (runs a recurrent layer both ways) and TimeDistributed.

Both take already-constructed scratch layers and own no weights of their own: ``weights``,
``grads`` and ``get_weights``/``set_weights`` delegate to the wrapped layers, in Keras's
``get_weights()`` order, so the gradient checker's in-place perturbations reach the arrays the
wrapped layers compute with.
"""

import copy

import numpy as np

from .base import Layer, LayerError, check_choice

_MERGE_MODES = ("concat", "sum", "mul", "ave", None)


class _Wrapper(Layer):
    """Delegates weights to ``_parts()``: a list of (name prefix, layer)."""

    def _parts(self):
        raise NotImplementedError

    @property
    def weights(self):
        return {p + n: w for p, layer in self._parts() for n, w in layer.weights.items()}

    @weights.setter
    def weights(self, value):
        if value:  # Layer.__init__ assigns an empty dict; real weights live in the wrapped layers
            raise LayerError(f"{type(self).__name__} holds no weights of its own; use set_weights")

    @property
    def grads(self):
        return {p + n: g for p, layer in self._parts() for n, g in layer.grads.items()}

    @grads.setter
    def grads(self, value):
        if value:
            raise LayerError(f"{type(self).__name__} holds no gradients of its own")

    def active_weight_names(self):
        return tuple(p + n for p, layer in self._parts() for n in layer.active_weight_names())

    def trainable_weight_names(self):
        return tuple(p + n for p, layer in self._parts() for n in layer.trainable_weight_names())

    def set_weights(self, arrays):
        arrays = list(arrays)
        wanted = sum(len(layer.active_weight_names()) for _, layer in self._parts())
        if len(arrays) != wanted:
            raise LayerError(f"Layer '{self.name}' ({type(self).__name__}) expects {wanted} weights "
                             f"{list(self.active_weight_names())}, received {len(arrays)}")
        for _, layer in self._parts():
            k = len(layer.active_weight_names())
            layer.set_weights(arrays[:k])
            arrays = arrays[k:]
        self.built = True

    def expected_weight_shape(self, name):
        for p, layer in self._parts():
            if name.startswith(p) and name[len(p):] in layer.active_weight_names():
                return layer.expected_weight_shape(name[len(p):])
        return None

    def to_dtype(self, dtype):
        for _, layer in self._parts():
            layer.to_dtype(dtype)
        self.dtype = self._parts()[0][1].dtype
        return self


class Bidirectional(_Wrapper):
    """Runs ``layer`` forward and a go_backwards copy of it, then merges the two outputs.

    ``y_f = forward_layer(x)``, ``y_b = backward_layer(x)`` (walked from the end; with
    return_sequences flipped back to time order), merged by ``merge_mode``: 'concat'
    ``[y_f, y_b]`` on the last axis (2u features), 'sum' ``y_f + y_b``, 'mul' ``y_f * y_b``, 'ave'
    ``(y_f + y_b) / 2``, None the list ``[y_f, y_b]``. With return_state the states follow, forward
    first: ``[out, h_f, (c_f,) h_b, (c_b)]``. ``initial_state`` is split in half the same way.

    As in Keras, both directions are forced to ``zero_output_for_mask = return_sequences``, so
    masked steps of a returned sequence are zeros. Weights: forward_layer's then backward_layer's
    (Keras's ``Bidirectional.get_weights()`` order); names are prefixed 'forward_layer/' and
    'backward_layer/'. The output mask is the input mask when return_sequences (a pair for
    merge_mode None), else None; with return_state the state outputs carry no mask.
    """

    supports_masking = True
    consumes_mask = True

    def __init__(self, layer, merge_mode="concat", backward_layer=None, **kwargs):
        for key, value in (("layer", layer), ("backward_layer", backward_layer)):
            if value is not None and not (isinstance(value, Layer) and hasattr(value, "go_backwards")):
                raise LayerError(f"{key} must be a scratch recurrent layer instance. Received: {key}={value!r}")
        check_choice("merge_mode", merge_mode, _MERGE_MODES)
        kwargs.setdefault("dtype", layer.dtype.name)
        super().__init__(**kwargs)
        # Like Keras, wrap copies: the forward copy keeps the layer's settings, the default backward
        # copy is the same layer with go_backwards=True.
        self.forward_layer = copy.deepcopy(layer)
        self.forward_layer.name = "forward_" + layer.name.removeprefix("forward_")
        if backward_layer is None:
            backward_layer = copy.deepcopy(layer)
            backward_layer.go_backwards = True
            backward_layer.name = "backward_" + layer.name.removeprefix("backward_")
        self.backward_layer = backward_layer
        if self.forward_layer.go_backwards == self.backward_layer.go_backwards:
            raise LayerError("Forward layer and backward layer should have different go_backwards values. "
                             f"Received: forward_layer.go_backwards={self.forward_layer.go_backwards}, "
                             f"backward_layer.go_backwards={self.backward_layer.go_backwards}")
        for attr in ("return_sequences", "return_state"):
            f, b = getattr(self.forward_layer, attr), getattr(self.backward_layer, attr)
            if f != b:
                raise LayerError(f"Forward layer and backward layer should have the same {attr}. "
                                 f"Received: {f} for the forward layer and {b} for the backward layer")
        for sub in (self.forward_layer, self.backward_layer):
            sub.zero_output_for_mask = sub.return_sequences
            sub.to_dtype(self.dtype)
        self.merge_mode = merge_mode
        self.return_sequences = self.forward_layer.return_sequences
        self.return_state = self.forward_layer.return_state
        self._cache = None

    def _parts(self):
        return [("forward_layer/", self.forward_layer), ("backward_layer/", self.backward_layer)]

    def build(self, input_shape, rng=None):
        self.forward_layer.build(input_shape, rng)
        self.backward_layer.build(input_shape, rng)
        self.built = True

    def _n_states(self, layer):
        return len(layer.state_names) if self.return_state else 0

    def compute_output_shape(self, input_shape):
        f = self.forward_layer.compute_output_shape(input_shape)
        b = self.backward_layer.compute_output_shape(input_shape)
        f_out, f_states = (f[0], f[1:]) if self.return_state else (f, [])
        b_out, b_states = (b[0], b[1:]) if self.return_state else (b, [])
        if self.merge_mode == "concat":
            outs = [(*f_out[:-1], f_out[-1] + b_out[-1])]
        elif self.merge_mode is None:
            outs = [f_out, b_out]
        else:
            outs = [f_out]
        outs = outs + list(f_states) + list(b_states)
        return outs[0] if len(outs) == 1 else outs

    def compute_mask(self, inputs, mask=None):
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        out_mask = mask if self.return_sequences else None
        masks = [out_mask, out_mask] if self.merge_mode is None else [out_mask]
        if self.return_state:
            masks += [None] * (self._n_states(self.forward_layer) + self._n_states(self.backward_layer))
        return masks[0] if len(masks) == 1 else masks

    def forward(self, x, mask=None, initial_state=None, training=False):
        f_init = b_init = None
        if initial_state is not None:
            half = len(initial_state) // 2
            f_init, b_init = list(initial_state[:half]), list(initial_state[half:])
        y = self.forward_layer.forward(x, mask=mask, initial_state=f_init, training=training)
        y_rev = self.backward_layer.forward(x, mask=mask, initial_state=b_init, training=training)
        states = []
        if self.return_state:
            states = list(y[1:]) + list(y_rev[1:])
            y, y_rev = y[0], y_rev[0]
        if self.return_sequences:
            y_rev = y_rev[:, ::-1]
        self._cache = dict(y=y, y_rev=y_rev, has_initial_state=initial_state is not None)
        if self.merge_mode == "concat":
            out = [np.concatenate([y, y_rev], axis=-1)]
        elif self.merge_mode == "sum":
            out = [y + y_rev]
        elif self.merge_mode == "ave":
            out = [(y + y_rev) / 2]
        elif self.merge_mode == "mul":
            out = [y * y_rev]
        else:
            out = [y, y_rev]
        out = out + states
        return out[0] if len(out) == 1 else out

    def backward(self, dout):
        """``dout`` mirrors the outputs (None = no gradient). Returns dx, plus the initial-state grads
        (forward's then backward's) when forward was given ``initial_state``."""
        c = self._cache
        if c is None:
            raise LayerError("Bidirectional.backward called before forward")
        y, y_rev = c["y"], c["y_rev"]
        douts = list(dout) if (self.return_state or self.merge_mode is None) else [dout]
        douts = [None if d is None else np.asarray(d, dtype=self.dtype) for d in douts]
        if self.merge_mode is None:
            dy, dy_rev = douts[0], douts[1]
            d_states = douts[2:]
        else:
            d_merged = np.zeros_like(np.concatenate([y, y_rev], -1) if self.merge_mode == "concat" else y) \
                if douts[0] is None else douts[0]
            d_states = douts[1:]
            if self.merge_mode == "concat":
                dy, dy_rev = d_merged[..., :y.shape[-1]], d_merged[..., y.shape[-1]:]
            elif self.merge_mode == "sum":
                dy, dy_rev = d_merged, d_merged
            elif self.merge_mode == "ave":
                dy = dy_rev = d_merged / 2
            else:
                dy, dy_rev = d_merged * y_rev, d_merged * y
        if self.return_sequences and dy_rev is not None:
            dy_rev = dy_rev[:, ::-1]
        n_f = self._n_states(self.forward_layer)
        f_dout = [dy, *d_states[:n_f]] if self.return_state else dy
        b_dout = [dy_rev, *d_states[n_f:]] if self.return_state else dy_rev
        f_res = self.forward_layer.backward(f_dout)
        b_res = self.backward_layer.backward(b_dout)
        if c["has_initial_state"]:
            return [f_res[0] + b_res[0], *f_res[1:], *b_res[1:]]
        return f_res + b_res


class TimeDistributed(_Wrapper):
    """Applies ``layer`` to every time slice: ``out[:, t] = layer(x[:, t])``.

    Input (batch, timesteps, *inner) -> (batch, timesteps, *layer_output). Time is folded into the
    batch axis, so the wrapped layer runs once on (batch * timesteps, *inner). Weights are the
    wrapped layer's, under the same names. A mask passes through unchanged (Keras's
    supports_masking); it is not handed to the wrapped layer.
    """

    supports_masking = True
    consumes_mask = True

    def __init__(self, layer, **kwargs):
        if not isinstance(layer, Layer):
            raise LayerError(f"layer must be a scratch Layer instance. Received: layer={layer!r}")
        kwargs.setdefault("dtype", layer.dtype.name)
        super().__init__(**kwargs)
        self.layer = layer
        layer.to_dtype(self.dtype)
        self._outer = None

    def _parts(self):
        return [("", self.layer)]

    @staticmethod
    def _child_shape(input_shape):
        if len(input_shape) < 3:
            raise LayerError("TimeDistributed expects input of shape (batch, timesteps, ...) with at least "
                             f"3 dimensions. Received: input_shape={tuple(input_shape)}")
        return (input_shape[0], *input_shape[2:])

    def build(self, input_shape, rng=None):
        self.layer.build(self._child_shape(input_shape), rng)
        self.built = True

    def compute_output_shape(self, input_shape):
        inner = self.layer.compute_output_shape(self._child_shape(input_shape))
        return (inner[0], input_shape[1], *inner[1:])

    def forward(self, x, mask=None, training=False):
        x = self.cast(x)
        self._child_shape(x.shape)
        batch, steps = x.shape[:2]
        self._outer = (batch, steps)
        out = self.layer.forward(x.reshape(batch * steps, *x.shape[2:]), training=training)
        return out.reshape(batch, steps, *out.shape[1:])

    def backward(self, dout):
        batch, steps = self._outer
        dout = np.asarray(dout, dtype=self.dtype)
        dx = self.layer.backward(dout.reshape(batch * steps, *dout.shape[2:]))
        return dx.reshape(batch, steps, *dx.shape[1:])
