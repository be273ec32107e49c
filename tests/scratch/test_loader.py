"""Round trips: Keras builds and saves a model, ``scratch.load`` rebuilds it, every layer agrees.

Each model is saved as a legacy ``.h5``, as a ``.keras`` archive and as ``.weights.h5`` plus its
``to_json()`` config. The scratch trace must have exactly Keras's intermediate outputs (names and
shapes, from ``keras.Model(inputs, [l.output ...])`` via parity.keras_runner), and each value must
agree under the tolerance policy with ``reduction`` = the longest chain of sums behind that output
(parity.compare.effective_reductions). The final outputs are compared against ``model.predict``.
"""

import json

import numpy as np
import pytest

import scratch
from parity.compare import effective_reductions, flatten_outputs
from parity.keras_runner import intermediate_outputs, layer_infos
from parity.tolerance import assert_close
from tests.support import randomize_keras_weights

keras = pytest.importorskip("keras")
layers = keras.layers


def _base(name):
    return name.split("[")[0].split("@")[0]


def randomize(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in _all_layers(model):
        if layer.weights and not isinstance(layer, (keras.Model,)):
            randomize_keras_weights(layer, rng)
    return model


def _all_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model) or hasattr(layer, "layers") and not hasattr(layer, "cell"):
            inner = getattr(layer, "layers", None)
            if isinstance(layer, keras.Model) or (inner and not isinstance(layer, layers.Bidirectional)):
                yield from _all_layers(layer)
                continue
        yield layer


def save_all(model, tmp_path, stem, formats=("h5", "keras", "weights")):
    """{format: loader thunk} for the requested formats."""
    out = {}
    if "h5" in formats:
        p = tmp_path / f"{stem}.h5"
        model.save(p)
        out["h5"] = lambda p=p: scratch.load(p)
    if "keras" in formats:
        p = tmp_path / f"{stem}.keras"
        model.save(p)
        out["keras"] = lambda p=p: scratch.load(p)
    if "weights" in formats:
        w = tmp_path / f"{stem}.weights.h5"
        c = tmp_path / f"{stem}.json"
        model.save_weights(w)
        c.write_text(model.to_json())
        out["weights"] = lambda w=w, c=c: scratch.load(w, config=c)
    return out


def check_model(model, x, loaders, *, label):
    """Trace names, shapes and values against Keras; predict and count_params too."""
    ref = flatten_outputs(intermediate_outputs(model, x))
    red = reductions(model)
    want = model.predict(x, verbose=0)
    want = want if isinstance(want, list) else [want]
    for fmt, load in loaders.items():
        smodel = load()
        trace = smodel.trace(x)
        assert sorted(trace) == sorted(ref), f"{label}/{fmt}: trace names differ"
        for name, k in ref.items():
            assert trace[name].shape == k.shape, f"{label}/{fmt}: {name} shape"
            if k.dtype.kind not in "fc":   # a mask operation's output (bool): exactly equal
                assert np.array_equal(trace[name], k), f"{label}/{fmt}: {name}"
                continue
            assert_close(trace[name], k, label=f"{label}/{fmt}: {name}", reduction=red.get(_base(name), 1))
        got = smodel.predict(x, batch_size=3)
        got = got if isinstance(got, list) else [got]
        assert len(got) == len(want)
        for i, (g, w) in enumerate(zip(got, want)):
            assert_close(g, w, label=f"{label}/{fmt}: predict[{i}]", reduction=max(red.values()))
        assert smodel.count_params() == model.count_params()
        assert [l.name for l in smodel.layers] == [l.name for l in model.layers]
    return ref


def reductions(model):
    """{layer name: longest chain of sums behind its output} (parity.compare's rule)."""
    if not type(model).__module__.startswith("tf_keras"):
        return effective_reductions(layer_infos(model))
    # parity.keras_runner reads Keras 3 node objects; tf_keras nodes name their inbound layers.
    infos = []
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        shapes = [tuple(t.shape) for t in (layer.input if isinstance(layer.input, list) else [layer.input])]
        inbound = layer._inbound_nodes[0].inbound_layers
        inbound = inbound if isinstance(inbound, list) else [inbound]
        infos.append(dict(name=layer.name, class_name=type(layer).__name__, config=layer.get_config(),
                          input_shape=shapes[0] if len(shapes) == 1 else shapes,
                          inbound=[l.name for l in inbound]))
    return effective_reductions(infos)


