"""The gate in front of Keras: Keras only ever loads a private copy of a file the engine has cleared.

Keras picks its loader by file name, and tf_keras's legacy ``.h5`` loader runs Lambda bytecode, so
Keras must only see bytes the engine has read and cleared. ``parity.keras_runner.load_model`` (the
CLI's and the suite's only way into Keras) calls ``clear_for_keras`` first.
"""

import shutil
import tempfile
import zipfile
from pathlib import Path

import h5py

from ..errors import ModelFileError, ScratchError
from ..models.from_config import DEFAULT_MAX_BYTES
from .io import _sniff, load


def clear_for_keras(path, config=None, max_bytes=DEFAULT_MAX_BYTES, folder=None):
    """A private copy of a model file (and config) that the engine has fully loaded, for Keras.

    Keras picks its loader by file name and tf_keras's legacy loader runs Lambda bytecode, so Keras
    must only see bytes the engine has read and cleared: the file is copied first (a later change
    to the original cannot reach Keras), the copy is loaded here (which refuses code anywhere in
    the config), and it is named by the format its bytes have (``.h5`` or ``.keras``). A file that
    is both an HDF5 file and a zip archive (a polyglot, which each library would read differently)
    is refused. Returns ``(model_path, config_path_or_None, kind)`` inside ``folder``.
    """
    folder = Path(folder or tempfile.mkdtemp(prefix="parity-cleared-"))
    folder.mkdir(parents=True, exist_ok=True)
    kind = _sniff(Path(path))
    name = "model.keras" if kind == "zip" else "model.h5"
    if config is not None and str(path).endswith(".weights.h5"):   # Keras 3 picks its weights reader by name
        name = "model.weights.h5"
    copy = folder / name
    shutil.copyfile(path, copy)
    cfg_copy = None
    if config is not None:
        cfg_copy = folder / "config.json"
        shutil.copyfile(config, cfg_copy)
    if _sniff(copy) != kind:
        raise ModelFileError(f"{path}: the file changed while it was being checked")
    other = zipfile.is_zipfile(copy) if kind == "hdf5" else h5py.is_hdf5(str(copy))
    if other:
        raise ModelFileError(f"{path}: the file is both an HDF5 file and a zip archive; refusing an ambiguous file")
    try:
        load(copy, config=cfg_copy, max_bytes=max_bytes)
    except ScratchError as exc:   # name the user's files, not the private copies
        _rename(exc, {str(copy): str(path), **({str(cfg_copy): str(config)} if cfg_copy else {})})
        raise
    return copy, cfg_copy, kind


def _rename(exc, names):
    def fix(text):
        for old, new in names.items():
            text = text.replace(old, new)
        return text
    exc.args = tuple(fix(a) if isinstance(a, str) else a for a in exc.args)
    if getattr(exc, "source", None):
        exc.source = fix(str(exc.source))
