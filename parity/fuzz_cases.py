"""Deterministic generators of hostile inputs for ``parity.fuzz``: one function per failure class.

Each generator takes ``(rng, seeds)`` and returns a ``Case``: the files to write (name -> bytes),
how to call the engine (``model``, ``config``, ``inputs``) and what is acceptable (``"any"``: a
successful run or a ``ScratchError``; ``"refusal"``: an ``UnsupportedLayerError`` and nothing
else, for code smuggled into a config). The same (class, index) always gives the same case.
Seeds are the small Keras-written models in ``parity/fuzz_seeds/`` (scripts/make_fuzz_seeds.py).
"""

import io
import json
import random
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

SEEDS = Path(__file__).with_name("fuzz_seeds")
H5_SEEDS = ("k3_mlp.h5", "tfk_cnn.h5", "tfk_nested.h5")
ZIP_SEEDS = ("k3_mlp.keras", "k3_text.keras")
HOSTILE_VALUES = ([], {}, "", "x", 0, -1, 2 ** 31, 10 ** 9, 10 ** 30, 1.5, float("nan"), None, True, [[]],
                  {"class_name": []}, ["a", 0, 0], [None, None], "float32", {"config": 3}, "a" * 5000)
CODE_OBJECTS = (
    {"class_name": "Lambda", "config": {"name": "l", "function": ["4wEAAAAAAAAA", None, None],
                                        "function_type": "lambda"}},
    {"class_name": "TFOpLambda", "config": {"name": "t", "function": "math.add"}},
    {"module": "builtins", "class_name": "function", "config": "eval", "registered_name": "function"},
    {"class_name": "__lambda__", "config": {"code": "x"}},
    {"module": "os", "class_name": "Dense", "config": {"units": 1}},
    {"class_name": "Dense", "registered_name": "evil>Dense", "config": {"units": 1}},
    [["class_name", "Lambda"], ["config", {"function": "x"}]],
)


@dataclass
class Case:
    cls: str
    index: int
    files: dict
    model: str
    config: str = None
    inputs: object = None         # a list of arrays for predict, or None for random valid inputs
    expect: str = "any"
    note: str = ""
    cli: bool = False
    extra: dict = field(default_factory=dict)


def load_seeds():
    return {p.name: p.read_bytes() for p in SEEDS.iterdir() if p.is_file()}


# ---- helpers ----------------------------------------------------------------------------------
def _h5_edit(data, edit):
    buf = io.BytesIO(data)
    with h5py.File(buf, "r+") as f:
        edit(f)
    return buf.getvalue()


def _h5_config(data):
    with h5py.File(io.BytesIO(data), "r") as f:
        raw = f.attrs["model_config"]
    return json.loads(raw)


def _with_config(data, cfg_text):
    def edit(f):
        f.attrs["model_config"] = cfg_text
    return _h5_edit(data, edit)


def _zip_rewrite(data, replace=None, drop=(), add=()):
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            if info.filename in drop:
                continue
            body = (replace or {}).get(info.filename, src.read(info.filename))
            dst.writestr(info.filename, body)
        for name, body in add:
            dst.writestr(name, body)
    return out.getvalue()


def _paths(tree):
    """Every (container, key) in a JSON tree, iteratively."""
    out, stack = [], [tree]
    while stack:
        v = stack.pop()
        items = v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else ()
        for k, c in items:
            out.append((v, k))
            stack.append(c)
    return out


def _mutate_json(rng, tree, n):
    for _ in range(n):
        paths = _paths(tree)
        if not paths:
            break
        parent, key = rng.choice(paths)
        op = rng.random()
        if op < 0.6:
            parent[key] = json.loads(json.dumps(rng.choice(HOSTILE_VALUES)))
        elif op < 0.75 and isinstance(parent, dict):
            del parent[key]
        elif op < 0.9 and isinstance(parent[key], dict):
            parent[key] = [[k, v] for k, v in parent[key].items()]
        elif isinstance(parent, list):
            parent.insert(key, json.loads(json.dumps(parent[key])))
    return tree


