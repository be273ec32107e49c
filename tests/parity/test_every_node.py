"""Every node of the graph is compared: layers and Keras 3 operation nodes, and always the model's outputs.

The Keras probe once covered ``model.layers`` only. A model whose output is an operation node
(``keras.activations.relu(x, ...)`` on a tensor) then crashed ``parity check`` ("outputs argument
cannot be empty") or, with a Dense before it, printed PASS without comparing the output.
"""

import re

import numpy as np
import pytest

from parity import keras_runner as kr
from parity.cli import main
from parity.compare import compare_layers

keras = pytest.importorskip("keras")


def relu_op(x):
    return keras.activations.relu(x, negative_slope=0.1, max_value=0.8, threshold=0.3)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """{stem: folder}: the output is an op node (after a Dense; on the input itself), .keras and .h5."""
    folder = tmp_path_factory.mktemp("nodes")
    keras.utils.set_random_seed(2)
    x = keras.Input((5,), name="x")
    models = {"dense_relu": keras.Model(x, relu_op(keras.layers.Dense(4, name="dense")(x))),
              "relu_only": keras.Model(x, relu_op(x))}
    for stem, model in models.items():
        model.save(folder / f"{stem}.keras")
        model.save(folder / f"{stem}.h5")
    return folder


def _check(path, capsys, *extra):
    rc = main(["check", str(path), "--samples", "64", *extra])
    out = capsys.readouterr()
    return rc, out.out + out.err


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_op_node_output_is_compared_after_a_dense(files, fmt, capsys, tmp_path):
    rc, out = _check(files / f"dense_relu.{fmt}", capsys, "--report", tmp_path)
    assert rc == 0, out
    assert "(2 of the graph's 2 nodes compared" in out
    import json

    result = json.loads((tmp_path / "parity.json").read_text())["result"]
    total, scratch_s = re.search(r"compared, ([0-9.]+) s; the scratch side ([0-9.]+) s\)", out).groups()
    # the scratch side's own time (load and trace) is reported apart from Keras's start-up
    assert 0 <= float(scratch_s) <= float(total) + 0.05 and result["scratch_s"] == pytest.approx(float(scratch_s), abs=1e-3)
    rows = result["layers"]
    out_row = next(r for r in rows if r["model_output"])
    assert out_row["name"].startswith("re_lu") and out_row["status"] == "ok"
    # the random inputs reach every piece of the relu: below the threshold, between, above the cap
    assert out_row["reduction"] == 5 + 1


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_op_node_on_the_input_is_the_whole_graph(files, fmt, capsys):
    rc, out = _check(files / f"relu_only.{fmt}", capsys)
    assert rc == 0, out
    assert "1/1 layers and operations within tolerance (1 of the graph's 1 nodes compared" in out


def test_the_op_node_values_are_really_compared(files):
    """The output row carries the output's values: a scratch output off by one ulp-scale step fails."""
    path = files / "dense_relu.keras"
    km = kr.load_model(path)
    x = np.random.default_rng(0).normal(size=(64, 5)).astype("float32")
    import scratch

    trace = scratch.load(path).trace(x)
    name = kr.output_names(km)[0]
    assert name in trace
    keras_out = kr.intermediate_outputs(km, x)
    y = keras_out[name]
    assert (y < 0).any() and ((y > 0) & (y < 0.8)).any() and (y == np.float32(0.8)).any()
    assert compare_layers(keras_out, trace, kr.layer_infos(km))["passed"]
    trace[name] = trace[name] + 1e-4
    res = compare_layers(keras_out, trace, kr.layer_infos(km))
    assert not res["passed"] and res["first_diverging"] == name


def test_fewer_compared_nodes_than_graph_nodes_fails(files):
    """A probe that misses a node (as the old model.layers probe missed every operation) never passes."""
    path = files / "dense_relu.keras"
    km = kr.load_model(path)
    infos = kr.layer_infos(km)
    relu = kr.output_names(km)[0]   # re_lu, or re_lu_<k> after other tests (Keras's name counter)
    assert [n for i in infos for n in i["nodes"]] == ["dense", relu] and relu.startswith("re_lu")
    assert [i["op"] for i in infos] == [False, True]
    x = np.random.default_rng(1).normal(size=(8, 5)).astype("float32")
    import scratch

    trace = scratch.load(path).trace(x)
    layers_only = {k: v for k, v in kr.intermediate_outputs(km, x).items() if k == "dense"}
    res = compare_layers(layers_only, trace, infos)
    assert not res["passed"]
    assert res["compared"] == 1 and res["graph_nodes"] == 2
    missing = [r for r in res["layers"] if r["status"] == "missing"]
    assert [r["name"] for r in missing] == [relu] and missing[0]["model_output"]
    assert f"the Keras probe has no output for graph node {relu!r}" in missing[0]["reason"]
    # ... and a scratch trace that lacks it fails as well
    res = compare_layers(kr.intermediate_outputs(km, x), {"dense": trace["dense"]}, infos)
    assert not res["passed"] and res["compared"] == 1


def test_nested_and_shared_nodes_are_all_listed(tmp_path):
    """A nested model called twice runs its layers twice; each call's nodes are graph nodes."""
    L = keras.layers
    i = keras.Input((3,))
    inner = keras.Model(i, L.Dense(2, name="d")(i) * 2.0, name="inner")
    a, b = keras.Input((3,), name="a"), keras.Input((3,), name="b")
    model = keras.Model([a, b], inner(a) + inner(b), name="outer")
    infos = kr.layer_infos(model)
    nodes = sorted(n for info in infos for n in info["nodes"])
    add, mul = model.outputs[0]._keras_history[0].name, inner.outputs[0]._keras_history[0].name
    assert nodes == sorted(["inner/d", "inner@1/d", f"inner/{mul}", f"inner@1/{mul}", "inner", "inner@1", add])
    x = [np.ones((2, 3), "float32"), np.zeros((2, 3), "float32")]
    assert sorted(kr.intermediate_outputs(model, x)) == nodes
    assert [n for info in infos for n in info["model_outputs"]] == [add]
