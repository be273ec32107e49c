"""The scratch trainer against Keras's train_on_batch, plus fit/evaluate/early stopping/callbacks."""

import numpy as np
import pytest

import scratch
from parity.tolerance import assert_close
from scratch import losses as L
from scratch import optimizers as O
from scratch.trainer import Callback, EarlyStopping, Trainer, TrainerError


def _keras_mlp(keras, path, seed=0):
    """Dense-relu -> BN -> Dense-softmax, saved as a legacy .h5 (the grid CNN's head, small)."""
    keras.utils.set_random_seed(seed)
    m = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                          keras.layers.BatchNormalization(momentum=0.9), keras.layers.Dense(4, activation="softmax")])
    m.save(path)
    return m


def _steps(kmodel, trainer, batches, label, reduction):
    for step, (x, y, sw) in enumerate(batches):
        want = float(kmodel.train_on_batch(x, y, sample_weight=sw))
        got = trainer.train_on_batch(x, y, sw)
        assert_close(np.float32(got), np.float32(want), kind="forward", label=f"{label} loss step {step + 1}",
                     reduction=reduction * (step + 1) ** 2)
        for kw, sw_ in zip(kmodel.get_weights(), trainer.model.get_weights()):
            assert_close(sw_, kw, kind="forward", label=f"{label} weights step {step + 1}",
                         reduction=reduction * (step + 1) ** 2)


def test_train_on_batch_matches_keras_with_bn_and_fused_softmax(tmp_path):
    import keras

    path = tmp_path / "mlp.h5"
    km = _keras_mlp(keras, path)
    km.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    sm = scratch.load(path)
    trainer = Trainer(sm).compile(loss="sparse_categorical_crossentropy", optimizer=O.Adam(0.01))
    rng = np.random.default_rng(0)
    batches = [(rng.normal(size=(16, 6)).astype("float32"), rng.integers(0, 4, 16), None) for _ in range(4)]
    # a confident wrong sample: Keras reads the logits behind the softmax (no clipping at 1e-7)
    batches[0][0][0] *= 40.0
    _steps(km, trainer, batches, "mlp", reduction=16)


