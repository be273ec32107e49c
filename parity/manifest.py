"""The parity suite's read-only view of ``weights/MANIFEST.json``: models, their files, checksums and
recorded Keras metrics (the schema is documented where it is written, ``keras_ref.manifest``)."""

import json
import os

from keras_ref.manifest import sha256_file

from . import compare as cmp


class ManifestError(ValueError):
    """weights/MANIFEST.json is missing, unreadable, or lacks what the suite needs."""


class Manifest:
    """Read-only view of weights/MANIFEST.json (schema: the keras_ref module that writes it)."""

    def __init__(self, path, raw):
        self.path, self.raw = path, raw
        self.folder = os.path.dirname(os.path.abspath(path))

    @classmethod
    def load(cls, weights_dir):
        path = os.path.join(weights_dir, "MANIFEST.json")
        if not os.path.exists(path):
            raise ManifestError(f"{path}: no such file (run `make weights` to train and export the models)")
        try:
            with open(path, encoding="utf-8") as f:
                raw = json.load(f)
        except (OSError, ValueError) as exc:
            raise ManifestError(f"{path}: cannot read: {exc}") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("models"), dict) or not raw["models"]:
            raise ManifestError(f"{path}: no 'models' in the MANIFEST")
        return cls(path, raw)

    def names(self):
        return list(self.raw["models"])

    def entry(self, name):
        return Entry(self, name, self.raw["models"][name])


class Entry:
    """One model of the MANIFEST: its files, dataset, recorded Keras metrics and history.

    File roles: classifiers ``h5`` (+ ``keras``); captioners ``h5`` (teacher-forced training
    model), ``encoder_json`` and ``step_json`` (inference graphs whose weights are the training
    model's, by layer name) and ``vocab``.
    """

    ROLES = {"train": "h5", "encoder": "encoder_json", "step": "step_json", "vocab": "vocab"}
    GRAPHS = ("encoder", "step")

    def __init__(self, manifest, name, raw):
        self.manifest, self.name, self.raw = manifest, name, raw
        self.kind = "captioner" if raw.get("task") == "captioning" else "classifier"
        self.dataset = raw.get("dataset", {})

    def _path(self, rel):
        return os.path.join(self.manifest.folder, rel)

    def _role(self, part):
        return self.ROLES.get(part, part) if self.kind == "captioner" else part

    def has_file(self, part):
        return self._role(part) in self.raw.get("files", {})

    def file(self, part):
        if not self.has_file(part):
            raise ManifestError(f"{self.name}: the MANIFEST lists no '{self._role(part)}' file")
        return self._path(self.raw["files"][self._role(part)])

    def source(self, part):
        """``(path, config)`` of a model, as ``scratch.load`` and ``keras_runner.load_model`` take it."""
        if self.kind == "captioner" and part in self.GRAPHS:
            return self.file("train"), self.file(part)
        return self.file(part), None

    def model_file(self):
        return self.file("h5") if self.has_file("h5") else self.file("keras")

    def other_model_files(self):
        return [self.file("keras")] if self.has_file("h5") and self.has_file("keras") else []

    def vocab(self):
        with open(self.file("vocab"), encoding="utf-8") as f:
            return json.load(f)

    def keras_metric(self, key):
        value = self.raw.get("metrics", {}).get(key)
        return float(value) if isinstance(value, (int, float)) else None

    def verify_checksums(self):
        """Problems with this model's files against the MANIFEST's sha256 and size (empty when sound)."""
        bad, listed = [], self.manifest.raw.get("files", {})
        for role, rel in self.raw.get("files", {}).items():
            want = listed.get(rel)
            path = self._path(rel)
            if want is None:
                bad.append(f"{rel}: no checksum in the MANIFEST")
            elif not os.path.exists(path):
                bad.append(f"{rel}: missing")
            elif os.path.getsize(path) != want["size"]:
                bad.append(f"{rel}: size {os.path.getsize(path)} != MANIFEST {want['size']}")
            elif sha256_file(path) != want["sha256"]:
                bad.append(f"{rel}: sha256 differs from the MANIFEST")
        return bad

    def check_ids(self, data, out, *, full=True):
        """The regenerated split must be the one the MANIFEST's Keras metrics were computed on:
        same ids in the same order, and the same input bytes."""
        from keras_ref.data import array_sha256, ids_sha256

        got = dict(ids_sha256=ids_sha256(data["ids"]), x_sha256=array_sha256(data["x"]))
        out["dataset_fingerprint"] = got
        for key, value in got.items():
            want = self.dataset.get(key)
            if want and full and value != want:
                raise cmp.SampleOrderError(f"{self.name}: test split {key} {value[:12]}... differs from the "
                                           f"MANIFEST's {want[:12]}... (different samples, order or pixels)")
