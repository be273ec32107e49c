"""The contract every scratch layer keeps.

A layer is built from Keras's own config keys, holds its weights in Keras's order, and runs
``forward`` (inference or training) and ``backward`` (gradients w.r.t. its input and weights).

Conventions shared by all layers:
- Data is channels_last. The compute dtype is the layer's ``dtype`` (float32 by default); inputs
  are cast to it, as Keras casts inputs to a layer's compute dtype.
- ``weight_names`` lists the weights in Keras order: trainable first, then non-trainable.
  ``get_weights``/``set_weights`` use that order; ``grads`` maps the same names to gradients.
- ``forward`` caches what ``backward`` needs; ``backward(dout)`` returns ``dx`` (a list for
  multi-input layers) and fills ``grads``.
- Masks: ``compute_mask(inputs, mask)`` says which mask flows to the next layer, as Keras's
  ``compute_mask`` does. Layers that do not support masking drop it. Layers whose result depends
  on the mask set ``consumes_mask`` and take ``forward(x, mask=None, ...)``.
- ``build(input_shape, rng=None)`` creates every weight (zeros, or random from ``rng``) so that
  ``set_weights`` can check shapes; ``compute_output_shape(input_shape)`` mirrors Keras's.
"""

import threading
from contextlib import contextmanager

import numpy as np

from ..errors import LayerError

_mode = threading.local()


@contextmanager
def inference_only():
    """Inside this block (``Model.predict`` and ``trace``, on this thread) no ``backward`` follows a
    ``forward``, so a layer need not keep what only backward reads: a Conv2D applies its activation
    in place instead of beside its pre-activation output (the same values, one array fewer)."""
    depth = getattr(_mode, "inference_depth", 0)
    _mode.inference_depth = depth + 1
    try:
        yield
    finally:
        _mode.inference_depth = depth


def backward_follows():
    """False inside ``inference_only()``."""
    return getattr(_mode, "inference_depth", 0) == 0

# Config keys that change nothing at inference or in the gradients we compute: initializers,
# regularizers and constraints only matter while Keras trains.
_IGNORED_SUFFIXES = ("_initializer", "_regularizer", "_constraint")
_IGNORED_KEYS = {
    "trainable", "batch_input_shape", "batch_shape", "input_shape", "seed",
    "activity_regularizer", "autocast", "build_config", "quantization_config", "synchronized",
    "lora_rank", "lora_alpha",
}


def check_choice(name, value, choices):
    """Keras-style argument check: ``padding must be 'valid' or 'same'. Received: padding='full'``."""
    if value not in choices:
        wanted = " or ".join(repr(c) for c in choices)
        raise LayerError(f"{name} must be {wanted}. Received: {name}={value!r}")
    return value


def as_tuple(value, n, name):
    """Normalize an int or an n-sequence of positive ints (kernel_size, strides, ...)."""
    if isinstance(value, (int, np.integer)):
        value = (int(value),) * n
    value = tuple(int(v) for v in value)
    if len(value) != n or any(v < 1 for v in value):
        raise LayerError(f"{name} must be a positive int or a tuple of {n} positive ints. Received: {name}={value!r}")
    return value


class Layer:
    """Base class. Subclasses set ``weight_names`` and implement ``build``/``forward``/``backward``."""

    weight_names = ()
    supports_masking = False   # passes an incoming mask on unchanged (Keras's supports_masking)
    consumes_mask = False      # forward takes a ``mask=`` keyword (recurrent layers, wrappers)

    def __init__(self, name=None, dtype="float32", **config):
        unknown = [k for k in config if k not in _IGNORED_KEYS and not k.endswith(_IGNORED_SUFFIXES)]
        if unknown:
            raise LayerError(f"{type(self).__name__} got unsupported arguments: {sorted(unknown)}")
        self.name = name or type(self).__name__.lower()
        self.dtype = np.dtype(_dtype_name(dtype))
        self.weights = {}      # name -> ndarray, in weight_names order once built
        self.grads = {}        # name -> ndarray, filled by backward
        self.training = False
        self.built = False

    # ---- weights -------------------------------------------------------------------------
    def build(self, input_shape, rng=None):
        """Create weights for ``input_shape`` (batch axis included, may be None). Random if rng given."""
        self.built = True

    def active_weight_names(self):
        """The weights this configuration has (e.g. no bias when use_bias=False), in Keras order."""
        return tuple(self.weight_names)

    def trainable_weight_names(self):
        """The weights that receive gradients (state such as BN's moving statistics does not)."""
        return self.active_weight_names()

    def get_weights(self):
        return [self.weights[n] for n in self.active_weight_names()]

    def set_weights(self, arrays):
        names = self.active_weight_names()
        if len(arrays) != len(names):
            raise LayerError(
                f"Layer '{self.name}' ({type(self).__name__}) expects {len(names)} weights {list(names)}, "
                f"received {len(arrays)}"
            )
        for n, a in zip(names, arrays):
            a = np.asarray(a)
            expected = self.expected_weight_shape(n)
            if expected is not None and tuple(a.shape) != tuple(expected):
                raise LayerError(
                    f"Layer '{self.name}' ({type(self).__name__}): weight '{n}' has shape {tuple(a.shape)}, "
                    f"expected {tuple(expected)}"
                )
            self.weights[n] = a.astype(self.dtype, copy=True)
        self.built = True

    def expected_weight_shape(self, name):
        """Shape a weight must have given the config (and input shape once built); None if unknown."""
        w = self.weights.get(name)
        return None if w is None else w.shape

    def count_params(self):
        return int(sum(w.size for w in self.get_weights()))

    def get_gradients(self):
        return [self.grads[n] for n in self.trainable_weight_names()]

    def to_dtype(self, dtype):
        """Switch compute dtype and cast the weights (used for the float64 'truth' run)."""
        self.dtype = np.dtype(_dtype_name(dtype))
        self.weights = {k: v.astype(self.dtype) for k, v in self.weights.items()}
        return self

    # ---- computation ---------------------------------------------------------------------
    def cast(self, x):
        return np.asarray(x).astype(self.dtype, copy=False)

    def forward(self, x, training=False):
        raise NotImplementedError

    def backward(self, dout):
        raise NotImplementedError(f"{type(self).__name__} has no backward pass")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def compute_mask(self, inputs, mask=None):
        return mask if self.supports_masking else None

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r})"


def _dtype_name(dtype):
    # Keras 3 configs may carry a DTypePolicy dict instead of a plain dtype string.
    if isinstance(dtype, dict):
        cfg = dtype.get("config", {})
        dtype = cfg.get("name", "float32")
        if dtype.startswith("mixed_"):
            raise LayerError(f"mixed precision policies are not supported. Received: dtype={dtype!r}")
    if dtype is None:
        dtype = "float32"
    return dtype
