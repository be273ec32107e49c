"""Configs of the wrong shape, depth, size or graph: each is a ScratchError naming the part and the problem.

Seeds are the small Keras-written models of parity/fuzz_seeds (no TensorFlow needed here).
"""

import copy
import json
import time

import numpy as np
import pytest

import scratch
from parity.fuzz_cases import SEEDS
from scratch.errors import ConfigError, GraphError, ResourceError, UnsupportedLayerError

MLP = json.loads((SEEDS / "k3_mlp.json").read_text())
WEIGHTS = SEEDS / "k3_mlp.weights.h5"


def _load(cfg, **kw):
    return scratch.load(WEIGHTS, config=cfg, **kw)


def _edit(fn):
    cfg = copy.deepcopy(MLP)
    fn(cfg)
    return cfg


def _layers(cfg):
    return cfg["config"]["layers"]


def test_the_seed_loads():
    assert _load(copy.deepcopy(MLP)).predict(np.array([[1.0, 2.0, 3.0, 4.0]])).shape == (1, 3)


@pytest.mark.parametrize("edit, error, match", [
    (lambda c: c.__setitem__("config", 3), ConfigError, r"config must be a JSON object. Received: 3"),
    (lambda c: c["config"].__setitem__("layers", {"a": 1}), ConfigError, r"config.layers must be a list of layers"),
    (lambda c: _layers(c).__setitem__(1, "Dense"), ConfigError,
     r"config.layers\[1\] must be a layer: a JSON object .* Received: 'Dense'"),
    (lambda c: _layers(c)[1].__setitem__("class_name", ["Dense"]), ConfigError,
     r"config.layers\[1\].class_name must be a string. Received: list"),
    (lambda c: _layers(c)[1].__setitem__("config", [["units", 5]]), ConfigError,
     r"config.layers\[1\].config must be a JSON object. Received: list"),
    (lambda c: _layers(c)[1]["inbound_nodes"][0]["args"][0]["config"].__setitem__("keras_history", ["x"]),
     ConfigError, r"keras_history must be \[layer_name, node_index, tensor_index\]"),
    (lambda c: _layers(c)[1]["inbound_nodes"][0]["args"][0]["config"].__setitem__("keras_history", ["x", -1, 0]),
     ConfigError, r"keras_history\[1\] must be a non-negative integer. Received: -1"),
    (lambda c: _layers(c)[1].__setitem__("inbound_nodes", "x"), ConfigError, r"inbound_nodes must be a list"),
    (lambda c: _layers(c)[1].__setitem__("inbound_nodes", [3]), ConfigError, r"inbound_nodes\[0\] must be a node"),
    (lambda c: c["config"].__setitem__("output_layers", []), ConfigError, r"output_layers is empty"),
    (lambda c: c["config"].__setitem__("output_layers", [["nope", 0, 0]]), GraphError,
     r"output \('nope', 0, 0\) is not produced by the graph"),
    (lambda c: c["config"].__setitem__("input_layers", [["hidden", 0, 0]]), GraphError,
     r"input \('hidden', 0, 0\) is not an InputLayer"),
    (lambda c: _layers(c)[1]["config"].__setitem__("dtype", "object"), ConfigError,
     r"config.layers\[1\].config.dtype must be one of float16, float32, float64, bfloat16. Received: 'object'"),
    (lambda c: _layers(c)[1]["config"].__setitem__("dtype", [["a", "<f4"]]), ConfigError, r"dtype must be one of"),
    (lambda c: _layers(c)[0]["config"].__setitem__("dtype", "string"), ConfigError, r"Received: 'string'"),
    (lambda c: _layers(c)[1]["config"].__setitem__("units", 10 ** 9), ResourceError,
     r"layer 'hidden' \(Dense\) declares units=1000000000, beyond the memory budget"),
    (lambda c: _layers(c)[1]["config"].__setitem__("units", 10 ** 30), ConfigError, r"beyond int64"),
    (lambda c: _layers(c)[0]["config"].__setitem__("batch_shape", [None, 10 ** 10]), ResourceError,
     r"declares batch_shape=\[None, 10000000000\]"),
    (lambda c: _layers(c)[2].update(name="hidden"), GraphError, r"two layers are named 'hidden'"),
    (lambda c: _layers(c)[1]["inbound_nodes"][0]["args"][0]["config"].__setitem__("keras_history", ["out", 0, 0]),
     GraphError, r"the graph has a cycle: hidden@0 -> out@0 -> hidden@0"),
    (lambda c: _layers(c)[1]["inbound_nodes"][0]["args"][0]["config"].__setitem__("keras_history", ["ghost", 0, 0]),
     GraphError, r"layer 'hidden' call 0 takes tensor \('ghost', 0, 0\): no such layer"),
    (lambda c: _layers(c)[1]["inbound_nodes"][0]["args"][0]["config"].__setitem__("keras_history", ["out", 4, 0]),
     GraphError, r"layer 'out' has no call 4"),
])
def test_malformed_config_is_named(edit, error, match):
    with pytest.raises(error, match=match):
        _load(_edit(edit))


