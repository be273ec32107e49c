"""Graph semantics: nested models, shared layers, masks, init-inject, multiple outputs, the API."""

import numpy as np
import pytest

import scratch
from scratch.errors import InputError
from parity.tolerance import assert_close
from tests.scratch.test_loader import check_model, randomize, save_all, token_ids

keras = pytest.importorskip("keras")
layers = keras.layers


def encoder_captioner():
    """A Sequential CNN encoder nested in a Functional captioner, the encoder called twice."""
    encoder = keras.Sequential([
        keras.Input((8, 8, 3)),
        layers.Conv2D(4, 3, activation="relu", name="conv2d"),   # explicit: Keras's counters are global
        layers.BatchNormalization(),
        layers.GlobalAveragePooling2D(),
        layers.Dense(6, activation="tanh"),
    ], name="encoder")
    img = keras.Input((8, 8, 3), name="image")
    img2 = keras.Input((8, 8, 3), name="image2")
    seq = keras.Input((5,), dtype="int32", name="tokens")
    f1, f2 = encoder(img), encoder(img2)
    shared = layers.Dense(6, name="shared")
    h = layers.Add()([shared(f1), shared(f2)])          # one layer at two graph nodes
    e = layers.Embedding(9, 4, mask_zero=True)(seq)
    o = layers.GRU(6, return_sequences=True)(e, initial_state=h)
    o = layers.Dense(9)(o)
    return keras.Model([img, img2, seq], o, name="nested_cap")


def test_nested_encoder_and_shared_layers(tmp_path):
    model = randomize(encoder_captioner())
    rng = np.random.default_rng(0)
    x = [rng.normal(size=(4, 8, 8, 3)).astype("float32"), rng.normal(size=(4, 8, 8, 3)).astype("float32"),
         token_ids(4, 5, 9)]
    ref = check_model(model, x, save_all(model, tmp_path, "nested"), label="nested")
    for name in ("encoder/conv2d", "encoder@1/conv2d", "encoder", "encoder@1", "shared", "shared@1"):
        assert name in ref
    smodel = scratch.load(tmp_path / "nested.keras")
    assert smodel.get_layer("encoder/conv2d") is smodel.get_layer("encoder").get_layer("conv2d")
    assert smodel.get_layer("encoder").count_params() == model.get_layer("encoder").count_params()
    text = smodel.summary(print_fn=None)
    assert "encoder (Sequential)" in text and "shared (Dense)" in text
    assert f"Total params: {model.count_params():,}" in text
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert f"Trainable params: {trainable:,}" in text


def test_nested_functional_as_direct_output(tmp_path):
    """Keras numbers a nested Functional's nodes from 1 in output_layers; Sequential's from 0."""
    i0 = keras.Input((4,))
    inner = keras.Model(i0, layers.Dense(3, activation="relu")(i0), name="innerf")
    seqm = keras.Sequential([keras.Input((4,)), layers.Dense(2)], name="innerseq")
    inp = keras.Input((4,), name="x")
    model = randomize(keras.Model(inp, [inner(inp), seqm(inp), inner(layers.Dense(4)(inp))], name="outer"))
    x = np.random.default_rng(1).normal(size=(3, 4)).astype("float32")
    check_model(model, x, save_all(model, tmp_path, "outer"), label="direct outputs")


def test_masks_flow_through_the_graph(tmp_path):
    """Masking -> Dense (passes the mask) -> Bidirectional -> TimeDistributed -> LSTM."""
    seq = keras.Input((6, 3), name="seq")
    m = layers.Masking(0.0)(seq)
    d = layers.Dense(4)(m)
    o = layers.Bidirectional(layers.LSTM(3, return_sequences=True))(d)
    o = layers.TimeDistributed(layers.Dense(2))(o)
    o = layers.LSTM(3)(o)
    model = randomize(keras.Model(seq, o, name="masked"))
    x = np.random.default_rng(2).normal(size=(5, 6, 3)).astype("float32")
    x[0, 3:] = 0.0
    x[1, :1] = 0.0
    x[2, 2] = 0.0
    check_model(model, x, save_all(model, tmp_path, "masked"), label="masks")
    # the masks matter here: zeroing masked steps' values differently changes nothing in Keras
    smodel = scratch.load(tmp_path / "masked.h5")
    np.testing.assert_allclose(smodel.predict(x)[0], model.predict(x[:1], verbose=0)[0], atol=1e-5)