# ---- models -----------------------------------------------------------------------------------
def cnn_sequential():
    return keras.Sequential([
        keras.Input((12, 12, 3)),
        layers.ZeroPadding2D(((1, 0), (2, 1))),
        layers.Conv2D(6, 3, strides=2, padding="same", activation="relu"),
        layers.BatchNormalization(),
        layers.MaxPooling2D(2, padding="same"),
        layers.Conv2D(4, (2, 3), use_bias=False),
        layers.ReLU(max_value=6.0),
        layers.AveragePooling2D(1),
        layers.Flatten(),
        layers.Dropout(0.3),
        layers.Dense(5),
        layers.Softmax(),
    ], name="cnn")


def cnn_functional():
    x = keras.Input((10, 10, 3), name="image")
    a = layers.Conv2D(4, 3, padding="same", name="left")(x)
    b = layers.Conv2D(4, 1, name="right")(x)
    b = layers.BatchNormalization(epsilon=1.001e-5)(b)
    s = layers.Add()([a, b])
    s = layers.Activation("relu")(s)
    c = layers.Concatenate()([s, a])
    g = layers.GlobalAveragePooling2D()(c)
    m = layers.GlobalMaxPooling2D()(c)
    y = layers.Dense(3, activation="softmax", name="probs")(layers.Concatenate()([g, m]))
    return keras.Model(x, y, name="branches")


def captioner(vocab=12, steps=6):
    img = keras.Input((7,), name="features")
    seq = keras.Input((steps,), dtype="int32", name="tokens")
    h = layers.Dense(8, activation="tanh", name="init_h")(img)
    c = layers.Dense(8, activation="tanh", name="init_c")(img)
    e = layers.Embedding(vocab, 5, mask_zero=True, name="embed")(seq)
    o = layers.LSTM(8, return_sequences=True, name="decoder")(e, initial_state=[h, c])
    o = layers.TimeDistributed(layers.Dense(vocab), name="logits")(o)
    return keras.Model([img, seq], o, name="captioner")


def bidirectional_text(vocab=15, steps=7):
    seq = keras.Input((steps,), dtype="int32", name="ids")
    e = layers.Embedding(vocab, 6, mask_zero=True)(seq)
    o = layers.Bidirectional(layers.LSTM(5, return_sequences=True))(e)
    o = layers.Bidirectional(layers.GRU(4), merge_mode="sum")(o)
    y = layers.Dense(3, activation="softmax")(o)
    return keras.Model(seq, y, name="bitext")


def token_ids(n, steps, vocab, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocab, size=(n, steps))
    lengths = rng.integers(1, steps + 1, size=n)
    ids[np.arange(steps)[None, :] >= lengths[:, None]] = 0   # right padding, every length
    ids[0, 2] = 0   # and one hole inside a sequence
    return ids.astype("int32")


# ---- Keras 3 round trips --------------------------------------------------------------------
@pytest.mark.parametrize("build, shape", [(cnn_sequential, (12, 12, 3)), (cnn_functional, (10, 10, 3))])
def test_cnn_round_trips(tmp_path, build, shape):
    model = randomize(build())
    x = np.random.default_rng(1).normal(size=(5, *shape)).astype("float32")
    check_model(model, x, save_all(model, tmp_path, model.name), label=model.name)


