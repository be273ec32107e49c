"""Everything in ``parity`` that imports TensorFlow/Keras lives here.

Keeping these imports in one module lets the CLI reject a bad file with a one-line reason before it
pays TensorFlow's ~5 s start-up, and keeps the comparison engine importable without TF.

Intermediate outputs follow keras-facts: ``keras.Model(model.inputs, [l.output ...])``, over every
node of the graph: a Keras 3 Functional model's ``operations`` are its layers *and* its operation
nodes (``x + y``, ``keras.ops.*``, ``keras.activations.relu(x, ...)`` on a tensor, the mask
operations), in one topological order; ``model.layers`` leaves the operations out, so a model whose
output is an operation would be probed without its output. ``layer_infos`` lists every node's
trace names (``nodes``) from the graph's own node lists, and ``parity.compare`` fails a check
that did not compare each of them. A nested
model's own layers live in its own graph, so they are probed with a second model run on the nested
model's actual input (the outer graph's tensors at its call node); their names are qualified
``outer/inner``. A layer with several outputs (an RNN with ``return_state``) yields a list.
All Keras numbers come from eager calls ``model(x, training=False)`` in batches, as keras_ref
computes the MANIFEST's metrics (like with like). ``model.predict`` would trace a tf.function per
new model and input signature: 36 s instead of 3 s for the LocallyConnected2D twin's test split.
"""

import json
import os
import time
import warnings
import zipfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

_KERAS = {}
KERAS_CALL = "model(x, training=False), eager, in batches"


def _import():
    if not _KERAS:
        from .quiet import import_tensorflow_quietly

        keras, tf = import_tensorflow_quietly()
        tf.get_logger().setLevel("ERROR")   # retracing warnings from probing many small models
        _KERAS.update(keras=keras, tf=tf)
    return _KERAS["keras"], _KERAS["tf"]


def environment():
    """Versions and whether TF's oneDNN path was on (it changes float rounding)."""
    keras, tf = _import()
    try:
        import tf_keras

        tfk = tf_keras.__version__
    except Exception:  # noqa: BLE001 - optional package
        tfk = None
    try:
        from tensorflow.python.util import _pywrap_util_port

        built = bool(_pywrap_util_port.IsMklEnabled())
    except Exception:  # noqa: BLE001 - private API; absent means unknown
        built = None
    env = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    # TF turns oneDNN on by default on x86 Linux builds that include it; "0"/"false" turns it off.
    on = bool(built) and (env is None or env.strip().lower() not in ("0", "false", "off"))
    return dict(tensorflow=tf.__version__, keras=keras.__version__, tf_keras=tfk, numpy=np.__version__,
                onednn_built=built, TF_ENABLE_ONEDNN_OPTS=env, onednn_enabled=on, keras_call=KERAS_CALL)


def file_keras_version(path):
    """The ``keras_version`` a legacy .h5 records (or the .keras metadata's), '' if none.

    Only called on a copy ``clear_for_keras`` has cleared; the format comes from its bytes."""
    from scratch.saving.io import sniff

    path = str(path)
    if sniff(path) == "zip":
        with zipfile.ZipFile(path) as z:
            if "metadata.json" in z.namelist():
                return str(json.loads(z.read("metadata.json")).get("keras_version", ""))
        return ""
    import h5py

    with h5py.File(path, "r") as f:
        v = f.attrs.get("keras_version", "")
    return v.decode() if isinstance(v, bytes) else str(v)


def load_model(path, config=None, max_bytes=None):
    """Load with Keras 3, or with tf_keras when the file was written by Keras 2 (LocallyConnected2D).

    With ``config`` (``model.to_json()`` text in a file), the model is built from it and ``path``
    provides the weights, as in ``scratch.load``: a weights file, or a full model of a larger graph
    whose same-named layers hold them (a captioner's step model inside its training model).

    Keras never sees a file the engine has not cleared: ``scratch.saving.gate.clear_for_keras``
    copies the file (and config), loads the copy with the engine (which refuses Lambda layers and
    foreign modules anywhere in any config shape, and every malformed file) and names it by its
    format; Keras then loads that copy, in safe mode (Keras 3's ``safe_mode=True``; tf_keras's
    legacy ``.h5`` loader ignores ``safe_mode`` and would run Lambda bytecode, so it runs inside
    tf_keras's own ``SafeModeScope(True)``). The copy goes when the model is built.
    """
    import tempfile

    from scratch.saving.gate import clear_for_keras

    kwargs = {} if max_bytes is None else {"max_bytes": max_bytes}
    with tempfile.TemporaryDirectory(prefix="parity-cleared-") as folder:
        path, config, _ = clear_for_keras(path, config, folder=folder, **kwargs)
        if config is not None:
            return _from_config(path, config)
        lib = _lib_for_version(file_keras_version(path))
        with _safe_mode(lib):
            return lib.models.load_model(str(path), compile=False, safe_mode=True)


