"""A cache of Keras's reference outputs for ``parity run``, so that a second run waits for scratch only.

An entry is keyed by everything its numbers depend on: the sha256 of the model file, a fingerprint
of the inputs (the test split's pixels and ids, the trace sample count), the stack's versions
(TensorFlow, Keras, tf_keras, NumPy, whether oneDNN was on) and the parity version. Change any of
them and the key changes, so a stale entry is never read; ``--no-cache`` skips the cache.

Entries are ``.npz`` files read with ``allow_pickle=False`` (the cache never unpickles anything) and
written atomically, mode 0644. Each holds named arrays, one JSON document (``__meta__``) and the
text its key was hashed from (``__key__``), compared on every read: an entry copied or renamed onto
another key's file is a miss. A file that cannot be read back whole (truncated, a flipped bit the
zip CRC catches, not a zip at all) is a miss too: the caller recomputes and overwrites it.
"""

import hashlib
import json
import os
import tempfile
import zipfile
import zlib

import numpy as np

from . import __version__
from .report import to_json

META = "__meta__"
KEY = "__key__"


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def array_fingerprint(*arrays):
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def ids_fingerprint(ids):
    """sha256 of the sample ids in order (ints and strings alike, as their text)."""
    return hashlib.sha256(json.dumps([str(i) for i in ids]).encode()).hexdigest()


class KerasCache:
    """``get(parts)`` / ``put(parts, arrays, meta)``; ``parts`` is a JSON-able description of the entry."""

    def __init__(self, folder, environment, enabled=True):
        self.folder, self.enabled = folder, enabled
        self.stack = {k: environment.get(k) for k in ("tensorflow", "keras", "tf_keras", "numpy", "onednn_enabled")}
        self.stack["parity"] = __version__

    def _text(self, parts):
        return json.dumps({"entry": parts, "stack": self.stack}, sort_keys=True, default=str)

    def key(self, parts):
        return hashlib.sha256(self._text(parts).encode()).hexdigest()

    def _path(self, parts):
        return os.path.join(self.folder, self.key(parts) + ".npz")

    def get(self, parts):
        """``(arrays, meta)`` or None when absent, disabled, or unreadable (then it is recomputed)."""
        if not self.enabled:
            return None
        try:
            with np.load(self._path(parts), allow_pickle=False) as data:
                if bytes(data[KEY]).decode("utf-8") != self._text(parts):
                    return None
                arrays = {k: data[k] for k in data.files if k not in (META, KEY)}
                meta = json.loads(bytes(data[META]).decode("utf-8"))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error):
            return None
        return arrays, meta

    def put(self, parts, arrays, meta):
        if not self.enabled:
            return
        os.makedirs(self.folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-", suffix=".npz")
        payload = {k: np.asarray(v) for k, v in arrays.items()}
        payload[META] = np.frombuffer(to_json(meta).encode("utf-8"), dtype=np.uint8)
        payload[KEY] = np.frombuffer(self._text(parts).encode("utf-8"), dtype=np.uint8)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **payload)
        os.chmod(tmp, 0o644)
        os.replace(tmp, self._path(parts))