def test_captioner_with_two_inputs_and_init_inject(tmp_path):
    model = randomize(captioner())
    rng = np.random.default_rng(2)
    x = [rng.normal(size=(5, 7)).astype("float32"), token_ids(5, 6, 12)]
    check_model(model, x, save_all(model, tmp_path, "cap"), label="captioner")
    # dict inputs keyed by input name give the same result as the list
    smodel = scratch.load(tmp_path / "cap.keras")
    np.testing.assert_array_equal(smodel.predict({"tokens": x[1], "features": x[0]}), smodel.predict(x))
    assert smodel.input_names == ["features", "tokens"]
    assert [np.dtype(d) for d in smodel.input_dtypes] == [np.float32, np.int32]


def test_bidirectional_text_model(tmp_path):
    model = randomize(bidirectional_text())
    x = token_ids(6, 7, 15, seed=3)
    check_model(model, x, save_all(model, tmp_path, "bi"), label="bitext")


def test_renamed_layers_map_by_class_counter(tmp_path):
    """The weights file is keyed by class-name counters, so names in the config play no part."""
    model = randomize(cnn_functional())
    model.save_weights(tmp_path / "w.weights.h5")
    cfg = json.loads(model.to_json())
    text = json.dumps(cfg).replace('"left"', '"zz_left"').replace('"right"', '"aa_right"')
    (tmp_path / "renamed.json").write_text(text)
    smodel = scratch.load(tmp_path / "w.weights.h5", config=tmp_path / "renamed.json")
    np.testing.assert_array_equal(smodel.get_layer("zz_left").weights["kernel"],
                                  model.get_layer("left").get_weights()[0])
    np.testing.assert_array_equal(smodel.get_layer("aa_right").weights["kernel"],
                                  model.get_layer("right").get_weights()[0])


def test_config_from_keras_archive_config_json(tmp_path):
    import zipfile
    model = randomize(cnn_sequential())
    model.save(tmp_path / "m.keras")
    model.save_weights(tmp_path / "m.weights.h5")
    with zipfile.ZipFile(tmp_path / "m.keras") as zf:
        (tmp_path / "config.json").write_bytes(zf.read("config.json"))
    x = np.random.default_rng(4).normal(size=(2, 12, 12, 3)).astype("float32")
    smodel = scratch.load(tmp_path / "m.weights.h5", config=tmp_path / "config.json")
    assert_close(smodel.predict(x), model.predict(x, verbose=0), label="config.json", reduction=200)


# ---- tf_keras (Keras 2) legacy files --------------------------------------------------------
@pytest.fixture(scope="module")
def tfk():
    return pytest.importorskip("tf_keras")


def test_tf_keras_locally_connected_h5(tmp_path, tfk):
    L = tfk.layers
    model = tfk.Sequential([
        tfk.Input((9, 8, 2)),
        L.LocallyConnected2D(3, (3, 2), strides=(2, 1), activation="relu"),
        L.LocallyConnected2D(2, 2, use_bias=False),
        L.Flatten(),
        L.Dense(4, activation="hard_sigmoid"),
    ], name="lc")
    randomize(model)
    model.save(tmp_path / "lc.h5")
    x = np.random.default_rng(5).normal(size=(4, 9, 8, 2)).astype("float32")
    check_model(model, x, {"h5": lambda: scratch.load(tmp_path / "lc.h5")}, label="tf_keras lc")