def _safe_mode(lib):
    if lib.__name__ == "tf_keras":
        from tf_keras.src.saving.serialization_lib import SafeModeScope
    else:
        from keras.src.saving.serialization_lib import SafeModeScope
    return SafeModeScope(True)


def _from_config(path, config):
    with open(config, encoding="utf-8") as f:
        text = f.read()
    lib = _lib_for_version(str(json.loads(text).get("keras_version", "")))
    with _safe_mode(lib):
        model = lib.models.model_from_json(text)
    import h5py

    with h5py.File(path, "r") as f:
        held = set(f["model_weights"]) if "model_config" in f.attrs else None
    if held is None:
        model.load_weights(str(path))
        return model
    # Keras's by_name silently skips a layer the file lacks; here that is an error.
    missing = [layer.name for layer in model.layers if layer.weights and layer.name not in held]
    if missing:
        raise ValueError(f"{path}: no weights for layer(s) {missing} of {config}")
    model.load_weights(str(path), by_name=True)
    return model


def _lib_for_version(version):
    if version.startswith("2."):
        import tf_keras

        return tf_keras
    keras, _ = _import()
    return keras


def _model_api(model):
    """The Keras flavour (keras or tf_keras) that built ``model``."""
    if type(model).__module__.startswith("tf_keras"):
        import tf_keras

        return tf_keras
    keras, _ = _import()
    return keras


def _is_model(layer):
    return hasattr(layer, "layers") and hasattr(layer, "inputs") and type(layer).__name__ in (
        "Sequential", "Functional", "Model")


def as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _shape_of(t):
    return tuple(None if d is None else int(d) for d in t.shape)


def _inbound_names(layer):
    """Names of the layers feeding ``layer``'s first call (Keras 3 and tf_keras node APIs)."""
    nodes = getattr(layer, "_inbound_nodes", [])
    if not nodes:
        return []
    node = nodes[0]
    if hasattr(node, "operation"):  # Keras 3
        return [p.operation.name for p in node.parent_nodes]
    inbound = getattr(node, "inbound_layers", [])  # tf_keras
    return [l.name for l in as_list(inbound)]


def _graph_operations(model):
    """Every layer and operation of ``model``'s graph, InputLayers excluded, in topological order.

    Keras 3 Functional: ``model.operations`` (layers and operation nodes); Sequential and tf_keras
    models hold layers only.
    """
    ops = getattr(model, "operations", None) if hasattr(model, "_nodes_by_depth") else None
    ops = model.layers if ops is None else ops
    return [op for op in ops if type(op).__name__ != "InputLayer"]


def _is_operation(op):
    """A Keras 3 operation node rather than a layer (tf_keras graphs hold layers only)."""
    if type(op).__module__.startswith("tf_keras"):
        return False
    keras, _ = _import()
    return not isinstance(op, keras.layers.Layer)


def _own_nodes(model, layer):
    """The layer's call nodes that belong to ``model``'s graph, in call order (node 0 first)."""
    nodes = list(getattr(layer, "_inbound_nodes", []))
    by_depth = getattr(model, "_nodes_by_depth", None)
    if by_depth:
        ids = {id(n) for ns in by_depth.values() for n in ns}
        own = [n for n in nodes if id(n) in ids]
        if own:
            return own
    return nodes[:1]


def _node_outputs(node):
    out = getattr(node, "output_tensors", None)
    return as_list(out if out is not None else node.outputs)


def _node_inputs(node):
    ins = getattr(node, "input_tensors", None)
    return as_list(ins if ins is not None else node.inputs)


def _node_names(model, layer, name):
    """Trace names of every output of every call of ``layer`` in ``model``'s graph (``name@k``, ``name[t]``)."""
    out = []
    for k, node in enumerate(_own_nodes(model, layer)):
        base = name if k == 0 else f"{name}@{k}"
        out += [base if t == 0 else f"{base}[{t}]" for t in range(len(_node_outputs(node)))]
    return out


def output_names(model):
    """Trace names of the model's outputs (the node and tensor each output comes from)."""
    names = []
    for t in as_list(model.outputs):
        op, node_index, tensor_index = t._keras_history[:3]
        own = _own_nodes(model, op)
        node = op._inbound_nodes[node_index]
        k = next((i for i, n in enumerate(own) if n is node), node_index)
        base = op.name if k == 0 else f"{op.name}@{k}"
        names.append(base if tensor_index == 0 else f"{base}[{tensor_index}]")
    return names