def _carrier(rng, seeds, cfg_edit):
    """Put an edited config into one of the three carriers: .h5 attribute, .keras config.json, --config JSON."""
    kind = rng.choice(("h5", "keras", "json"))
    if kind == "h5":
        name = rng.choice(H5_SEEDS)
        cfg = cfg_edit(_h5_config(seeds[name]))
        return dict(files={"m.h5": _with_config(seeds[name], _dumps(cfg))}, model="m.h5")
    if kind == "keras":
        name = rng.choice(ZIP_SEEDS)
        cfg = cfg_edit(json.loads(zipfile.ZipFile(io.BytesIO(seeds[name])).read("config.json")))
        return dict(files={"m.keras": _zip_rewrite(seeds[name], {"config.json": _dumps(cfg)})}, model="m.keras")
    cfg = cfg_edit(json.loads(seeds["k3_mlp.json"]))
    return dict(files={"w.weights.h5": seeds["k3_mlp.weights.h5"], "c.json": _dumps(cfg)}, model="w.weights.h5",
                config="c.json")


def _dumps(cfg):
    return cfg if isinstance(cfg, (str, bytes)) else json.dumps(cfg)


# ---- generators -------------------------------------------------------------------------------
def bitflip(rng, seeds, i):
    name = rng.choice(H5_SEEDS + ZIP_SEEDS)
    data = bytearray(seeds[name])
    for _ in range(rng.randint(1, 8)):
        pos = rng.randrange(len(data))
        data[pos] ^= 1 << rng.randrange(8)
    return Case("bitflip", i, {"m" + Path(name).suffix: bytes(data)}, "m" + Path(name).suffix, note=name)


def truncate(rng, seeds, i):
    name = rng.choice(H5_SEEDS + ZIP_SEEDS)
    data = seeds[name]
    cut = rng.randrange(len(data))
    return Case("truncate", i, {"m" + Path(name).suffix: data[:cut]}, "m" + Path(name).suffix, note=f"{name}[:{cut}]")


_BAD_DTYPES = ("int32", "int64", "bool", "float16", "complex64", "compound", "opaque", "string", "vlen")


def _bad_dataset(f, path, how, shape):
    del f[path]
    if how == "compound":
        f[path] = np.zeros(shape, dtype=[("a", "<f4"), ("b", "<i4")])
    elif how == "opaque":
        f[path] = np.zeros(shape, dtype="V4")
    elif how == "string":
        f[path] = np.full(shape, b"abc", dtype="S3")
    elif how == "vlen":
        f.create_dataset(path, shape=shape, dtype=h5py.string_dtype())
    else:
        f[path] = np.ones(shape, dtype=how)


def h5_struct(rng, seeds, i):
    weights_only = rng.random() < 0.3
    name = "k3_mlp.weights.h5" if weights_only else rng.choice(H5_SEEDS)
    op = rng.choice(("delete", "group", "softloop", "external", "dtype", "shape", "huge", "attr", "virtual_ext"))

    def edit(f):
        datasets = []
        f.visititems(lambda n, o: datasets.append(n) if isinstance(o, h5py.Dataset) else None)
        groups = []
        f.visititems(lambda n, o: groups.append(n) if isinstance(o, h5py.Group) else None)
        path = rng.choice(datasets)
        shape = f[path].shape
        if op == "delete":
            del f[path]
        elif op == "group":
            del f[path]
            f.create_group(path)
        elif op == "softloop":
            target = rng.choice(groups + datasets)
            del f[target]
            f[target] = h5py.SoftLink("/" + target)
        elif op == "external":
            target = rng.choice(groups + datasets)
            del f[target]
            f[target] = h5py.ExternalLink(rng.choice(("/nonexistent.h5", "/etc/passwd", "/dev/zero")), "/x")
        elif op == "dtype":
            _bad_dataset(f, path, rng.choice(_BAD_DTYPES), shape)
        elif op == "shape":
            del f[path]
            f[path] = np.zeros(tuple(s + rng.choice((-1, 1, 7)) for s in shape) or (3,), "float32")
        elif op == "huge":
            del f[path]
            f.create_dataset(path, shape=(rng.choice((10 ** 5, 10 ** 6)),) * 2, dtype="float32", chunks=(64, 64))
        elif op == "virtual_ext":
            del f[path]
            f.create_dataset(path, shape=shape, dtype="float32", external=[("/dev/zero", 0, h5py.h5f.UNLIMITED)])
        else:
            target = f[rng.choice(groups)] if groups and rng.random() < 0.7 else f
            keys = list(target.attrs) or ["layer_names"]
            target.attrs[rng.choice(keys)] = rng.choice((np.arange(3), 7, np.zeros((2, 2)), b"\xff\xfe",
                                                         np.array([b"x", b"/"]), "not json {"))
    data = _h5_edit(seeds[name], edit)
    if weights_only:
        return Case("h5_struct", i, {"w.weights.h5": data, "c.json": seeds["k3_mlp.json"]}, "w.weights.h5",
                    config="c.json", note=op)
    return Case("h5_struct", i, {"m.h5": data}, "m.h5", note=f"{name}:{op}")