def test_masked_sequence_loss_matches_tf_keras(tmp_path):
    """The captioners' setup: Embedding(mask_zero) -> LSTM -> Dense logits, sample weights = target != pad."""
    import tf_keras as keras

    keras.utils.set_random_seed(1)
    tokens = keras.Input((5,), dtype="int32")
    h = keras.layers.Embedding(9, 4, mask_zero=True)(tokens)
    h = keras.layers.LSTM(6, return_sequences=True)(h)
    out = keras.layers.Dense(9)(h)
    km = keras.Model(tokens, out)
    km.save(tmp_path / "seq.h5")
    km.compile(optimizer=keras.optimizers.RMSprop(0.01, momentum=0.5),
               loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    trainer = Trainer(scratch.load(tmp_path / "seq.h5")).compile(
        loss=L.SparseCategoricalCrossentropy(from_logits=True),
        optimizer=O.RMSprop(0.01, momentum=0.5))
    rng = np.random.default_rng(2)
    batches = []
    for _ in range(2):
        lengths = rng.integers(1, 6, 8)
        x = np.where(np.arange(5) < lengths[:, None], rng.integers(1, 9, (8, 5)), 0).astype("int32")
        y = np.where(np.arange(5) < lengths[:, None] - 1, rng.integers(1, 9, (8, 5)), 0)
        batches.append((x, y, (y != 0).astype("float32")))
    _steps(km, trainer, batches, "masked LSTM", reduction=5 * 6)


def _toy(seed=0, n=64):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype("float32")
    return x, (x[:, 0] > 0).astype(int) + 2 * (x[:, 1] > 0).astype(int)


class Recorder(Callback):
    def __init__(self):
        self.batches, self.epochs = 0, []

    def on_batch_end(self, step, logs):
        self.batches += 1

    def on_epoch_end(self, epoch, logs):
        self.epochs.append(dict(logs))


def test_fit_is_seeded_learns_and_stops_early(tmp_path):
    import keras

    _keras_mlp(keras, tmp_path / "m.h5")
    x, y = _toy()
    vx, vy = _toy(1, 32)
    histories = []
    for _ in range(2):
        trainer = Trainer(scratch.load(tmp_path / "m.h5")).compile("sparse_categorical_crossentropy", O.Adam(0.02))
        rec = Recorder()
        histories.append(trainer.fit(x, y, batch_size=16, epochs=6, seed=3, validation_data=(vx, vy),
                                     callbacks=[rec]))
    assert histories[0] == histories[1]                       # same seed, same run
    assert rec.batches == 6 * 4 and len(rec.epochs) == 6
    assert histories[0]["loss"][-1] < histories[0]["loss"][0]
    assert trainer.evaluate(vx, vy) == pytest.approx(histories[0]["val_loss"][-1], rel=1e-6)

    # early stopping: a learning rate this large makes the validation loss rise; best weights come back
    trainer = Trainer(scratch.load(tmp_path / "m.h5")).compile("sparse_categorical_crossentropy", O.SGD(0.02))
    stop = EarlyStopping(patience=1, restore_best_weights=True)
    trainer.fit(x, y, batch_size=16, epochs=2, seed=0, validation_data=(vx, vy), callbacks=[stop])
    trainer.optimizer = O.SGD(50.0)
    stop2 = EarlyStopping(patience=1, restore_best_weights=True)
    hist = trainer.fit(x, y, batch_size=16, epochs=20, seed=0, validation_data=(vx, vy), callbacks=[stop2])
    assert stop2.stopped_epoch is not None and len(hist["loss"]) < 20
    assert trainer.evaluate(vx, vy) == pytest.approx(min(hist["val_loss"]), rel=1e-5)


@pytest.mark.parametrize("patience,min_delta", [(0, 0.0), (2, 0.1), (1, 0.0), (3, 0.02)])
def test_early_stopping_rule_matches_keras(patience, min_delta):
    import keras

    class Fake:
        stop_training = False
        model = None

    seq = [1.0, 0.95, 0.92, 0.5, 0.45, 0.44, 0.6, 0.43, 0.5, 0.5, 0.5]
    ks = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, min_delta=min_delta)
    km = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    ks.set_model(km)
    ks.on_train_begin()
    es = EarlyStopping(patience=patience, min_delta=min_delta)
    fake = Fake()
    es.on_train_begin(fake)
    for epoch, v in enumerate(seq):
        ks.on_epoch_end(epoch, {"val_loss": v})
        es.on_epoch_end(epoch, {"val_loss": v})
        assert fake.stop_training == getattr(km, "stop_training", False), f"epoch {epoch}"
        if fake.stop_training:
            break
    assert es.best == ks.best
    with pytest.raises(TrainerError, match="monitors 'val_loss', which the logs lack"):
        es.on_epoch_end(0, {"loss": 1.0})


def test_errors(tmp_path):
    import keras

    _keras_mlp(keras, tmp_path / "m.h5")
    t = Trainer(scratch.load(tmp_path / "m.h5"))
    with pytest.raises(TrainerError, match="must be compiled first"):
        t.train_on_batch(np.zeros((1, 6)), np.zeros(1, int))
    with pytest.raises(TrainerError, match="Trainer needs a scratch Model"):
        Trainer(object())
    t.compile("sparse_categorical_crossentropy", "sgd")
    with pytest.raises(TrainerError, match="different numbers of samples"):
        t.fit(np.zeros((4, 6)), np.zeros(3, int))


def test_training_runs_blas_on_one_thread(tmp_path, monkeypatch):
    """Like predict, a training step leaves big products to the engine's pool: BLAS must be at 1 thread inside."""
    import keras

    from scratch import parallel

    assert parallel.blas_library() is not None, "numpy's OpenBLAS was not found; the engine cannot pin its threads"
    _keras_mlp(keras, tmp_path / "m.h5")
    x, y = _toy()
    seen = []
    trainer = Trainer(scratch.load(tmp_path / "m.h5")).compile("sparse_categorical_crossentropy", "adam")
    real = trainer.model.backward
    monkeypatch.setattr(trainer.model, "backward", lambda d: (seen.append(parallel.blas_threads()), real(d))[1])
    trainer.train_on_batch(x, y)
    trainer.fit(x, y, batch_size=16, epochs=1, validation_data=(x, y))
    assert seen and set(seen) == {1}, seen
