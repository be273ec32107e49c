"""The activation functions Keras 3 serializes, each with its derivative, as TensorFlow computes them.

Every function here is a pair ``f(x) -> y`` and ``df(x, y, dy) -> dx``; ``activations.py`` names
them. Both are written in the input's dtype: Python constants stay weak scalars, as Keras's
Python constants become tensors of x's dtype. Where the TensorFlow op rounds a constant to
float32 even in float64 (``tf.nn.leaky_relu``'s ``alpha`` attribute, gelu's 1/sqrt(2)), so do we.

At a kink the derivative is a convention; each one takes what ``tf.GradientTape`` returns there:
- ``tf.nn.relu``/``relu6`` gradients pass only strictly inside (0 at x = 0, and at 6 for relu6);
- ``tf.clip_by_value`` passes the gradient at its bounds (hard_tanh is 1 at +-1);
- ``tf.maximum``/``tf.minimum`` send a tie's gradient to both sides, so celu's slope at 0 is 2;
- ``tf.where`` sends the gradient to the branch it picked: every ``where(x > t, ...)`` has the
  other branch's slope at ``x == t`` (soft_shrink and hard_shrink 0 at +-0.5, sparse_plus 1 at 1
  and 0 at -1, sparse_sigmoid 0 at +-1, leaky_relu ``negative_slope`` at 0);
- elu is 1 at 0 (EluGrad's ``y + 1``), selu its scale (SeluGrad takes the right branch).

sparsemax is Keras 3.15's TensorFlow formula, which is *not* the published sparsemax: its
threshold is ``tau = (sum of the cumulative sums inside the support - 1) / k`` instead of
``(cumsum[k-1] - 1) / k``, so its outputs need not sum to 1. Scratch matches Keras, and the
gradient is that formula's autodiff (the sort and the support are piecewise constant).
"""

import math

import numpy as np

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946

# NumPy has no erfc; math.erfc is exact, and gelu is never on a hot conv path.
_erfc = np.vectorize(math.erfc, otypes=[np.float64])
# tf.nn.gelu builds 1/sqrt(2) through a float32 tensor, also in float64.
_GELU_C = float(np.float32(1.0 / math.sqrt(2.0)))


# ---- logistic family ----------------------------------------------------------------------------
def sigmoid(x):
    # 1 / (1 + exp(-x)) in place on one array. For x < -88 (float32) exp overflows to inf and the
    # result is 0 where the true value is below 1e-38: an absolute error under the smallest normal.
    # (A sign-split version with boolean indexing was 69% of EfficientNetB0's time.)
    out = np.negative(np.asarray(x))
    with np.errstate(over="ignore"):
        np.exp(out, out=out)
    out += 1
    return np.reciprocal(out, out=out)


def softplus(x):
    # log(1 + exp(x)) without overflow; TF's kernel agrees to rounding (it switches to x / exp(x)
    # where the other term is below machine epsilon).
    return np.logaddexp(x, 0.0).astype(x.dtype)


def log_sigmoid(x):
    return -softplus(-x)


def silu(x):
    return x * sigmoid(x)


def silu_backward(x, y, dy):
    s = sigmoid(x)
    return dy * (s * (1.0 + x * (1.0 - s)))


def mish(x):
    return x * np.tanh(softplus(x))


def mish_backward(x, y, dy):
    t = np.tanh(softplus(x))
    return dy * (t + x * (1.0 - t * t) * sigmoid(x))


def gelu(x):
    """Keras's exact gelu (approximate=False): ``0.5 * x * erfc(-x / sqrt(2))``."""
    return (0.5 * x * _erfc(-x * _GELU_C)).astype(x.dtype)


def gelu_backward(x, y, dy):
    cdf = 0.5 * _erfc(-x * _GELU_C)
    pdf = np.exp(-np.square(x * _GELU_C)) * (_GELU_C / math.sqrt(math.pi))
    return (dy * (cdf + x * pdf)).astype(x.dtype)


def glu(x, axis=-1):
    """``a * sigmoid(b)`` where ``a, b`` are the two halves of ``x`` along ``axis`` (halves it)."""
    a, b = np.split(x, 2, axis=axis)
    return a * sigmoid(b)


def glu_backward(x, y, dy, axis=-1):
    a, b = np.split(x, 2, axis=axis)
    s = sigmoid(b)
    return np.concatenate([dy * s, dy * a * s * (1.0 - s)], axis=axis)


