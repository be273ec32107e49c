"""What the command line's subcommands share: the exit-2 error, reading a model file with the
scratch loader, and the inputs for it (an ``--inputs`` .npz checked against the model, or random).

``parity check``, ``parity grad``/``train`` (``cli_train``) and ``parity run`` (``suite``) import
this module; it imports none of them, so the CLI's imports run one way.
"""

import os
import sys
import zipfile

import numpy as np

import scratch
from scratch.errors import InputError
from scratch.models.graph import check_input

DEFAULT_MAX_MEMORY = 2 * 1024 ** 3


class BadInput(Exception):
    """Exit code 2: the user gave something the check cannot use."""


def one_line(text):
    """``text`` with every run of white space (newlines included) folded to one space."""
    return " ".join(str(text).split())


def load_scratch(path, config=None, max_bytes=DEFAULT_MAX_MEMORY):
    """The scratch model in ``path`` (with ``config``: its architecture JSON); every refusal is a
    one-line ``BadInput`` that says what to do instead."""
    for given in [path] + ([config] if config else []):
        if not os.path.exists(given):
            raise BadInput(f"{given}: no such file")
        if os.path.isdir(given):
            kind = "a TensorFlow SavedModel folder" if os.path.exists(os.path.join(given, "saved_model.pb")) else \
                "a directory"
            raise BadInput(f"{given}: is {kind}, not a model file: save the model as one file with "
                           f"model.save('m.keras') (or 'm.h5') and check that")
        if not os.access(given, os.R_OK):
            raise BadInput(f"{given}: not a readable file")
    if config is None and _starts_like_json(path):
        raise BadInput(f"{path}: looks like model.to_json() architecture text: give it with --config and the "
                       f"weights file as MODEL (parity check m.weights.h5 --config {os.path.basename(str(path))})")
    try:
        model = scratch.load(path, config=config, max_bytes=max_bytes)
    except scratch.UnsupportedLayerError as exc:
        layers = ", ".join(f"{n} ({c})" for n, c in exc.layers)
        reasons = "; ".join(dict.fromkeys(r for _, _, r in exc.problems))
        raise BadInput(f"{path}: unsupported layer(s): {layers}: {reasons}") from None
    except scratch.ScratchError as exc:
        message = f"{exc}" if str(path) in str(exc) else f"{path}: {exc}"
        message = message.replace("pass its config with config=", "give its architecture with --config arch.json "
                                                                    "(model.to_json())")
        raise BadInput(one_line(message)) from None
    return model


def _starts_like_json(path):
    try:
        with open(path, "rb") as fh:
            return fh.read(64).lstrip()[:1] in (b"{", b"[")
    except OSError:
        return False



def _fixed_shape(name, shape, n):
    dims = list(shape[1:]) if shape is not None else []
    return (n, *[8 if d is None else int(d) for d in dims])


def _check_npz_sizes(path, max_bytes):
    """Each .npz member's declared array size, from its header, before NumPy allocates it."""
    if not zipfile.is_zipfile(path):
        return
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if info.flag_bits & 0x1:
                raise BadInput(f"--inputs {path}: member {info.filename!r} is encrypted")
            with zf.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                          else np.lib.format.read_array_header_2_0)(fh)
            shape, _, dtype = header
            nbytes = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
            if nbytes > max_bytes or nbytes > info.file_size:
                raise BadInput(f"--inputs {path}: array {info.filename!r} declares shape {shape} ({nbytes} bytes), "
                               f"more than the member holds ({info.file_size}) or --max-memory ({max_bytes})")


