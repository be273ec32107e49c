"""The report's figures, content-addressed: a figure whose inputs are those of a figure drawn before is
copied instead of drawn again (matplotlib is a good part of a warm ``parity run``).

The key is the sha256 of the plot function's name and every argument's value (arrays by dtype,
shape and bytes; floats by their exact repr), the source of ``parity.plots`` and matplotlib's
version: the same key means the same pixels, so a reused PNG cannot be stale. Arguments of any
other type are not fingerprinted: the figure is then drawn as before. The copies live in
``<report folder>/.plot-cache/`` beside the Keras cache (``.keras-cache/``), both under the
gitignored ``reports/``. A missing or unreadable copy is drawn again.
"""

import functools
import hashlib
import inspect
import json
import os
import shutil
import tempfile

import numpy as np

from . import plots

FOLDER = ".plot-cache"


class _Unkeyable(TypeError):
    pass


def _feed(h, x):
    if isinstance(x, np.ndarray):
        a = np.ascontiguousarray(x)
        h.update(f"array{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes() if a.dtype.kind != "O" else _text(a.tolist()).encode())
    elif isinstance(x, dict):
        h.update(f"dict{len(x)}".encode())
        for k in sorted(x, key=repr):
            _feed(h, k)
            _feed(h, x[k])
    elif isinstance(x, (list, tuple)):
        h.update(f"{type(x).__name__}{len(x)}".encode())
        for v in x:
            _feed(h, v)
    elif x is None or isinstance(x, (bool, int, float, str, np.generic)):
        h.update(f"{type(x).__name__}:{x!r};".encode())
    else:
        raise _Unkeyable(type(x).__name__)


def _text(x):
    return json.dumps(x, default=repr)


@functools.lru_cache(maxsize=1)
def _stack():
    try:
        import matplotlib

        version = matplotlib.__version__
    except ImportError:
        version = None
    return hashlib.sha256(inspect.getsource(plots).encode()).hexdigest(), version


def fingerprint(name, args, kwargs):
    h = hashlib.sha256()
    _feed(h, [name, list(_stack()), list(args), kwargs])
    return h.hexdigest()


def cached(fn):
    """``fn(path, *args, **kwargs)`` drawing a PNG at ``path`` (returning whether it drew one), cached."""
    @functools.wraps(fn)
    def draw(path, *args, **kwargs):
        try:
            key = fingerprint(fn.__name__, args, kwargs)
        except _Unkeyable:
            return fn(path, *args, **kwargs)
        folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(path))), FOLDER)
        png, meta = os.path.join(folder, key + ".png"), os.path.join(folder, key + ".json")
        try:
            with open(meta, encoding="utf-8") as f:
                drew = json.load(f)["returned"]
            if drew is not False:
                shutil.copyfile(png, path)
            return drew
        except (OSError, ValueError, KeyError, TypeError):
            pass
        drew = fn(path, *args, **kwargs)
        if drew is not False and not os.path.exists(path):
            return drew
        os.makedirs(folder, exist_ok=True)
        if drew is not False:
            _copy_atomic(path, png)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"returned": drew if isinstance(drew, (bool, type(None))) else bool(drew)}, f)
        os.replace(tmp, meta)   # written last: a figure counts as cached only once its PNG is in place
        return drew
    return draw


def _copy_atomic(src, dst):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dst), prefix=".tmp-", suffix=".png")
    os.close(fd)
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