# ---- exponential-linear family ------------------------------------------------------------------
def elu(x, alpha=1.0):
    """``x`` for x > 0, ``alpha * (exp(x) - 1)`` otherwise (TF multiplies tf.nn.elu by alpha)."""
    e = np.expm1(np.minimum(x, 0))
    return np.where(x > 0, x, e if alpha == 1.0 else alpha * e).astype(x.dtype)


def elu_backward(x, y, dy, alpha=1.0):
    # EluGrad's (y + 1) on the unscaled branch; at 0 that is 1, times alpha when alpha != 1.
    unscaled = np.expm1(np.minimum(x, 0)) + 1.0
    return (dy * np.where(x > 0, 1.0, unscaled if alpha == 1.0 else alpha * unscaled)).astype(x.dtype)


def selu(x):
    return SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0)))


def selu_backward(x, y, dy):
    return dy * np.where(x < 0, y + SELU_SCALE * SELU_ALPHA, SELU_SCALE)


def celu(x, alpha=1.0):
    return np.maximum(x, 0.0) + alpha * np.expm1(np.minimum(x, 0.0) / alpha)


def celu_backward(x, y, dy, alpha=1.0):
    # tf.maximum and tf.minimum both pass a tie's gradient: slope 1 + 1 at x = 0.
    return dy * ((x >= 0) + np.exp(np.minimum(x, 0.0) / alpha) * (x <= 0))


# ---- piecewise-linear family --------------------------------------------------------------------
def hard_sigmoid(x):
    """Keras 3's ``relu6(x + 3) / 6``."""
    return np.clip(x + 3.0, 0.0, 6.0) / 6.0


def hard_sigmoid_backward(x, y, dy):
    shifted = x + 3.0   # tested as relu6 tests it, after the rounding of x + 3
    return dy * ((shifted > 0.0) & (shifted < 6.0)) / 6.0


def hard_sigmoid_tf_keras(x):
    """tf_keras's ``clip(0.2 x + 0.5, 0, 1)``."""
    return np.clip(0.2 * x + 0.5, 0.0, 1.0)


def hard_sigmoid_tf_keras_backward(x, y, dy):
    z = 0.2 * x + 0.5
    return dy * ((z >= 0.0) & (z <= 1.0)) * 0.2


def hard_silu(x):
    return x * hard_sigmoid(x)


def hard_silu_backward(x, y, dy):
    return dy * hard_sigmoid(x) + x * hard_sigmoid_backward(x, None, dy)


def sparse_plus(x):
    return np.where(x <= -1.0, 0.0, np.where(x < 1.0, 0.25 * np.square(x + 1.0), x)).astype(x.dtype)


def sparse_plus_backward(x, y, dy):
    return dy * np.where(x <= -1.0, 0.0, np.where(x < 1.0, 0.5 * (x + 1.0), 1.0)).astype(x.dtype)


def sparse_sigmoid(x):
    return np.where(x <= -1.0, 0.0, np.where(x >= 1.0, 1.0, 0.5 * (x + 1.0))).astype(x.dtype)


def sparse_sigmoid_backward(x, y, dy):
    return dy * ((x > -1.0) & (x < 1.0)) * 0.5


def soft_shrink(x, threshold=0.5):
    return np.where(x > threshold, x - threshold, np.where(x < -threshold, x + threshold, 0.0)).astype(x.dtype)


def soft_shrink_backward(x, y, dy, threshold=0.5):
    return dy * ((x > threshold) | (x < -threshold))


def hard_shrink(x, threshold=0.5):
    return np.where(np.abs(x) > threshold, x, 0.0).astype(x.dtype)


def hard_shrink_backward(x, y, dy, threshold=0.5):
    return dy * (np.abs(x) > threshold)


def leaky_relu(x, negative_slope=0.2):
    """``tf.nn.leaky_relu``: its ``alpha`` is a float32 attribute, so the slope is float32-rounded."""
    slope = float(np.float32(negative_slope))
    return np.where(x > 0, x, slope * x).astype(x.dtype)


def leaky_relu_backward(x, y, dy, negative_slope=0.2):
    return (dy * np.where(x > 0, 1.0, float(np.float32(negative_slope)))).astype(x.dtype)


