"""Embedded datasets, regenerable bit-identically anywhere: scikit-learn's digits and "digit scenes".

Determinism is the point of this module: the parity suite regenerates the test split from here instead
of storing images, so every number comes from the deterministic primitives of ``keras_ref.digits``
(the bundled digits, a portable bilinear resize, a stratified split).

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

from keras_ref.digits import raw_digits, resize_bilinear, stratified_split
from keras_ref.scenes import load_digit_scenes  # noqa: F401 - the MANIFEST names it keras_ref.data.load_digit_scenes


def ids_sha256(ids):
    """sha256 hex digest of the ids in order: ``"\\n".join(str(i) for i in ids)`` as UTF-8."""
    return hashlib.sha256("\n".join(str(i) for i in ids).encode("utf-8")).hexdigest()


def array_sha256(x):
    """sha256 hex digest of an array's dtype, shape and C-ordered bytes."""
    x = np.ascontiguousarray(x)
    digest = hashlib.sha256(f"{x.dtype.str}{tuple(x.shape)}".encode("ascii"))
    digest.update(x.tobytes())
    return digest.hexdigest()


def load_digits_split(size=32, seed=0, fractions=(0.6, 0.2, 0.2)):
    """scikit-learn digits resized to ``size``: ``{split: (x float32 (n,size,size,1), y, ids)}``."""
    if int(size) < 1:
        raise ValueError(f"size must be a positive int. Received: size={size!r}")
    images, labels = raw_digits()
    x = resize_bilinear(images, size, size).astype(np.float32)[..., None]
    split = stratified_split(labels, seed=seed, fractions=fractions)
    return {s: (x[ids], labels[ids], ids) for s, ids in split.items()}