def test_small_budget_refuses_before_reading():
    with pytest.raises(ResourceError, match=r"bytes of weights .* beyond the memory budget of 64 bytes"):
        _load(copy.deepcopy(MLP), max_bytes=64)


@pytest.mark.parametrize("depth", [101, 100_000])
def test_deep_nesting_is_refused_without_recursion_error(tmp_path, depth):
    text = json.dumps(MLP).replace('"trainable": true', '"trainable": ' + "[" * depth + "1" + "]" * depth, 1)
    (tmp_path / "c.json").write_text(text)
    with pytest.raises(ConfigError, match=r"nested (more than 100 levels deep|too deeply)"):
        _load(tmp_path / "c.json")


def test_keras2_bare_list_sequential_loads_and_is_checked(tmp_path):
    cfg = {"class_name": "Sequential", "keras_version": "2.15.0",
           "config": [{"class_name": "Dense", "config": {"name": "d", "units": 2, "batch_input_shape": [None, 3]}}]}
    model = scratch.load(_weights(tmp_path, "d", (3, 2)), config=cfg)
    assert model.predict(np.array([[1.0, 2.0, 3.0]])).shape == (1, 2)
    cfg["config"].append({"class_name": "Lambda", "config": {"name": "lam", "function": "x"}})
    with pytest.raises(UnsupportedLayerError, match=r"'lam' \(Lambda\): Lambda layers carry Python code"):
        scratch.load(tmp_path / "w.h5", config=cfg)


def _weights(tmp_path, name, shape):
    import h5py
    import numpy as np

    with h5py.File(tmp_path / "w.h5", "w") as f:
        f.attrs["layer_names"] = [name.encode()]
        g = f.create_group(name)
        g.attrs["weight_names"] = [f"{name}/kernel:0".encode(), f"{name}/bias:0".encode()]
        g[f"{name}/kernel:0"] = np.ones(shape, "float32")
        g[f"{name}/bias:0"] = np.zeros(shape[-1:], "float32")
    return tmp_path / "w.h5"


@pytest.mark.parametrize("where", ["node_kwargs", "operation", "pairs", "initializer"])
def test_code_anywhere_in_the_tree_is_refused(where):
    lam = {"class_name": "Lambda", "config": {"name": "l", "function": ["4wEA", None, None]}}

    def edit(c):
        if where == "node_kwargs":
            _layers(c)[2]["inbound_nodes"][0]["kwargs"]["extra"] = lam
        elif where == "operation":
            _layers(c).append({"module": "keras.src.ops.numpy", "class_name": "NotEqual", "name": "ne",
                               "config": {"name": "ne", "fn": lam}, "inbound_nodes": []})
        elif where == "pairs":
            _layers(c)[2] = [["class_name", "Lambda"], ["name", "sneaky"], ["config", {"function": "x"}]]
        else:
            _layers(c)[1]["config"]["kernel_initializer"] = {"module": "os", "class_name": "system", "config": {}}
    with pytest.raises(UnsupportedLayerError, match=r"(Lambda layers carry Python code|from module 'os')"):
        _load(_edit(edit))


def _chain(n, order):
    layers = [{"class_name": "Activation", "name": f"a{k}", "config": {"name": f"a{k}", "activation": "relu"},
               "inbound_nodes": [[["x" if k == 0 else f"a{k - 1}", 0, 0, {}]]]} for k in range(n)]
    if order == "reverse":
        layers.reverse()
    inp = {"class_name": "InputLayer", "name": "x", "config": {"batch_shape": [None, 2], "name": "x"},
           "inbound_nodes": []}
    return {"class_name": "Functional", "keras_version": "2.15.0",
            "config": {"name": "chain", "layers": [inp] + layers, "input_layers": [["x", 0, 0]],
                       "output_layers": [[f"a{n - 1}", 0, 0]]}}


def test_3000_layers_in_reverse_dependency_order_build_in_seconds(tmp_path):
    from parity.fuzz_cases import _empty_weights

    (tmp_path / "w.h5").write_bytes(_empty_weights())
    t0 = time.perf_counter()
    model = scratch.load(tmp_path / "w.h5", config=_chain(3000, "reverse"))
    seconds = time.perf_counter() - t0
    assert [n.layer.name for n in model.nodes] == [f"a{k}" for k in range(3000)]
    assert seconds < 10, seconds   # the old sweep: > 60 s (quadratic); this sort: well under 1 s alone
    assert model.predict(np.array([[-1.0, 2.0]])).tolist() == [[0.0, 2.0]]


def test_graph_order_matches_keras_for_a_config_in_dependency_order(tmp_path):
    from parity.fuzz_cases import _empty_weights

    (tmp_path / "w.h5").write_bytes(_empty_weights())
    model = scratch.load(tmp_path / "w.h5", config=_chain(5, "forward"))
    assert [n.layer.name for n in model.nodes] == ["a0", "a1", "a2", "a3", "a4"]
