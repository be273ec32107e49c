"""Regularization layers: SpatialDropout1D/2D, GaussianNoise, GaussianDropout, AlphaDropout and
ActivityRegularization, as Keras defines them.

All are the identity at inference (forward and backward) and pass an incoming mask on. In
training mode they draw their noise as the scratch Dropout (core.py) draws its masks: each layer
owns a ``numpy.random.Generator`` seeded from ``seed`` at construction (OS entropy when None);
every training-mode ``forward`` draws the next noise from it, ``reseed(seed)`` restarts the
sequence, and ``backward`` reuses the noise of the last forward. The draws are not TensorFlow's
(its stateless Philox stream cannot be reproduced); their law and Keras's arithmetic are. No
weights.
"""

import math

import numpy as np

from .base import Layer, LayerError
from .core import Dropout, check_noise_shape, mask_shape

# SELU's constants, as keras.layers.AlphaDropout spells them.
_ALPHA = 1.6732632423543772848170429916717
_SCALE = 1.0507009873554804934193349852946


def _check_unit_interval(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) or not 0 <= value <= 1:
        raise LayerError(f"Invalid value received for argument `{name}`. Expected a float value between 0 and 1. "
                         f"Received: {name}={value}")
    return float(value)


class SpatialDropout1D(Dropout):
    """Dropout of whole feature channels of a sequence: ``y = x * keep[n, c] / (1 - rate)``.

    One keep decision per (batch item, channel), shared by every step (noise shape (N, 1, C)).
    Input (N, steps, C) -> same shape. Identity at inference. See core.Dropout for the seeding.
    """

    _noise = (None, 1, None)
    _dims = "(N, steps, C)"

    def __init__(self, rate, seed=None, noise_shape=None, **kwargs):
        # tf_keras configs carry Dropout's noise_shape (None); the class fixes it.
        if noise_shape is not None:
            raise LayerError(f"{type(self).__name__} sets its own noise_shape. Received: noise_shape={noise_shape!r}")
        super().__init__(rate, noise_shape=None, seed=seed, **kwargs)
        self.noise_shape = self._noise

    def forward(self, x, training=False):
        if np.ndim(x) != len(self._noise):
            raise LayerError(f"{type(self).__name__} expects input of rank {len(self._noise)} {self._dims}. "
                             f"Received: input_shape={np.shape(x)}")
        return super().forward(x, training=training)


class SpatialDropout2D(SpatialDropout1D):
    """Dropout of whole feature maps: ``y = x * keep[n, c] / (1 - rate)``, one decision per
    (batch item, channel) shared over H and W (noise shape (N, 1, 1, C)).

    Input (N, H, W, C) -> same shape. Identity at inference. See core.Dropout for the seeding.
    """

    _noise = (None, 1, 1, None)
    _dims = "(N, H, W, C)"

    def __init__(self, rate, data_format=None, seed=None, **kwargs):
        if data_format not in (None, "channels_last"):
            raise LayerError(f"SpatialDropout2D supports data_format='channels_last' only. "
                             f"Received: data_format={data_format!r}")
        super().__init__(rate, seed=seed, **kwargs)


class _Noise(Layer):
    """Seeded training-mode noise; the identity (and identity gradient) at inference."""

    supports_masking = True

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.reseed(seed)
        self._factor = None

    def reseed(self, seed):
        self._rng = np.random.default_rng(seed)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def _normal(self, shape):
        return self._rng.standard_normal(shape).astype(self.dtype)

    def backward(self, dout):
        dout = self.cast(dout)
        return dout if self._factor is None else (dout * self._factor).astype(self.dtype)