class ParametricReLU:
    """Keras 3's generalized ReLU (``keras.activations.relu``, the ``ReLU`` layer)::

        y = min(x if x > threshold else 0, max_value) - negative_slope * max(threshold - x, 0)

    As in Keras's TensorFlow backend, some constants are rounded to float32 even in float64: the
    ``x > threshold`` test and the ``max_value`` cap (``ops.cast`` of a Python float goes through
    a float32 tensor), and ``negative_slope`` when Keras takes its ``tf.nn.leaky_relu`` shortcut
    (no max_value, threshold 0). The negative part otherwise uses the exact threshold and slope.
    Slope at the kinks: 0 at ``x == threshold`` (plus negative_slope strictly below it; on the
    leaky_relu shortcut negative_slope at x == 0, as LeakyReluGrad gives), 0 at the
    cap (relu6 and ``clip`` alike drop the gradient where ``x >= max_value``).
    """

    def __init__(self, negative_slope=0.0, max_value=None, threshold=0.0):
        self.negative_slope = float(negative_slope)
        self.max_value = None if max_value is None else float(max_value)
        self.threshold = float(threshold)
        self._cut = float(np.float32(self.threshold))
        self._cap = None if max_value is None else float(np.float32(self.max_value))
        leaky = self._leaky = max_value is None and self.threshold == 0.0
        self._slope = float(np.float32(self.negative_slope)) if leaky else self.negative_slope

    def forward(self, x):
        zero = x.dtype.type(0)
        # The plain relu is one np.maximum pass (it was a third of the CNN grid's time as np.where).
        y = np.maximum(x, zero) if self._cut == 0.0 else np.where(x > self._cut, x, zero)
        if self._cap is not None:
            np.minimum(y, x.dtype.type(self._cap), out=y)
        if self.negative_slope != 0.0:
            y = y - self._slope * np.maximum(self.threshold - x, 0)
        return y.astype(x.dtype, copy=False)

    def backward(self, x, y, dy):
        slope = x > self._cut
        if self._cap is not None:
            slope &= x < self._cap
        if self.negative_slope == 0.0:
            return np.where(slope, dy, x.dtype.type(0)).astype(x.dtype, copy=False)
        if self._leaky:   # tf.nn.leaky_relu's grad: alpha at x == 0 itself
            grad = np.where(x > 0, x.dtype.type(1), x.dtype.type(self._slope))
        else:
            grad = slope.astype(x.dtype) + self._slope * (x < self.threshold)
        return (dy * grad).astype(x.dtype, copy=False)


# ---- softmax family (over an axis) --------------------------------------------------------------
def softmax(x, axis=-1):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def softmax_backward(y, dy, axis=-1):
    return y * (dy - np.sum(dy * y, axis=axis, keepdims=True))


def log_softmax(x, axis=-1):
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def log_softmax_backward(x, y, dy, axis=-1):
    return dy - np.exp(y) * np.sum(dy, axis=axis, keepdims=True)


def _sparsemax_parts(x):
    """Keras's sparsemax over the last axis: (x - tau, support in sorted order, k, the sort order)."""
    order = np.argsort(-x, axis=-1, kind="stable")    # tf.sort DESCENDING is a stable top_k
    ranked = np.take_along_axis(x, order, axis=-1)
    cumsum = np.cumsum(ranked, axis=-1)
    r = np.arange(1, x.shape[-1] + 1, dtype=x.dtype)
    support = ranked - (cumsum - 1.0) / r > 0
    k = np.sum(support, axis=-1, keepdims=True).astype(x.dtype)
    tau = (np.sum(np.where(support, cumsum, 0.0), axis=-1, keepdims=True) - 1.0) / k
    return (x - tau).astype(x.dtype), support, k, order


def sparsemax(x):
    return np.maximum(_sparsemax_parts(x)[0], 0.0)


def sparsemax_backward(x, y, dy):
    shifted, support, k, order = _sparsemax_parts(x)
    passes = shifted >= 0   # tf.maximum(x - tau, 0) passes a tie's gradient too
    # tau = (sum_j [j in S] cumsum_j - 1) / k, so d tau / d ranked_i = #{j in S: j >= i} / k.
    dtau_dranked = np.cumsum(support[..., ::-1], axis=-1)[..., ::-1] / k
    dtau = np.sum(dy * passes, axis=-1, keepdims=True)
    dranked = -dtau * dtau_dranked
    unsorted = np.zeros_like(dranked)
    np.put_along_axis(unsorted, order, dranked, axis=-1)
    return (dy * passes + unsorted).astype(x.dtype)
