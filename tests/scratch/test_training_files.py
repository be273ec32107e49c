"""Training setup read from Keras files, and scratch-trained weights written back for Keras to load."""

import json

import h5py
import numpy as np
import pytest

import scratch
from parity.tolerance import assert_close
from scratch import losses as L
from scratch import optimizers as O
from scratch.saving.training_config import TrainingConfigError, read_training_config
from scratch.saving.writer import save_legacy_h5, save_weights_h5
from scratch.trainer import Trainer


def _dense(keras):
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])


def test_keras3_h5_and_keras_give_the_same_setup(tmp_path):
    import keras

    m = _dense(keras)
    m.compile(optimizer=keras.optimizers.Adam(0.01, clipnorm=1.0, amsgrad=True),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0), metrics=["accuracy"])
    m.save(tmp_path / "m.keras")   # first: Keras 3.15's legacy .h5 save drops the optimizer from compile_config
    m.save(tmp_path / "m.h5")
    for name in ("m.h5", "m.keras"):
        tc = read_training_config(tmp_path / name)
        assert isinstance(tc["loss"], L.SparseCategoricalCrossentropy)
        assert tc["loss"].from_logits and tc["loss"].ignore_class == 0
        opt = tc["optimizer"]
        assert isinstance(opt, O.Adam) and opt.amsgrad and opt.clipnorm == 1.0
        assert opt.learning_rate == np.float32(0.01)


def test_tf_keras_h5_setup_and_schedule(tmp_path):
    import keras
    import tf_keras

    m = _dense(tf_keras)
    m.compile(optimizer=tf_keras.optimizers.RMSprop(0.01, momentum=0.5, centered=True),
              loss=tf_keras.losses.Huber(delta=2.0))
    m.save(tmp_path / "t.h5")
    tc = read_training_config(tmp_path / "t.h5")
    assert isinstance(tc["loss"], L.Huber) and tc["loss"].delta == 2.0
    assert tc["loss"].reduction == "sum_over_batch_size"          # tf_keras's 'auto'
    assert isinstance(tc["optimizer"], O.RMSprop) and tc["optimizer"].centered and tc["optimizer"].momentum == 0.5

    k = _dense(keras)
    k.compile(optimizer=keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(0.1, 3, 0.5)), loss="mse")
    k.save(tmp_path / "s.h5")
    tc = read_training_config(tmp_path / "s.h5")
    assert isinstance(tc["loss"], L.MeanSquaredError)
    assert tc["optimizer"].learning_rate == np.float32(0.1)
    tc["optimizer"].iterations = 3
    assert tc["optimizer"].learning_rate == pytest.approx(0.05)

    _dense(keras).save(tmp_path / "plain.h5")
    assert read_training_config(tmp_path / "plain.h5")["loss"] is None


def _with_training_config(tmp_path, name, tc):
    import keras

    path = tmp_path / name
    _dense(keras).save(path)
    with h5py.File(path, "r+") as f:
        f.attrs["training_config"] = json.dumps(tc)
    return path


@pytest.mark.parametrize("tc,match", [
    ({"loss": "kl_divergence"}, "loss 'kl_divergence' is not supported"),
    ({"loss": ["mse", "mae"]}, "one loss per output"),
    ({"loss": "mse", "loss_weights": [1.0, 0.5]}, r"loss_weights=\[1.0, 0.5\] is not supported"),
    ({"loss": "mse", "optimizer_config": {"class_name": "Lion", "config": {}}}, "optimizer 'Lion' is not supported"),
    ({"loss": "mse", "optimizer_config": {"class_name": "Adam", "config": {"use_ema": True}}},
     "`use_ema` is not supported"),
    ({"loss": "mse", "optimizer_config": {"class_name": "SGD", "config": {"is_legacy_optimizer": True}}},
     "legacy"),
    ({"loss": {"class_name": "Huber", "config": {"delta": 1.0, "epsilon": 3}}}, r"setting\(s\) \{'epsilon': 3\}"),
])
def test_unsupported_setups_are_refused_by_name(tmp_path, tc, match):
    path = _with_training_config(tmp_path, "bad.h5", tc)
    with pytest.raises(TrainingConfigError, match=match):
        read_training_config(path)


def test_keras_loads_scratch_trained_weights(tmp_path):
    """Train in scratch, write both formats, and Keras predicts what scratch predicts."""
    import keras

    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((6, 6, 2)), keras.layers.Conv2D(3, 3, activation="relu"),
                          keras.layers.BatchNormalization(), keras.layers.Flatten(),
                          keras.layers.Dense(4, activation="softmax")])
    m.save(tmp_path / "src.h5")
    sm = scratch.load(tmp_path / "src.h5")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 6, 6, 2)).astype("float32")
    trainer = Trainer(sm).compile("sparse_categorical_crossentropy", O.Adam(0.05))
    for _ in range(3):
        trainer.train_on_batch(x, rng.integers(0, 4, 8))
    want = sm.predict(x)
    assert not np.allclose(want, m.predict(x, verbose=0))          # training changed something
    save_weights_h5(sm, tmp_path / "out.weights.h5")
    m.load_weights(tmp_path / "out.weights.h5")
    assert_close(np.asarray(m(x, training=False)), want, kind="forward", label="weights.h5 round trip", reduction=54)
    save_legacy_h5(sm, tmp_path / "out.h5", tmp_path / "src.h5")
    back = keras.models.load_model(tmp_path / "out.h5", compile=False)
    assert_close(np.asarray(back(x, training=False)), want, kind="forward", label="legacy .h5 round trip",
                 reduction=54)
    assert not list(tmp_path.glob(".*.tmp"))                          # nothing half-written left behind


def test_tf_keras_recurrent_legacy_round_trip(tmp_path):
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    tokens = tf_keras.Input((5,), dtype="int32")
    h = tf_keras.layers.Embedding(9, 4, mask_zero=True)(tokens)
    h = tf_keras.layers.Bidirectional(tf_keras.layers.LSTM(3, return_sequences=True))(h)
    m = tf_keras.Model(tokens, tf_keras.layers.Dense(9)(h))
    m.save(tmp_path / "src.h5")
    sm = scratch.load(tmp_path / "src.h5")
    rng = np.random.default_rng(1)
    x = rng.integers(0, 9, (4, 5)).astype("int32")
    Trainer(sm).compile(L.SparseCategoricalCrossentropy(from_logits=True), O.SGD(0.5)).train_on_batch(
        x, rng.integers(0, 9, (4, 5)))
    save_legacy_h5(sm, tmp_path / "out.h5", tmp_path / "src.h5")
    back = tf_keras.models.load_model(tmp_path / "out.h5", compile=False)
    assert_close(np.asarray(back(x, training=False)), sm.predict(x), kind="forward", label="tf_keras round trip",
                 reduction=5 * 6)
