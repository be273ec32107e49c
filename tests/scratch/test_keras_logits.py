"""When Keras's cross-entropy reads the logits behind a sigmoid/softmax output (scratch.keras_logits),
against Keras's own loss and ``tf.GradientTape`` gradients on the same file.

Inputs are scaled so that the output saturates: there the two readings differ by far more than
rounding (the probability path clips at 1e-7, the logits path does not), so each case tells them apart.
"""

import numpy as np
import pytest

import scratch
from parity.gradients import compare_gradients
from parity.tolerance import assert_close
from scratch import losses as L
from scratch.keras_logits import logits_tap, squeezed


def _dense_head(keras, activation, units=4):
    inp = keras.Input((5,))
    return inp, keras.layers.Dense(units, activation=activation)(keras.layers.Dense(6)(inp))


def conv_sigmoid(keras):   # a sigmoid read as softmax logits by a categorical loss
    inp = keras.Input((4, 4, 2))
    return inp, keras.layers.Conv2D(3, 1, activation="sigmoid")(inp)


def softmax_layer(keras):   # from_logits=True on a softmax output: Keras still reads the logits
    inp, z = _dense_head(keras, None)
    return inp, keras.layers.Softmax()(z)


def softmax_for_binary(keras):
    return _dense_head(keras, "softmax")


def sigmoid_op(keras):   # keras.ops.sigmoid on a tensor: an operation node, tagged by the TF backend
    inp, z = _dense_head(keras, None)
    return inp, keras.ops.sigmoid(z)


def one_unit_sigmoid(keras):   # y of rank 1 is expanded to (n, 1): the output keeps its tag
    return _dense_head(keras, "sigmoid", units=1)


def sequence_one_unit(keras):   # y (n, T) against (n, T, 1): Keras squeezes y_pred, the tag is lost
    inp = keras.Input((3, 5))
    return inp, keras.layers.Dense(1, activation="sigmoid")(inp)


def sigmoid_rnn(keras):   # the activation runs inside each step: the stacked output carries no tag
    inp = keras.Input((3, 5))
    return inp, keras.layers.SimpleRNN(4, activation="sigmoid")(inp)


CASES = {
    "conv_sigmoid_scce": (conv_sigmoid, lambda: L.SparseCategoricalCrossentropy(), lambda r, n: r.integers(0, 3, (n, 4, 4))),
    "softmax_layer_cce_from_logits": (softmax_layer, lambda: L.CategoricalCrossentropy(from_logits=True),
                                      lambda r, n: np.eye(4, dtype="float32")[r.integers(0, 4, n)]),
    "softmax_bce": (softmax_for_binary, lambda: L.BinaryCrossentropy(),
                    lambda r, n: (r.random((n, 4)) < 0.5).astype("float32")),
    "sigmoid_op_bce": (sigmoid_op, lambda: L.BinaryCrossentropy(),
                       lambda r, n: (r.random((n, 4)) < 0.5).astype("float32")),
    "rank1_y_bce": (one_unit_sigmoid, lambda: L.BinaryCrossentropy(), lambda r, n: (r.random(n) < 0.5).astype("float32")),
    "squeezed_sequence_bce": (sequence_one_unit, lambda: L.BinaryCrossentropy(),
                              lambda r, n: (r.random((n, 3)) < 0.5).astype("float32")),
    "ignore_class_scce": (softmax_for_binary, lambda: L.SparseCategoricalCrossentropy(ignore_class=0),
                          lambda r, n: r.integers(0, 4, n)),
    "sigmoid_rnn_bce": (sigmoid_rnn, lambda: L.BinaryCrossentropy(),
                        lambda r, n: (r.random((n, 4)) < 0.5).astype("float32")),
}
# Which cases Keras reads from the logits, by its rules (scratch.keras_logits docstring).
READS_LOGITS = {"conv_sigmoid_scce", "softmax_layer_cce_from_logits", "softmax_bce", "sigmoid_op_bce", "rank1_y_bce"}


@pytest.fixture(scope="module")
def keras():
    import keras

    return keras


@pytest.mark.parametrize("case", sorted(CASES))
def test_loss_and_every_gradient_match_keras(case, keras, tmp_path):
    build, make_loss, make_y = CASES[case]
    keras.utils.set_random_seed(3)
    inp, out = build(keras)
    kmodel = keras.Model(inp, out)
    kmodel.save(tmp_path / "m.keras")
    smodel = scratch.load(tmp_path / "m.keras")
    rng = np.random.default_rng(4)
    # Saturates the output. The RNN's sigmoid saturates all the way (|logit| > 17: p is exactly 1, or
    # below the 1e-7 clip): a p within an ulp of the clip bound would flip TF's clip gradient on a
    # one-ulp difference in the RNN (measured: 0.99999994 vs 0.99999988), a kink, not a reading.
    scale = 1000 if case == "sigmoid_rnn_bce" else 30
    x = (scale * rng.normal(size=(6,) + tuple(inp.shape[1:]))).astype("float32")
    y = make_y(rng, 6)
    loss = make_loss()

    probs = smodel.forward(x)
    with logits_tap(smodel, loss) as tap:
        out = smodel.forward(x)
        assert (tap.active and not squeezed(y, out)) == (case in READS_LOGITS), case

    result = compare_gradients(kmodel, smodel, [x], y, loss)
    failed = [(r["weight"], r.get("max_abs"), r.get("note")) for r in result["rows"] if not r["passed"]]
    assert result["passed"], (case, failed)
    assert_close(np.float32(result["loss_scratch"]), np.float32(result["loss_keras"]), kind="forward",
                 label=f"{case} loss", reduction=int(np.size(y)))
    # the tap leaves the model as it was: a plain forward still gives the probabilities
    np.testing.assert_array_equal(smodel.forward(x), probs)


@pytest.mark.parametrize("y_rank", [1, 2])
def test_tf_keras_squeezes_a_one_unit_output_for_rank1_targets_too(y_rank, tmp_path):
    """tf_keras's squeeze_or_expand_dimensions drops the tag where Keras 3 expands y instead."""
    import tensorflow as tf
    import tf_keras

    tf_keras.utils.set_random_seed(3)
    inp = tf_keras.Input((5,))
    kmodel = tf_keras.Model(inp, tf_keras.layers.Dense(1, activation="sigmoid")(tf_keras.layers.Dense(6)(inp)))
    kmodel.save(tmp_path / "m.h5")
    smodel = scratch.load(tmp_path / "m.h5")
    rng = np.random.default_rng(4)
    x = (30 * rng.normal(size=(6, 5))).astype("float32")
    y = (rng.random(6) < 0.5).astype("float32").reshape((6,) if y_rank == 1 else (6, 1))
    assert squeezed(y, smodel.forward(x), smodel.keras_flavor) == (y_rank == 1)
    result = compare_gradients(kmodel, smodel, [x], y, L.BinaryCrossentropy())
    assert result["passed"], [r["weight"] for r in result["rows"] if not r["passed"]]
    # The value against tf_keras run eagerly: inside tf.function TF's graph optimizer rewrites
    # log(1 - p + eps) with 1 + eps folded first (measured: 13.2379 traced vs 13.2939 eager here),
    # which only the saturated, clipped elements see; their gradient is 0 either way.
    want = float(tf_keras.losses.BinaryCrossentropy()(tf.constant(y), kmodel(x)))   # tensors, as in fit
    assert_close(np.float32(result["loss_scratch"]), np.float32(want), kind="forward",
                 label=f"tf_keras rank-{y_rank} loss", reduction=6)