def config_random(rng, seeds, i):
    n = rng.randint(1, 3)
    c = _carrier(rng, seeds, lambda cfg: _mutate_json(rng, cfg, n))
    return Case("config_random", i, note=f"{n} mutation(s)", **c)


def config_targeted(rng, seeds, i):
    from .fuzz_configs import targeted

    fn = rng.choice(targeted(rng))
    return Case("config_targeted", i, note=fn.__name__, **_carrier(rng, seeds, fn))


def deep_json(rng, seeds, i):
    depth = rng.choice((50, 99, 101, 500, 5000, 100_000, 1_000_000))
    opener, closer = rng.choice((("[", "]"), ('{"a":', "}")))
    deep = opener * depth + "1" + closer * depth
    where = rng.choice(("whole", "value"))

    def edit(cfg):
        if where == "whole":
            return deep
        text = json.dumps(cfg)
        return text.replace('"trainable": true', f'"trainable": {deep}', 1)
    return Case("deep_json", i, note=f"{where} depth {depth}", **_carrier(rng, seeds, edit))


def _patch_headers(data, name, patch):
    """Apply ``patch(bytearray, header_offset, kind)`` to the local and central headers of ``name``."""
    data = bytearray(data)
    zf = zipfile.ZipFile(io.BytesIO(bytes(data)))
    info = zf.getinfo(name)
    patch(data, info.header_offset, "local")
    pos = data.find(b"PK\x01\x02")
    while pos != -1:
        n = struct.unpack("<H", data[pos + 28:pos + 30])[0]
        if bytes(data[pos + 46:pos + 46 + n]) == name.encode():
            patch(data, pos, "central")
        pos = data.find(b"PK\x01\x02", pos + 4)
    return bytes(data)


def zip_struct(rng, seeds, i):
    name = rng.choice(ZIP_SEEDS)
    data = seeds[name]
    member = rng.choice(("config.json", "metadata.json", "model.weights.h5"))
    op = rng.choice(("method", "encrypted", "declared_huge", "meta_type", "duplicate", "missing", "garbage",
                     "version_type"))
    if op == "method":
        method = rng.choice((1, 6, 9, 12, 14, 19, 97, 99))
        data = _patch_headers(data, member, lambda d, o, k: d.__setitem__(
            slice(o + (8 if k == "local" else 10), o + (10 if k == "local" else 12)), struct.pack("<H", method)))
    elif op == "encrypted":
        data = _patch_headers(data, member, lambda d, o, k: d.__setitem__(
            slice(o + (6 if k == "local" else 8), o + (8 if k == "local" else 10)), struct.pack("<H", 1)))
    elif op == "declared_huge":
        size = rng.choice((2 ** 31, 2 ** 32 - 1))
        data = _patch_headers(data, member, lambda d, o, k: d.__setitem__(
            slice(o + (22 if k == "local" else 24), o + (26 if k == "local" else 28)), struct.pack("<I", size)))
    elif op == "meta_type":
        data = _zip_rewrite(data, {"metadata.json": rng.choice(("[]", "3", '"x"', "{", "null"))})
    elif op == "version_type":
        data = _zip_rewrite(data, {"metadata.json": json.dumps({"keras_version": rng.choice((3, [], {}, None))})})
    elif op == "duplicate":
        data = _zip_rewrite(data, add=[(member, b"{}")])
    elif op == "missing":
        data = _zip_rewrite(data, drop=(member,))
    else:
        data = _zip_rewrite(data, {member: bytes(rng.randrange(256) for _ in range(rng.randint(0, 400)))})
    return Case("zip_struct", i, {"m.keras": data}, "m.keras", note=f"{name}:{member}:{op}")