def layer_infos(model, prefix=""):
    """[{name, class_name, op, config, input_shape, output_shape, inbound, nodes, model_outputs}] for every
    layer and operation of the graph, in topological order.

    ``nodes`` lists the trace names the graph's calls of it produce, ``model_outputs`` those of them
    that are outputs of the (top-level) model. A nested model contributes its own layers (qualified
    names) and then itself.
    """
    infos = []
    outputs = set(output_names(model)) if not prefix else set()
    for layer in _graph_operations(model):
        cls = type(layer).__name__
        name = prefix + layer.name
        try:
            in_shape = [_shape_of(t) for t in as_list(layer.input)]
            in_shape = in_shape[0] if len(in_shape) == 1 else in_shape
        except Exception:  # noqa: BLE001
            in_shape = None
        if _is_model(layer):
            inner = layer_infos(layer, prefix=name + "/")
            # The inner graph's InputLayers stand for whatever feeds the nested model outside.
            entry = {name + "/" + l.name for l in layer.layers if type(l).__name__ == "InputLayer"}
            entry |= {name + "/" + t.name.split(":")[0] for t in as_list(layer.inputs)}
            outer = [prefix + n for n in _inbound_names(layer)]
            for i in inner:
                if any(n in entry for n in i["inbound"]) or not i["inbound"]:
                    i["inbound"] = [n for n in i["inbound"] if n not in entry] + outer
            calls = _node_names(model, layer, name)
            for i in inner:   # a nested model called twice runs its layers twice: outer@1/inner
                i["nodes"] = [c + n[len(name):] for c in calls if "[" not in c for n in i["nodes"]]
            infos.extend(inner)
            cfg, inbound = {}, [inner[-1]["name"]] if inner else outer
        else:
            try:
                cfg = layer.get_config()
            except Exception:  # noqa: BLE001
                cfg = {}
            inbound = [prefix + n for n in _inbound_names(layer)]
        try:
            out_shape = [_shape_of(t) for t in as_list(layer.output)]
        except Exception:  # noqa: BLE001
            out_shape = None
        nodes = _node_names(model, layer, name)
        infos.append(dict(name=name, class_name=cls, op=_is_operation(layer), config=_jsonable(cfg),
                          input_shape=in_shape, output_shape=out_shape, inbound=inbound, nodes=nodes,
                          model_outputs=[n for n in nodes if n in outputs]))
    return infos


def _jsonable(obj):
    try:
        return json.loads(json.dumps(obj, default=str))
    except (TypeError, ValueError):
        return {}


def intermediate_outputs(model, x, *, batch_size=64, prefix=""):
    """Ordered {trace name: output ndarray (a list for multi-output layers)} via ``call``.

    Names follow the scratch trace: node k > 0 of a shared layer is ``name@k``, a nested model's
    layers are ``outer/inner`` (``outer@k/inner``).
    """
    api = _model_api(model)
    tensors, slots = [], []
    for layer in _graph_operations(model):
        for k, node in enumerate(_own_nodes(model, layer)):
            outs = _node_outputs(node)
            ins = _node_inputs(node) if _is_model(layer) else []
            slots.append((layer, k, len(tensors), len(outs), len(ins)))
            tensors.extend(outs)
            tensors.extend(ins)
    probe = api.Model(model.inputs, tensors)
    values = as_list(call(probe, x, batch_size=batch_size))
    result = {}
    for layer, k, start, n_out, n_in in slots:
        name = prefix + layer.name + ("" if k == 0 else f"@{k}")
        if n_in:
            feed = values[start + n_out: start + n_out + n_in]
            result.update(intermediate_outputs(layer, feed[0] if n_in == 1 else feed, batch_size=batch_size,
                                               prefix=name + "/"))
        out = values[start: start + n_out]
        result[name] = out[0] if n_out == 1 else out
    return result


def input_specs(model):
    """[(name, shape without batch, dtype str)] for each model input."""
    return [(t.name, tuple(None if d is None else int(d) for d in t.shape[1:]), str(np.dtype(_dtype_name(t.dtype))))
            for t in as_list(model.inputs)]


def _dtype_name(dtype):
    return getattr(dtype, "name", dtype)


def call(model, x, *, batch_size=256):
    """``model(x, training=False)`` over batches; a list of arrays when the model has several outputs."""
    xs = as_list(x)
    n = len(xs[0])
    chunks = []
    for s in range(0, max(n, 1), batch_size):
        part = [v[s:s + batch_size] for v in xs]
        with warnings.catch_warnings():
            # Keras 3 warns when a one-input functional model gets a bare tensor instead of [tensor].
            warnings.filterwarnings("ignore", message="The structure of `inputs` doesn't match")
            out = model(part if isinstance(x, (list, tuple)) else part[0], training=False)
        chunks.append([np.asarray(o) for o in as_list(out)])
    outs = [np.concatenate([c[i] for c in chunks], axis=0) for i in range(len(chunks[0]))]
    return outs if isinstance(model.outputs, (list, tuple)) and len(model.outputs) > 1 else outs[0]


def predict(model, x, *, batch_size=256):
    """``call`` with its wall time: (outputs, seconds)."""
    t0 = time.perf_counter()
    y = call(model, x, batch_size=batch_size)
    return y, time.perf_counter() - t0


def count_params(model):
    return int(model.count_params())


def first_conv_kernel(model):
    """The first Conv2D/LocallyConnected2D kernel (for the filter plot), searching nested models."""
    for layer in model.layers:
        if _is_model(layer):
            k = first_conv_kernel(layer)
            if k is not None:
                return k
        if type(layer).__name__ in ("Conv2D", "LocallyConnected2D") and layer.get_weights():
            return layer.get_weights()[0]
    return None