def test_sequential_masking(tmp_path):
    model = randomize(keras.Sequential([keras.Input((5, 2)), layers.Masking(0.0), layers.SimpleRNN(3),
                                        layers.RepeatVector(2), layers.GRU(2, return_sequences=True)], name="sm"))
    x = np.random.default_rng(3).normal(size=(4, 5, 2)).astype("float32")
    x[0, 2:] = 0.0
    check_model(model, x, save_all(model, tmp_path, "sm"), label="sequential mask")


def test_return_state_feeds_another_branch(tmp_path):
    """Encoder states (return_state) are the decoder's initial_state; the model has two outputs."""
    enc_in = keras.Input((4, 3), name="enc")
    dec_in = keras.Input((5, 2), name="dec")
    enc_out, h, c = layers.LSTM(4, return_state=True, name="encoder_lstm")(enc_in)
    dec = layers.LSTM(4, return_sequences=True, name="decoder_lstm")(dec_in, initial_state=[h, c])
    model = randomize(keras.Model([enc_in, dec_in], [dec, enc_out], name="seq2seq"))
    rng = np.random.default_rng(4)
    x = [rng.normal(size=(3, 4, 3)).astype("float32"), rng.normal(size=(3, 5, 2)).astype("float32")]
    ref = check_model(model, x, save_all(model, tmp_path, "s2s"), label="return_state")
    assert {"encoder_lstm", "encoder_lstm[1]", "encoder_lstm[2]"} <= set(ref)
    smodel = scratch.load(tmp_path / "s2s.keras")
    assert smodel.output_names == ["decoder_lstm", "encoder_lstm"]
    assert isinstance(smodel.predict(x), list)


def test_tf_keras_nested_sequential(tmp_path):
    """tf_keras numbers a nested Sequential/Functional's nodes from 1 everywhere."""
    tfk = pytest.importorskip("tf_keras")
    inner = tfk.Sequential([tfk.Input((4,)), tfk.layers.Dense(3, activation="relu", name="dense")], name="inner")
    x_in = tfk.Input((4,), name="x")
    a, b = inner(x_in), inner(tfk.layers.Dense(4)(x_in))
    model = randomize(tfk.Model(x_in, tfk.layers.Concatenate(name="concatenate")([a, b]), name="tfk_nested"))
    model.save(tmp_path / "n.h5")
    x = np.random.default_rng(5).normal(size=(3, 4)).astype("float32")
    smodel = scratch.load(tmp_path / "n.h5")
    assert_close(smodel.predict(x), model.predict(x, verbose=0), label="tf_keras nested", reduction=8)
    assert set(smodel.trace(x)) >= {"inner/dense", "inner@1/dense", "inner", "inner@1", "concatenate"}


# ---- the API -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_input_file(tmp_path_factory):
    a = keras.Input((3,), name="a")
    b = keras.Input((2,), name="b")
    y = layers.Dense(2, name="out")(layers.Concatenate()([a, b]))
    model = randomize(keras.Model([a, b], y))
    path = tmp_path_factory.mktemp("api") / "two.keras"
    model.save(path)
    return path, model


def test_predict_batches_and_float64(two_input_file):
    path, model = two_input_file
    smodel = scratch.load(path)
    rng = np.random.default_rng(6)
    x = [rng.normal(size=(7, 3)).astype("float32"), rng.normal(size=(7, 2)).astype("float32")]
    one = smodel.predict(x, batch_size=1)
    np.testing.assert_array_equal(one, smodel.predict(x, batch_size=32))
    assert one.dtype == np.float32
    truth = scratch.load(path).to_dtype("float64").predict(x)
    assert truth.dtype == np.float64
    assert_close(truth.astype("float32"), model.predict(x, verbose=0), label="float64 run", reduction=5)
    assert smodel.input_shapes == [(None, 3), (None, 2)]


@pytest.mark.parametrize("bad, match", [
    (lambda x: x[:1], r"expects 2 input\(s\) \['a', 'b'\], received 1"),
    (lambda x: {"a": x[0]}, r"expects inputs \['a', 'b'\]; missing \['b'\]"),
    (lambda x: [x[0], x[0]], r"input 'b' expects shape \(None, 2\), received \(4, 3\)"),
    (lambda x: [x[0], x[1][:2]], r"inputs have different batch sizes \[4, 2\]"),
])
def test_bad_inputs_are_named(two_input_file, bad, match):
    smodel = scratch.load(two_input_file[0])
    x = [np.zeros((4, 3), "float32"), np.zeros((4, 2), "float32")]
    with pytest.raises(InputError, match=match):
        smodel.predict(bad(x))