def code(rng, seeds, i):
    obj = rng.choice(CODE_OBJECTS)

    def inject(cfg):
        paths = [p for p in _paths(cfg) if isinstance(p[0], (dict, list))]
        parent, key = rng.choice(paths)
        if isinstance(parent, list) and rng.random() < 0.5:
            parent.append(json.loads(json.dumps(obj)))
        else:
            parent[key] = json.loads(json.dumps(obj))
        return cfg
    return Case("code", i, expect="refusal", note=str(obj)[:40], **_carrier(rng, seeds, inject))


def inputs(rng, seeds, i):
    name = rng.choice(("k3_text.keras", "k3_mlp.keras"))
    shape = (2, 6) if name == "k3_text.keras" else (2, 4)
    kind = rng.choice(("object", "str", "complex", "beyond_int32", "negative", "nan", "zero", "ndim", "scalar",
                       "bool", "uint64", "float_ids", "ok"))
    x = {"object": lambda: np.array([[object()] * shape[1]] * 2, dtype=object),
         "str": lambda: np.full(shape, "a"),
         "complex": lambda: np.ones(shape, complex),
         "beyond_int32": lambda: np.full(shape, 10 ** 12, np.int64),
         "negative": lambda: np.full(shape, -5, np.int64),
         "nan": lambda: np.full(shape, np.nan),
         "zero": lambda: np.zeros((0, shape[1]), np.float32),
         "ndim": lambda: np.zeros((2,) + shape, np.float32),
         "scalar": lambda: np.float32(1.0),
         "bool": lambda: np.ones(shape, bool),
         "uint64": lambda: np.full(shape, 2 ** 63, np.uint64),
         "float_ids": lambda: np.full(shape, 1.5),
         "ok": lambda: np.ones(shape, np.float32)}[kind]()
    return Case("inputs", i, {"m.keras": seeds[name]}, "m.keras", inputs=[x], note=f"{name}:{kind}")


def graph(rng, seeds, i):
    """Long Functional chains: listed in reverse order (the sort must be linear), or with a cycle."""
    n = rng.choice((10, 300, 1000, 3000))
    kind = rng.choice(("reverse", "shuffled", "cycle", "self"))
    layers = [{"class_name": "InputLayer", "name": "x", "config": {"batch_shape": [None, 2], "name": "x"},
               "inbound_nodes": []}]
    for k in range(n):
        src = "x" if k == 0 else f"a{k - 1}"
        layers.append({"class_name": "Activation", "name": f"a{k}", "config": {"name": f"a{k}", "activation": "relu"},
                       "inbound_nodes": [[[src, 0, 0, {}]]]})
    if kind == "cycle":
        layers[1]["inbound_nodes"] = [[[f"a{n - 1}", 0, 0, {}]]]
    elif kind == "self":
        layers[n // 2 + 1]["inbound_nodes"] = [[[f"a{n // 2}", 0, 0, {}]]]
    body = layers[1:]
    if kind == "reverse":
        body.reverse()
    elif kind == "shuffled":
        rng.shuffle(body)
    cfg = {"class_name": "Functional", "config": {"name": "chain", "layers": [layers[0]] + body,
                                                  "input_layers": [["x", 0, 0]], "output_layers": [[f"a{n - 1}", 0, 0]]},
           "keras_version": "2.15.0"}
    return Case("graph", i, {"w.weights.h5": _empty_weights(), "c.json": json.dumps(cfg)}, "w.weights.h5",
                config="c.json", note=f"{kind} {n}")


def _empty_weights():
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f.attrs["layer_names"] = np.array([], dtype="S1")
    return buf.getvalue()


GENERATORS = {f.__name__: f for f in (bitflip, truncate, h5_struct, config_random, config_targeted, deep_json,
                                       zip_struct, code, inputs, graph)}


def make_case(cls, index, seeds, cli=False):
    rng = random.Random(f"{cls}:{index}")
    case = GENERATORS[cls](rng, seeds, index)
    case.cli = cli
    return case
