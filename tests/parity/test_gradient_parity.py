"""Every layer's backward against tf.GradientTape: dx and each weight gradient, float32 and float64.

Each case pushes the same random input (and output gradient ``dout``) through a Keras layer with
random weights and the scratch layer built from its config, then compares d sum(y * dout) / d x and
/ d every trainable weight with ``assert_close(kind="backward")``. The reduction is the layer's own
forward reduction plus the number of output elements: no gradient element sums more terms than
there are outputs, and each term carries the forward rounding.

Tie cases pin TensorFlow's conventions: max pooling over equal values (the first maximum in the
window gets the gradient), ReLU at exactly 0 (no gradient), Maximum/Minimum merges with equal
inputs (the first input gets it), ReLU(max_value) at its clip points.
"""

import inspect

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import example, given, settings
from hypothesis import strategies as st

from parity.compare import own_reduction
from parity.tolerance import assert_close
from scratch.saving.registry import make_layer
from tests.support import randomize_keras_weights


def _k():
    import keras

    return keras


def _int_ties(rng, shape, dtype):
    """Small integers as floats: many exact ties (and exact zeros)."""
    return rng.integers(-2, 3, size=shape).astype(dtype)


# name -> builder(rng, dtype, ties) -> (keras layer, inputs, flavor)
def _dense(rng, dtype, ties):
    x = _int_ties(rng, (3, 5), dtype) if ties else rng.normal(size=(3, 5)).astype(dtype)
    return _k().layers.Dense(4, activation="relu" if ties else "tanh", dtype=dtype), x, "keras3"


def _conv(rng, dtype, ties):
    layer = _k().layers.Conv2D(3, 3, strides=2, padding="same", activation="relu", dtype=dtype)
    return layer, rng.normal(size=(2, 7, 6, 2)).astype(dtype), "keras3"


def _lc2d(rng, dtype, ties):
    import tf_keras

    layer = tf_keras.layers.LocallyConnected2D(3, 3, strides=1, dtype=dtype, implementation=1)
    return layer, rng.normal(size=(2, 5, 6, 2)).astype(dtype), "tf_keras"


def _maxpool(rng, dtype, ties):
    x = _int_ties(rng, (2, 6, 7, 2), dtype) if ties else rng.normal(size=(2, 6, 7, 2)).astype(dtype)
    return _k().layers.MaxPooling2D(3, strides=2, padding="same", dtype=dtype), x, "keras3"


def _avgpool(rng, dtype, ties):
    return _k().layers.AveragePooling2D(2, padding="same", dtype=dtype), rng.normal(size=(2, 5, 5, 3)).astype(dtype), \
        "keras3"


def _gmp(rng, dtype, ties):
    x = _int_ties(rng, (2, 4, 4, 3), dtype) if ties else rng.normal(size=(2, 4, 4, 3)).astype(dtype)
    return _k().layers.GlobalMaxPooling2D(dtype=dtype), x, "keras3"


def _gap(rng, dtype, ties):
    return _k().layers.GlobalAveragePooling2D(dtype=dtype), rng.normal(size=(2, 4, 3, 3)).astype(dtype), "keras3"


def _bn(rng, dtype, ties):
    return _k().layers.BatchNormalization(dtype=dtype), rng.normal(1, 2, size=(6, 3, 4)).astype(dtype), "keras3"


def _merge(cls):
    def build(rng, dtype, ties):
        a = _int_ties(rng, (3, 4), dtype) if ties else rng.normal(size=(3, 4)).astype(dtype)
        b = a.copy() if ties else rng.normal(size=(3, 4)).astype(dtype)
        if ties:
            b[::2] += 1.0   # half the rows differ, half are exact ties
        return getattr(_k().layers, cls)(dtype=dtype), [a, b], "keras3"
    return build


def _embedding(rng, dtype, ties):
    return _k().layers.Embedding(7, 3, dtype=dtype), rng.integers(0, 7, size=(3, 4)).astype("int32"), "keras3"


def _rnn(cls, **kw):
    def build(rng, dtype, ties):
        return getattr(_k().layers, cls)(4, dtype=dtype, **kw), rng.normal(size=(2, 5, 3)).astype(dtype), "keras3"
    return build


def _bidirectional(rng, dtype, ties):
    keras = _k()
    layer = keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=True, dtype=dtype), dtype=dtype)
    return layer, rng.normal(size=(2, 4, 3)).astype(dtype), "keras3"


def _time_distributed(rng, dtype, ties):
    keras = _k()
    layer = keras.layers.TimeDistributed(keras.layers.Dense(3, activation="sigmoid", dtype=dtype), dtype=dtype)
    return layer, rng.normal(size=(2, 4, 5)).astype(dtype), "keras3"


def _activation(name):
    def build(rng, dtype, ties):
        x = _int_ties(rng, (3, 6), dtype) if ties else rng.normal(size=(3, 6)).astype(dtype)
        return _k().layers.Activation(name, dtype=dtype), x, "keras3"
    return build