def test_get_layer_unknown_name(two_input_file):
    with pytest.raises(ValueError, match=r"No such layer: 'nope'"):
        scratch.load(two_input_file[0]).get_layer("nope")


def test_merged_masks_recorded_as_keras_operations(tmp_path):
    """Keras 3 writes mask merging as NotEqual/ExpandDims/ZerosLike/LogicalOr/Concatenate/Any nodes."""
    a = keras.Input((5,), dtype="int32", name="a")
    b = keras.Input((5,), dtype="int32", name="b")
    ea = layers.Embedding(9, 3, mask_zero=True)(a)
    eb = layers.Embedding(9, 3, mask_zero=True)(b)
    joined = layers.LSTM(3, name="joined")(layers.Concatenate()([ea, eb]))
    summed = layers.GRU(2, name="summed")(layers.Add()([ea, eb]))
    model = randomize(keras.Model([a, b], [joined, summed], name="mergemask"))
    assert '"class_name": "LogicalOr"' in model.to_json()
    x = [token_ids(6, 5, 9, seed=8), token_ids(6, 5, 9, seed=9)]
    check_model(model, x, save_all(model, tmp_path, "mm"), label="merged masks")


def test_layer_dtype_comes_from_the_config(tmp_path):
    inp = keras.Input((4,), dtype="float64", name="x")
    y = layers.Dense(3, dtype="float64", name="wide")(inp)
    model = randomize(keras.Model(inp, layers.Dense(2, name="narrow")(y)))
    x = np.random.default_rng(9).normal(size=(3, 4))
    check_model(model, x, save_all(model, tmp_path, "f64"), label="dtypes")   # checks dtypes too
    trace = scratch.load(tmp_path / "f64.h5").trace(x)
    assert trace["wide"].dtype == np.float64 and trace["narrow"].dtype == np.float32


def test_sequential_built_without_an_input(tmp_path):
    """A Sequential built by calling it has no InputLayer in its config, only a build shape."""
    model = keras.Sequential([layers.Dense(3, activation="relu"), layers.Dense(2)], name="deferred")
    model(np.zeros((1, 4), "float32"))
    randomize(model)
    x = np.random.default_rng(10).normal(size=(3, 4)).astype("float32")
    check_model(model, x, save_all(model, tmp_path, "deferred"), label="deferred")


def test_backward_through_the_graph(tmp_path):
    """float64 centered differences through a nested model, a shared layer at two nodes,
    init-inject, Bidirectional, Concatenate and two outputs."""
    from tests.support import check_layer_gradients

    enc = keras.Sequential([keras.Input((5, 5, 2)), layers.Conv2D(3, 2), layers.BatchNormalization(),
                            layers.Flatten(), layers.Dense(4, activation="tanh")], name="enc")
    img = keras.Input((5, 5, 2), name="img")
    seq = keras.Input((4, 3), name="seq")
    f = enc(img)
    shared = layers.Dense(4, name="shared")
    h, c = shared(f), shared(layers.Dense(4)(f))
    o = layers.LSTM(4, return_sequences=True)(seq, initial_state=[h, c])
    o = layers.Concatenate()([o, layers.Bidirectional(layers.GRU(2, return_sequences=True))(seq)])
    model = randomize(keras.Model([img, seq], [layers.Dense(2)(o), f]))
    model.save(tmp_path / "bw.keras")
    smodel = scratch.load(tmp_path / "bw.keras").to_dtype("float64")
    rng = np.random.default_rng(11)
    x = [rng.normal(size=(2, 5, 5, 2)), rng.normal(size=(2, 4, 3))]
    assert len(smodel.trainable_weight_names()) == len(model.trainable_weights) == 21   # shared ones once
    errors = check_layer_gradients(smodel, x, rng=rng, label="model")
    assert set(errors) == {"dx0", "dx1", *smodel.trainable_weight_names()}
    douts = [rng.normal(size=o.shape) for o in smodel.forward(x)]
    dx = smodel.backward(douts)
    smodel.predict(x)   # a predict in between must not corrupt the recorded calls
    np.testing.assert_array_equal(smodel.backward(douts)[1], dx[1])