class GaussianNoise(_Noise):
    """Training: ``y = x + stddev * z``, z ~ N(0, 1) elementwise; inference: ``y = x``.

    Any shape. The noise is additive, so the gradient is the identity in both modes.
    ``stddev`` must lie in [0, 1], as Keras requires.
    """

    def __init__(self, stddev, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.stddev = _check_unit_interval("stddev", stddev)

    def forward(self, x, training=False):
        x = self.cast(x)
        if not training or self.stddev == 0:
            return x
        # Keras draws N(mean=0, stddev) in the compute dtype: stddev * z + 0.
        return x + self._normal(x.shape) * self.dtype.type(self.stddev)


class _RateNoise(_Noise):
    """Training-mode noise of a ``rate`` in [0, 1]: the identity at rate 0; rate 1 is refused in
    training mode, where Keras's formula divides by zero. Subclasses set ``_rate_1`` (why, for the
    error) and ``_apply(x)`` (the noisy forward, which sets ``_factor`` for the gradient)."""

    _rate_1 = ""

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.rate = _check_unit_interval("rate", rate)

    def forward(self, x, training=False):
        x = self.cast(x)
        self._factor = None
        if not training or self.rate == 0:
            return x
        if self.rate == 1:
            raise LayerError(f"{type(self).__name__} with rate=1 {self._rate_1}; Keras fails on it in training mode "
                             f"too. Received: rate=1.0")
        return self._apply(x)


class GaussianDropout(_RateNoise):
    """Training: ``y = x * g``, g ~ N(1, rate / (1 - rate)) elementwise; inference: ``y = x``.

    Any shape. Gradient: ``dout * g`` with the g of the last forward (identity at inference).
    ``rate`` in [0, 1]; rate 1 has no finite noise, and Keras fails on it (division by zero) in
    training mode, so that call is refused.
    """

    _rate_1 = "has an infinite noise stddev sqrt(rate / (1 - rate))"

    def _apply(self, x):
        stddev = math.sqrt(self.rate / (1.0 - self.rate))
        self._factor = self._normal(x.shape) * self.dtype.type(stddev) + self.dtype.type(1.0)
        return x * self._factor


class AlphaDropout(_RateNoise):
    """Dropout that keeps SELU's self-normalization (Klambauer et al. 2017).

    Training: ``keep = u >= rate``, u ~ U[0, 1) with shape ``noise_shape`` (None entries take the
    input's size); ``y = a * (x * keep + alpha' * (1 - keep)) + b`` with ``alpha' = -alpha*scale``
    (SELU's constants), ``a = ((1 - rate) * (1 + rate * alpha'^2))^-1/2`` and
    ``b = -a * alpha' * rate``. Inference: ``y = x``. Any shape.
    Gradient: ``dout * a * keep`` (identity at inference). rate 1 divides by zero in Keras's
    formula for a, so that training call is refused.
    """

    _rate_1 = "has no finite scale a = ((1 - rate) * (1 + rate * alpha'^2))^-1/2"

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(rate, seed=seed, **kwargs)
        self.noise_shape = check_noise_shape(noise_shape)

    def _apply(self, x):
        keep = (self._rng.random(mask_shape(self.noise_shape, x.shape)) >= self.rate).astype(self.dtype)
        alpha_p = -_ALPHA * _SCALE
        a = ((1 - self.rate) * (1 + self.rate * alpha_p ** 2)) ** -0.5
        b = -a * alpha_p * self.rate
        t = self.dtype.type
        # Keras's order of operations, each Python constant rounded to the compute dtype.
        y = t(a) * (x * keep + t(alpha_p) * (1 - keep)) + t(b)
        self._factor = t(a) * keep
        return y.astype(self.dtype)


class ActivityRegularization(Layer):
    """``y = x``; in training mode it also adds Keras's activity penalty to the loss:
    ``loss = (l1 * sum|x| + l2 * sum x^2) / N`` (N = batch size; Keras divides by it; l1 and l2
    pass through float32 as in Keras, see ``_coefficients``).

    Any shape. ``loss`` holds the penalty of the last training-mode forward (0 at inference).
    Gradient: identity at inference; in training mode the gradient of (loss behind ``dout`` +
    penalty): ``dout + (l1 * sign(x) + 2 * l2 * x) / N`` (sign(0) = 0, as TF's abs gradient).
    """

    supports_masking = True

    def __init__(self, l1=0.0, l2=0.0, **kwargs):
        super().__init__(**kwargs)
        self.l1, self.l2 = _penalty("l1", l1), _penalty("l2", l2)
        self.loss = 0.0
        self._x = None

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, x, training=False):
        x = self.cast(x)
        self._x, self.loss = None, 0.0
        if training and (self.l1 or self.l2):
            l1, l2, n = self._coefficients(x)
            self._x = x
            self.loss = (l1 * np.abs(x).sum() + l2 * np.square(x).sum()) / n
        return x

    def _coefficients(self, x):
        """(l1, l2, batch size) in the compute dtype. Keras's ``ops.cast(self.l1, dtype)`` converts the
        Python float to a float32 tensor first, so even a float64 penalty uses float32-rounded l1, l2."""
        t = self.dtype.type
        return t(np.float32(self.l1)), t(np.float32(self.l2)), t(max(1, x.shape[0]) if x.ndim else 1)

    def backward(self, dout):
        dout = self.cast(dout)
        if self._x is None:
            return dout
        x = self._x
        l1, l2, n = self._coefficients(x)
        return (dout + (l1 * np.sign(x) + 2 * l2 * x) / n).astype(self.dtype)


def _penalty(name, value):
    value = 0.0 if value is None else value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isinf(value) or math.isnan(value) \
            or value < 0:
        raise LayerError(f"Invalid value for argument {name}: expected a non-negative float. Received: {name}={value}")
    return float(value)