def _relu6(rng, dtype, ties):
    x = rng.normal(3, 4, size=(3, 8)).astype(dtype)
    if ties:
        x[0, :4] = [0.0, 6.0, 0.0, 6.0]   # both clipping kinks, exactly
    return _k().layers.ReLU(max_value=6.0, dtype=dtype), x, "keras3"


CASES = {
    "Dense": _dense, "Conv2D": _conv, "LocallyConnected2D": _lc2d, "MaxPooling2D": _maxpool,
    "AveragePooling2D": _avgpool, "GlobalMaxPooling2D": _gmp, "GlobalAveragePooling2D": _gap,
    "BatchNormalization": _bn, "Add": _merge("Add"), "Multiply": _merge("Multiply"),
    "Maximum": _merge("Maximum"), "Minimum": _merge("Minimum"), "Concatenate": _merge("Concatenate"),
    "Embedding": _embedding, "SimpleRNN": _rnn("SimpleRNN", return_sequences=True), "LSTM": _rnn("LSTM"),
    "GRU": _rnn("GRU", return_sequences=True), "Bidirectional": _bidirectional,
    "TimeDistributed": _time_distributed, "relu": _activation("relu"), "softmax": _activation("softmax"),
    "elu": _activation("elu"), "sigmoid": _activation("sigmoid"), "ReLU(max_value)": _relu6,
}
TIE_CASES = ("Dense", "MaxPooling2D", "GlobalMaxPooling2D", "Maximum", "Minimum", "relu", "ReLU(max_value)")

WORST = {}   # case -> worst max abs error seen (printed by -s runs for the report)


def check_case(name, seed, dtype, ties=False):
    rng = np.random.default_rng(seed)
    klayer, x, flavor = CASES[name](rng, dtype, ties)
    xs = x if isinstance(x, list) else [x]
    multi = isinstance(x, list)
    klayer(xs if multi else xs[0])   # build
    randomize_keras_weights(klayer, rng)
    cfg = {"class_name": type(klayer).__name__, "config": klayer.get_config()}
    layer = make_layer(cfg, flavor)
    shapes = [(None,) + v.shape[1:] for v in xs]
    layer.build(shapes if multi else shapes[0])
    if klayer.get_weights():
        layer.set_weights(klayer.get_weights())
    layer.to_dtype(dtype)
    floats = [i for i, v in enumerate(xs) if v.dtype.kind == "f"]
    tensors = [tf.constant(v) for v in xs]
    with tf.GradientTape(persistent=True) as tape:
        for i in floats:
            tape.watch(tensors[i])
        y = klayer(tensors if multi else tensors[0], training=True)
        dout = rng.normal(size=tuple(y.shape)).astype(dtype)
        objective = tf.reduce_sum(y * dout)
    wanted = tape.gradient(objective, [tensors[i] for i in floats] + list(klayer.trainable_weights))
    wanted = [np.asarray(tf.convert_to_tensor(g)) for g in wanted]
    kwargs = {"training": True} if "training" in inspect.signature(layer.forward).parameters else {}
    out = layer.forward(xs if multi else xs[0], **kwargs)
    assert_close(out, np.asarray(y), kind="forward", label=f"{name} forward",
                 reduction=max(1, own_reduction(cfg["class_name"], cfg["config"], shapes if multi else shapes[0])))
    dx = layer.backward(dout)
    dxs = dx if multi else [dx]
    got = [dxs[i] for i in floats] + [layer.grads[n] for n in layer.trainable_weight_names()]
    labels = [f"dx{i}" for i in floats] + [f"d{n}" for n in layer.trainable_weight_names()]
    assert len(got) == len(wanted), f"{name}: scratch has {labels}, Keras {len(wanted)} gradients"
    reduction = max(1, own_reduction(cfg["class_name"], cfg["config"], shapes if multi else shapes[0])) + dout.size
    for lab, g, w in zip(labels, got, wanted):
        stats = assert_close(np.asarray(g), w, kind="backward", reduction=reduction,
                             label=f"{name} {lab} {dtype}{' ties' if ties else ''} seed {seed}")
        key = (name, dtype)
        WORST[key] = max(WORST.get(key, 0.0), stats["max_abs"] / max(1.0, float(np.max(np.abs(w), initial=0.0))))


@example("MaxPooling2D", 0, "float32", True)
@example("Maximum", 1, "float64", True)
@example("Minimum", 2, "float32", True)
@example("relu", 3, "float64", True)
@example("ReLU(max_value)", 4, "float32", True)
@example("GlobalMaxPooling2D", 5, "float64", True)
@example("LSTM", 6, "float64", False)
@settings(max_examples=8)
@given(st.sampled_from(sorted(CASES)), st.integers(0, 2**31 - 1), st.sampled_from(["float32", "float64"]),
       st.booleans())
def test_layer_gradients_match_gradient_tape(name, seed, dtype, ties):
    check_case(name, seed, dtype, ties and name in TIE_CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_layer_type(name):
    """Each layer once (alternating dtypes; the property test above draws both for every layer)."""
    check_case(name, 11, ("float32", "float64")[sorted(CASES).index(name) % 2], ties=name in TIE_CASES)
