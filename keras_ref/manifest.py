"""weights/MANIFEST.json: what every exported file is, where it came from, and its checksum.

Schema (``schema_version`` 1)::

    {
      "schema_version": 1,
      "updated": "2025-01-01T00:00:00Z",              # last write, UTC
      "versions": {"python", "numpy", "tensorflow", "keras", "tf_keras", "h5py", "scikit-learn", "nltk"},
      "environment": {"TF_ENABLE_ONEDNN_OPTS": "<value or 'unset' (TF default: on)>", "cpu_count": 2},
      "last_run": {"models": [...], "wall_seconds": float, "command": "python -m keras_ref.export ..."},
      "files": {"<file name>": {"sha256": "<hex>", "size": <bytes>}},   # every file a model lists
      "models": {
        "<model name>": {
          "task": "classification" | "captioning",
          "family": "cnn_grid" | "lc2d_twin" | "captioner",
          "framework": "keras" (Keras 3) | "tf_keras",
          "files": {role: file name},
              # classifiers: "h5" (legacy full model) and, for Keras 3, "keras" (.keras zip)
              # captioners: "h5" (teacher-forced training model, the one weights file),
              #   "encoder_json", "step_json" (inference graphs, model.to_json(): their layers are
              #   the training model's and take its weights by layer name), "vocab"
          "dataset": {"name", "loader", "kwargs", "split": "test", "seed", "n",
                      "ids_sha256",      # keras_ref.data.ids_sha256 of the ordered test ids
                      "x_sha256"},       # keras_ref.data.array_sha256 of the test inputs (float32)
          "hyper_parameters": {...},     # builder arguments and training settings
          "params": int,                 # Keras count_params() of the training model
          "train_seconds": float,        # wall time of model.fit (captioners: + "encoder_pretrain_seconds")
          "epochs": int,                 # epochs run (early stopping restores the best weights)
          "history": {"loss": [...], "val_loss": [...], ...},   # per epoch, as Keras logged it
          "metrics": {...},              # Keras on the test split. classifiers: macro_f1, accuracy,
                                         # val_macro_f1; captioners: bleu1..bleu4 (greedy decoding)
          "keras_inference": "model(x, training=False), batches of 256",
          "samples": [{"id", "generated", "references"}],        # captioners: two test images
          ...                            # family extras, e.g. lc2d_twin: twin_of, conv_twin_params
        }
      }
    }

Every write goes to a temporary file in the same folder and is moved into place with ``os.replace``,
so a reader never sees a half-written model or manifest. Models are saved without optimizer state.
"""

import datetime
import hashlib
import json
import os
import platform
import tempfile
from pathlib import Path

from keras_ref.vocab import write_json_atomic

SCHEMA_VERSION = 1
MANIFEST_NAME = "MANIFEST.json"


def sha256_file(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def file_entry(path):
    return {"sha256": sha256_file(path), "size": os.path.getsize(path)}


def save_atomic(path, save):
    """Call ``save(tmp_path)`` on a temp path with the same suffix, then move it over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.stem}-", suffix="".join(path.suffixes[-1:]), dir=path.parent)
    os.close(fd)
    os.remove(tmp)  # Keras refuses to overwrite without asking in some versions; let it create the file
    try:
        save(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def versions():
    import h5py
    import keras
    import nltk
    import numpy
    import sklearn
    import tensorflow
    import tf_keras

    return {"python": platform.python_version(), "numpy": numpy.__version__, "tensorflow": tensorflow.__version__,
            "keras": keras.__version__, "tf_keras": tf_keras.__version__, "h5py": h5py.__version__,
            "scikit-learn": sklearn.__version__, "nltk": nltk.__version__}


def load(weights_dir):
    path = Path(weights_dir) / MANIFEST_NAME
    if not path.is_file():
        return {"schema_version": SCHEMA_VERSION, "models": {}, "files": {}}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def update(weights_dir, entries, last_run):
    """Merge model ``entries`` into the manifest, re-checksum every listed file, write atomically."""
    weights_dir = Path(weights_dir)
    manifest = load(weights_dir)
    models = dict(manifest.get("models", {}))
    models.update(entries)
    files = {}
    for entry in models.values():
        for name in entry["files"].values():
            path = weights_dir / name
            if path.is_file():
                files[name] = file_entry(path)
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "updated": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "versions": versions(),
        "environment": {"TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset"),
                        "cpu_count": os.cpu_count()},
        "last_run": last_run,
        "files": dict(sorted(files.items())),
        "models": models,
    }
    write_json_atomic(weights_dir / MANIFEST_NAME, manifest)
    return manifest


def verify(weights_dir):
    """Problems found (empty when sound): missing files, size or sha256 mismatches, unlisted model files."""
    weights_dir = Path(weights_dir)
    manifest = load(weights_dir)
    problems = []
    listed = set()
    for model, entry in manifest.get("models", {}).items():
        for role, name in entry["files"].items():
            listed.add(name)
            if name not in manifest["files"]:
                problems.append(f"{model}: {role} file {name} has no checksum entry")
    for name, info in manifest.get("files", {}).items():
        path = weights_dir / name
        if not path.is_file():
            problems.append(f"{name}: missing")
            continue
        if os.path.getsize(path) != info["size"]:
            problems.append(f"{name}: size {os.path.getsize(path)} != {info['size']}")
        elif sha256_file(path) != info["sha256"]:
            problems.append(f"{name}: sha256 mismatch")
        if name not in listed:
            problems.append(f"{name}: checksummed but no model lists it")
    for path in sorted(weights_dir.iterdir()) if weights_dir.is_dir() else []:
        if path.suffix in (".h5", ".keras", ".json") and path.name not in (*manifest.get("files", {}), MANIFEST_NAME):
            problems.append(f"{path.name}: model file not in the manifest")
    return problems