def read_inputs(path, model, samples, max_bytes=DEFAULT_MAX_MEMORY):
    """Arrays from an .npz for each model input (by name, else arr_i in order); exit-2 errors."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(6)
    except OSError as exc:
        raise BadInput(f"--inputs {path}: cannot read it: {exc.strerror}") from None
    if head[:2] != b"PK" and head != b"\x93NUMPY":
        raise BadInput(f"--inputs {path}: not an .npz or .npy file (first bytes {head!r}); save the arrays with "
                       f"np.savez('inputs.npz', <input name>=array, ...)")
    try:
        _check_npz_sizes(path, max_bytes)
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.ndarray):   # a plain .npy: one array for a one-input model
            arrays = {"arr_0": data}
        else:
            with data:
                arrays = {k: data[k] for k in data.files}
    except BadInput:
        raise
    except Exception as exc:  # noqa: BLE001 - zipfile, pickle and format errors all mean "unreadable"
        raise BadInput(one_line(f"--inputs {path}: cannot read as .npz: {type(exc).__name__}: {exc}")) from None
    if not arrays:
        raise BadInput(f"--inputs {path}: the file holds no arrays")
    names = model.input_names
    xs = []
    for i, (name, shape, dtype) in enumerate(zip(names, model.input_shapes, model.input_dtypes)):
        key = name if name in arrays else f"arr_{i}" if f"arr_{i}" in arrays else (
            next(iter(arrays)) if len(arrays) == 1 and len(names) == 1 else None)
        if key is None:
            raise BadInput(f"--inputs {path}: no array for model input '{name}' (expected keys {names} or "
                           f"arr_0..arr_{len(names) - 1}; found {sorted(arrays)})")
        if key != name and not key.startswith("arr_"):
            print(f"parity check: note: --inputs {path}: its only array {key!r} feeds model input {name!r} "
                  f"(name the array {name!r} to make that explicit)", file=sys.stderr)
        x = arrays[key]
        if shape is not None and (x.ndim != len(shape) or any(
                d is not None and d != s for d, s in zip(shape[1:], x.shape[1:]))):
            want = "(" + ", ".join("N" if j == 0 else "?" if d is None else str(d) for j, d in enumerate(shape)) + ")"
            raise BadInput(f"--inputs {path}: array '{key}' has shape {x.shape}, model input '{name}' expects {want}")
        if x.dtype.kind not in "biuf":
            raise BadInput(f"--inputs {path}: array '{key}' has dtype {x.dtype}; expected numbers")
        if np.dtype(dtype).kind in "iu" and x.dtype.kind == "f":
            if not np.all(np.isfinite(x)) or np.any(x != np.round(x)):
                raise BadInput(f"--inputs {path}: array '{key}' holds non-integer values for integer input '{name}'")
        x = x[:samples] if samples else x
        if x.ndim == 0 or len(x) == 0:
            raise BadInput(f"--inputs {path}: array '{key}' holds no samples")
        try:   # ids beyond int32 would wrap silently in astype
            check_input(x, np.dtype(dtype), name)
        except InputError as exc:
            raise BadInput(f"--inputs {path}: array '{key}': {exc}") from None
        xs.append(x.astype(dtype))
    if len({len(x) for x in xs}) > 1:
        raise BadInput(f"--inputs {path}: arrays have different numbers of samples {[len(x) for x in xs]}")
    if len(xs[0]) == 0:
        raise BadInput(f"--inputs {path}: no samples")
    return xs


def random_inputs(model, infos, samples, seed):
    """Dtype-aware random inputs: ids in [0, input_dim) for inputs feeding an Embedding; floats N(0, 1),
    except where the model preprocesses images itself (``_float_draw``)."""
    rng = np.random.default_rng(seed)
    xs = []
    for name, shape, dtype in zip(model.input_names, model.input_shapes, model.input_dtypes):
        shp = _fixed_shape(name, shape, samples)
        if np.dtype(dtype).kind in "iu":
            dims = [int(i["config"].get("input_dim", 0)) for i in infos
                    if i["class_name"] == "Embedding" and name in i.get("inbound", [])]
            high = min(dims) if dims else 2
            xs.append(rng.integers(0, high, size=shp).astype(dtype))
        elif np.dtype(dtype).kind == "b":
            xs.append(rng.random(shp) < 0.5)
        else:
            xs.append(_float_draw(name, infos, shp, rng).astype(dtype))
    return xs


def _float_draw(name, infos, shape, rng):
    """N(0, 1), unless the input goes first into Keras's own image preprocessing (keras.applications
    put it inside the model): pixels U(0, 255) into a ``Rescaling``, and ``mean + sqrt(variance) * N(0, 1)``
    into a ``Normalization`` with stored statistics. N(0, 1) "pixels" there become a near-constant
    image, far from anything the model is scaled for (a calibrated EfficientNetV2M grows to ~1e3)."""
    first = [i for i in infos if name in i.get("inbound", [])]
    kind = first[0]["class_name"] if len(first) == 1 else None
    cfg = first[0].get("config", {}) if first else {}
    if kind == "Rescaling":
        return rng.uniform(0.0, 255.0, size=shape)
    if kind == "Normalization" and cfg.get("mean") is not None and cfg.get("variance") is not None:
        try:
            mean, var = np.asarray(cfg["mean"], np.float64), np.asarray(cfg["variance"], np.float64)
            return mean + np.sqrt(np.maximum(var, 0.0)) * rng.standard_normal(shape)
        except (TypeError, ValueError):   # statistics that do not broadcast to the input: the default draw
            pass
    return rng.standard_normal(shape)


def nonfinite_line(keras_out, scratch_out):
    """One line naming the first node whose output holds NaN or inf on either side, or None.

    numpy's own overflow warnings would name an engine source line, not the layer; this names the
    node and how much of its output each side lost, which is what the user can act on (other inputs,
    smaller weights).
    """
    for name, k in keras_out.items():
        if name not in scratch_out:
            continue
        fractions = []
        for side in (k, scratch_out[name]):
            parts = side if isinstance(side, (list, tuple)) else [side]
            arrays = [np.asarray(p) for p in parts if np.asarray(p).dtype.kind == "f"]
            size = sum(a.size for a in arrays)
            bad = sum(int(np.count_nonzero(~np.isfinite(a))) for a in arrays)
            fractions.append(bad / size if size else 0.0)
        if any(fractions):
            return (f"non-finite values: {name} is the first node with NaN or inf (Keras {fractions[0]:.1%} of its "
                    f"elements, scratch {fractions[1]:.1%}): the model overflows float{_bits(k)} on these inputs, "
                    f"so parity from there on says little; check with real inputs (--inputs)")
    return None


def _bits(value):
    first = value[0] if isinstance(value, (list, tuple)) else value
    return 8 * np.asarray(first).dtype.itemsize
