"""The bundled handwritten digits and the deterministic primitives every embedded dataset is built
from: a portable bilinear resize and a stratified train/val/test split.

Every number here comes from integer-seeded NumPy ``Generator`` draws and element-wise IEEE
arithmetic (no BLAS, no image library whose resampling may change between versions), so
``keras_ref.data`` and ``keras_ref.scenes`` regenerate their splits bit-identically anywhere.
"""

import numpy as np

SPLITS = ("train", "val", "test")
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _bilinear_axis(a, out_n, axis):
    """Resample one axis with half-pixel centers (the convention of PIL and tf.image, no antialiasing)."""
    n = a.shape[axis]
    src = (np.arange(out_n, dtype=np.float64) + 0.5) * (n / out_n) - 0.5
    src = np.clip(src, 0.0, n - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    w = src - lo
    shape = [1] * a.ndim
    shape[axis] = out_n
    w = w.reshape(shape)
    # Two products and a sum, each rounded once: the same bits on every IEEE machine (no fused ops).
    return np.take(a, lo, axis=axis) * (1.0 - w) + np.take(a, hi, axis=axis) * w


def resize_bilinear(images, out_h, out_w):
    """Bilinear resize of the last two axes (H, W) in float64; deterministic across machines."""
    a = np.asarray(images, dtype=np.float64)
    return _bilinear_axis(_bilinear_axis(a, out_h, a.ndim - 2), out_w, a.ndim - 1)


def raw_digits():
    """The bundled digits as (images float64 (1797, 8, 8) in [0, 1], labels int64)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images / 16.0, bunch.target.astype(np.int64)


def stratified_split(labels, seed=0, fractions=(0.6, 0.2, 0.2)):
    """Per-class shuffled split of indices into train/val/test, each sorted ascending.

    Within every class the val and test counts are ``round(n_class * fraction)`` and train takes
    the rest, so every split holds every class in (almost exactly) the overall proportions.
    """
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-9 or min(fractions) < 0:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1. Received: fractions={fractions}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts = {s: [] for s in SPLITS}
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = int(round(len(idx) * fractions[1]))
        n_test = int(round(len(idx) * fractions[2]))
        parts["test"].append(idx[:n_test])
        parts["val"].append(idx[n_test:n_test + n_val])
        parts["train"].append(idx[n_test + n_val:])
    return {s: np.sort(np.concatenate(parts[s])).astype(np.int64) for s in SPLITS}