def test_tf_keras_lstm_captioner_h5(tmp_path, tfk):
    """tf_keras lists initial states as extra node inputs and uses its own hard_sigmoid."""
    L = tfk.layers
    img = tfk.Input((7,), name="features")
    seq = tfk.Input((6,), name="tokens")
    h = L.Dense(5, name="init_h")(img)
    c = L.Dense(5, name="init_c")(img)
    e = L.Embedding(10, 4, mask_zero=True)(seq)
    o = L.LSTM(5, return_sequences=True, recurrent_activation="hard_sigmoid", name="lstm")(e, initial_state=[h, c])
    o = L.TimeDistributed(L.Dense(10, activation="softmax"))(o)
    b = L.Bidirectional(L.GRU(3, reset_after=False))(e)
    model = tfk.Model([img, seq], [o, b], name="tfk_cap")
    randomize(model)
    model.save(tmp_path / "tfk.h5")
    model.save(tmp_path / "tfk.keras")
    model.save_weights(tmp_path / "tfk.weights.h5")   # Keras 3 layout (layers/<key>/vars)
    model.save_weights(tmp_path / "tfk_w.h5")         # legacy weights-only (layer_names at the root)
    (tmp_path / "tfk.json").write_text(model.to_json())
    rng = np.random.default_rng(6)
    x = [rng.normal(size=(5, 7)).astype("float32"), token_ids(5, 6, 10, seed=6).astype("float32")]
    loaders = {"h5": lambda: scratch.load(tmp_path / "tfk.h5"), "keras": lambda: scratch.load(tmp_path / "tfk.keras"),
               "weights": lambda: scratch.load(tmp_path / "tfk.weights.h5", config=tmp_path / "tfk.json"),
               "legacy weights": lambda: scratch.load(tmp_path / "tfk_w.h5", config=tmp_path / "tfk.json")}
    check_model(model, x, loaders, label="tf_keras lstm")
    assert scratch.load(tmp_path / "tfk.h5").get_layer("lstm").recurrent_activation.name == "hard_sigmoid_tf_keras"


def test_split_layer_names_attribute(tmp_path):
    """Attributes over 64 KB are split into layer_names0, layer_names1, ...: emulate one."""
    import h5py
    model = randomize(cnn_functional())
    model.save(tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r+") as f:
        g = f["model_weights"]
        names = list(g.attrs["layer_names"])
        del g.attrs["layer_names"]
        g.attrs["layer_names0"] = names[:3]
        g.attrs["layer_names1"] = names[3:]
    x = np.random.default_rng(7).normal(size=(2, 10, 10, 3)).astype("float32")
    assert_close(scratch.load(tmp_path / "m.h5").predict(x), model.predict(x, verbose=0), label="split",
                 reduction=400)


def test_subgraph_config_takes_weights_by_name_from_a_full_model_h5(tmp_path, tfk):
    """A captioner's step model: its own graph over layers of the training model, weights from the
    training model's .h5 by layer name (the committed captioners are stored this way)."""
    L = tfk.layers
    img, seq = tfk.Input((3,), name="image"), tfk.Input((6,), name="tokens")
    emb = L.Embedding(12, 4, mask_zero=True, name="embedding")
    rnn = L.SimpleRNN(5, return_sequences=True, return_state=True, name="rnn1")
    head = L.Dense(12, name="logits")
    out, _ = rnn(emb(seq), initial_state=L.Dense(5, name="init_h1")(img))   # init_h1: not in the step graph
    train = tfk.Model([img, seq], head(out), name="train")
    token, state = tfk.Input((1,), name="token"), tfk.Input((5,), name="state_h1")
    out, h = rnn(emb(token), initial_state=state)
    step = tfk.Model([token, state], [head(out), h], name="step")
    randomize(train)
    train.save(tmp_path / "train.h5")
    (tmp_path / "step.json").write_text(step.to_json())
    rng = np.random.default_rng(7)
    x = [rng.integers(1, 12, size=(4, 1)).astype("float32"), rng.normal(size=(4, 5)).astype("float32")]
    loader = {"by name": lambda: scratch.load(tmp_path / "train.h5", config=tmp_path / "step.json")}
    check_model(step, x, loader, label="step graph")
    # A graph layer the file lacks is an error (Keras's by_name would silently skip it).
    (tmp_path / "bad.json").write_text(step.to_json().replace('"logits"', '"renamed"'))
    with pytest.raises(scratch.WeightMismatchError, match=r"layer 'renamed' \(Dense\) has 2 weights but the file "
                                                          r"has no weights group '/model_weights/renamed'"):
        scratch.load(tmp_path / "train.h5", config=tmp_path / "bad.json")
    from parity.keras_runner import load_model

    # Keras side: no silent by_name skip; the engine's gate in front of Keras refuses it first, naming the file.
    with pytest.raises(ValueError, match=r"train\.h5: layer 'renamed' \(Dense\) has 2 weights but the file has no"):
        load_model(tmp_path / "train.h5", tmp_path / "bad.json")
