"""Embedded datasets, regenerable bit-identically anywhere: scikit-learn's digits and "digit scenes".

Determinism is the point of this module: the parity suite regenerates the test split from here instead
of storing images, so every number must come from integer-seeded NumPy ``Generator`` draws and
element-wise IEEE arithmetic (no BLAS, no image library whose resampling may change between versions).

- ``load_digits_split(size=32, seed=0)``: the 1797 real 8x8 handwritten digits bundled with scikit-learn,
  bilinearly resized to ``size x size``, split 60/20/20 per class (stratified) into train/val/test.
  Returns ``{"train": (x, y, ids), "val": ..., "test": ...}``; ``x`` is float32 (n, size, size, 1) in
  [0, 1], ``y`` int64 labels, ``ids`` int64 indices into ``load_digits()``, ascending within a split.
- ``load_digit_scenes(...)`` (defined in ``keras_ref.scenes``, re-exported here): RGB canvases holding
  1-3 colored digits with 5 reference captions each.
- ``ids_sha256(ids)``: the fingerprint the MANIFEST stores for "same samples, same order":
  sha256 of ``"\\n".join(str(i) for i in ids)`` encoded as UTF-8.
- ``array_sha256(x)``: sha256 of ``f"{dtype.str}{shape}"`` followed by the C-ordered bytes.
"""

import hashlib

import numpy as np

SPLITS = ("train", "val", "test")
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def ids_sha256(ids):
    """sha256 hex digest of the ids in order: ``"\\n".join(str(i) for i in ids)`` as UTF-8."""
    return hashlib.sha256("\n".join(str(i) for i in ids).encode("utf-8")).hexdigest()


def array_sha256(x):
    """sha256 hex digest of an array's dtype, shape and C-ordered bytes."""
    x = np.ascontiguousarray(x)
    digest = hashlib.sha256(f"{x.dtype.str}{tuple(x.shape)}".encode("ascii"))
    digest.update(x.tobytes())
    return digest.hexdigest()


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


def load_digits_split(size=32, seed=0, fractions=(0.6, 0.2, 0.2)):
    """scikit-learn digits resized to ``size``: ``{split: (x float32 (n,size,size,1), y, ids)}``."""
    if int(size) < 1:
        raise ValueError(f"size must be a positive int. Received: size={size!r}")
    images, labels = raw_digits()
    x = resize_bilinear(images, size, size).astype(np.float32)[..., None]
    split = stratified_split(labels, seed=seed, fractions=fractions)
    return {s: (x[ids], labels[ids], ids) for s, ids in split.items()}


def load_digit_scenes(*args, **kwargs):
    """Digit scenes for captioning; see ``keras_ref.scenes.load_digit_scenes``."""
    from keras_ref.scenes import load_digit_scenes as _load

    return _load(*args, **kwargs)
