"""No path to code execution: a tf_keras ``.h5`` Lambda whose bytecode creates a marker file never
creates it, through ``scratch.load``, ``parity check`` (file, ``--config``), the suite's load path
(``parity run``) and the Keras runner itself, in every config shape the loaders accept.

The test proves first that the attack is real: tf_keras's own legacy loader, called directly on
the same file, runs the bytecode and creates the marker.
"""

import copy
import json
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

import scratch

ROOT = Path(__file__).resolve().parents[2]
tf_keras = pytest.importorskip("tf_keras")


def _lambda_code(marker):
    # A lambda whose only constant is the marker path: its marshalled bytecode is what the file holds.
    return eval(f"lambda x: (open({str(marker)!r}, 'w').write('ran'), x)[1]")  # noqa: S307 - test fixture


@pytest.fixture(scope="module")
def evil(tmp_path_factory):
    folder = tmp_path_factory.mktemp("evil")
    marker = folder / "MARKER"
    L = tf_keras.layers
    inp = tf_keras.Input((3,), name="x")
    out = L.Dense(2, name="head")(L.Lambda(_lambda_code(marker), name="evil")(L.Dense(3, name="d")(inp)))
    tf_keras.Model(inp, out, name="functional_evil").save(folder / "functional.h5")
    seq = tf_keras.Sequential([tf_keras.Input((3,)), L.Dense(3, name="d"), L.Lambda(_lambda_code(marker), name="evil"),
                               L.Dense(2, name="head")], name="seq_evil")
    seq.save(folder / "sequential.h5")
    marker.unlink()   # tf_keras ran the lambda while building the models
    with h5py.File(folder / "functional.h5") as f:
        functional = json.loads(f.attrs["model_config"])
    with h5py.File(folder / "sequential.h5") as f:
        sequential = json.loads(f.attrs["model_config"])
    return folder, marker, functional, sequential


def _lambda_layer(cfg):
    return next(lc for lc in cfg["config"]["layers"] if lc["class_name"] == "Lambda")


def _shapes(functional, sequential):
    """Every config shape to smuggle the Lambda through: name -> (base file, model_config)."""
    out = {"functional": ("functional.h5", functional), "sequential": ("sequential.h5", sequential)}
    bare = copy.deepcopy(sequential)
    bare["config"] = bare["config"]["layers"]   # Keras 2.0: a Sequential's config is the layer list
    out["sequential_bare_list"] = ("sequential.h5", bare)
    pairs = copy.deepcopy(functional)
    lam = _lambda_layer(pairs)
    lam["config"] = [[k, v] for k, v in lam["config"].items()]   # dict(pairs) would rebuild it
    out["key_value_pairs"] = ("functional.h5", pairs)
    whole_pairs = copy.deepcopy(functional)
    i = whole_pairs["config"]["layers"].index(_lambda_layer(whole_pairs))
    whole_pairs["config"]["layers"][i] = [[k, v] for k, v in _lambda_layer(functional).items()]
    out["layer_as_pairs"] = ("functional.h5", whole_pairs)
    nested = copy.deepcopy(functional)
    inner = copy.deepcopy(sequential)
    inner["name"] = "inner"
    inner["config"]["name"] = "inner"
    nested["config"]["layers"].insert(1, dict(inner, inbound_nodes=[[["x", 0, 0, {}]]]))
    out["nested_model"] = ("functional.h5", nested)
    hidden = copy.deepcopy(functional)
    hidden["config"]["layers"] = [lc for lc in hidden["config"]["layers"] if lc["class_name"] != "Lambda"]
    head = next(lc for lc in hidden["config"]["layers"] if lc["name"] == "head")
    head["inbound_nodes"] = [[["d", 0, 0, {"extra": copy.deepcopy(_lambda_layer(functional))}]]]
    out["inbound_node_kwargs"] = ("functional.h5", hidden)
    op = copy.deepcopy(hidden)
    head = next(lc for lc in op["config"]["layers"] if lc["name"] == "head")
    head["inbound_nodes"] = [[["d", 0, 0, {}]]]
    op["config"]["layers"].append({"module": "keras.src.ops.numpy", "class_name": "NotEqual", "name": "ne",
                                   "config": {"name": "ne", "fn": copy.deepcopy(_lambda_layer(functional))},
                                   "inbound_nodes": [[["d", 0, 0, {}]]]})
    out["operation_config"] = ("functional.h5", op)
    return out


SHAPES = ["functional", "sequential", "sequential_bare_list", "key_value_pairs", "layer_as_pairs", "nested_model",
          "inbound_node_kwargs", "operation_config"]


@pytest.fixture(scope="module")
def variants(evil):
    folder, marker, functional, sequential = evil
    files = {}
    for name, (base, cfg) in _shapes(functional, sequential).items():
        path = folder / f"{name}.h5"
        path.write_bytes((folder / base).read_bytes())
        with h5py.File(path, "r+") as f:
            f.attrs["model_config"] = json.dumps(cfg)
        (folder / f"{name}.json").write_text(json.dumps(dict(cfg, keras_version="2.21.0")))
        files[name] = path
    return files


def test_the_attack_is_real(evil):
    folder, marker, _, _ = evil
    tf_keras.models.load_model(folder / "functional.h5", compile=False)   # tf_keras's default: runs bytecode
    assert marker.exists()
    marker.unlink()


@pytest.mark.parametrize("shape", SHAPES)
def test_scratch_load_and_the_keras_runner_refuse_every_shape(shape, evil, variants):
    from parity import keras_runner as kr
    from parity.suite_context import keras_layers, scratch_layers

    _, marker, _, _ = evil
    path = variants[shape]
    with pytest.raises(scratch.ScratchError):
        scratch.load(path)
    with pytest.raises(scratch.ScratchError):
        scratch.load(path, config=path.with_suffix(".json"))
    with pytest.raises(scratch.UnsupportedLayerError, match=r"Lambda"):
        kr.load_model(path)   # the gate itself, not only the CLI's order of calls
    with pytest.raises(scratch.UnsupportedLayerError, match=r"Lambda"):
        kr.load_model(path, path.with_suffix(".json"))

    class Ctx:   # the suite's load paths (``parity run``): both sides of a per-layer check of a (path, config)
        kr, args = None, None

    Ctx.kr = kr
    with pytest.raises(scratch.ScratchError):
        keras_layers(Ctx, (path, None), None)
    with pytest.raises(scratch.ScratchError):
        scratch_layers(Ctx, (path, None), None, None, None)
    assert not marker.exists(), f"{shape}: the Lambda's bytecode ran"


def test_every_cli_entry_point_refuses_every_shape(evil, variants):
    """``parity check FILE`` and ``parity check FILE --config JSON``, in one child process."""
    _, marker, _, _ = evil
    calls = []
    for shape in SHAPES:
        path = variants[shape]
        calls += [["check", str(path)], ["check", str(path), "--config", str(path.with_suffix(".json"))]]
    script = ("import json, sys\nfrom parity.cli import main\nrcs = [main(a) for a in json.loads(sys.argv[1])]\n"
              "print(json.dumps(rcs)); print('tensorflow' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(calls)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    rcs, tf_loaded = proc.stdout.strip().splitlines()[-2:]
    assert json.loads(rcs) == [2] * len(calls), proc.stderr
    assert tf_loaded == "False"   # refused before Keras was even imported
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == len(calls) and all(line.startswith("parity: error: ") for line in lines), proc.stderr
    assert all("Lambda" in line for line in lines), proc.stderr
    assert not marker.exists()
