"""The two sides of ``parity.train_demo``: one training run in Keras, one in scratch, and how they compare.

Both sides train the same model (the same initial weights: scratch loads the file Keras saved
before training) with Adam and early stopping on the validation loss, and see the same batches in
the same order:
- scratch: ``Trainer.fit(shuffle=True, seed=seed)``, whose epoch e visits the samples in the order
  of the e-th ``rng.permutation(n)`` of ``numpy.random.default_rng(seed)``;
- Keras: ``fit(shuffle=False)`` over a ``PyDataset`` (``Sequence`` in tf_keras) that serves epoch
  e's batches from the same permutations (``epoch_orders``). A callback sets the epoch at
  ``on_epoch_begin`` and the feed logs every batch it serves while training, so the report can
  say that Keras really saw the batches scratch saw (``same_batches``), not assume it.

The validation loss is evaluated in batches of the training batch size on both sides and averaged
weighted by batch size (Keras's loss tracker); ``EarlyStopping`` has the same ``patience``,
``min_delta`` and ``restore_best_weights`` on both sides (both restore the best epoch's weights at
the end of training, stopped early or not). Dropout is absent or at rate 0: Keras's random stream
cannot be reproduced (``scratch.trainer``).

What is judged (``agreement``): the first epoch's training loss, the mean of batch losses each
computed before its own update, i.e. after at most ``steps_per_epoch - 1`` optimizer steps from the
same weights, must agree within ``training_budget`` at ``steps_per_epoch`` steps (the drift budget
of ``parity.training``). Later epochs are reported side by side, not judged: Adam divides by
sqrt(v), so float32 rounding differences grow chaotically over hundreds of steps, and early
stopping may then pick different epochs; the trained models' metrics are the student's answer to
"does training in NumPy end where Keras ends".
"""

import math
import time

import numpy as np

from .gradients import gradient_reduction, keras_loss
from .tolerance import training_budget
from .training import keras_optimizer, keras_order_weights


def epoch_orders(n, epochs, seed):
    """The sample order of each epoch, exactly as ``scratch.trainer.Trainer.fit(shuffle=True, seed=seed)``."""
    rng = np.random.default_rng(seed)
    return [rng.permutation(int(n)) for _ in range(int(epochs))]


def _feed(lib, xs, y, sw, orders, batch_size):
    """A Keras ``PyDataset``/``Sequence`` serving ``orders[epoch]`` in batches, and its epoch callback."""
    base = getattr(lib.utils, "PyDataset", None) or lib.utils.Sequence

    class Feed(base):
        def __init__(self):
            super().__init__()
            self.epoch, self.live, self.log = 0, False, []

        def __len__(self):
            return math.ceil(len(y) / batch_size)

        def __getitem__(self, i):
            idx = orders[self.epoch][i * batch_size:(i + 1) * batch_size]
            if self.live:
                self.log.append((self.epoch, int(i)))
            x = tuple(v[idx] for v in xs) if len(xs) > 1 else xs[0][idx]
            return (x, y[idx]) if sw is None else (x, y[idx], sw[idx])

    feed = Feed()

    class Epochs(lib.callbacks.Callback):
        def on_train_begin(self, logs=None):
            feed.live = True

        def on_epoch_begin(self, epoch, logs=None):
            feed.epoch = int(epoch)

        def on_train_end(self, logs=None):
            feed.live = False

    return feed, Epochs()


def train_keras(lib, kmodel, data, settings, seed, loss):
    """Train ``kmodel`` (Keras 3 or tf_keras, per ``lib``) on ``data`` = {train: (xs, y, sw), val: ...}.

    Returns {history, epochs_run, best_epoch, seconds, same_batches, weights}.
    """
    xs, y, sw = data["train"]
    bs, epochs = int(settings["batch_size"]), int(settings["max_epochs"])
    orders = epoch_orders(len(y), epochs, seed)
    kmodel.compile(optimizer=keras_optimizer(kmodel, "Adam", {"learning_rate": settings["learning_rate"]}),
                   loss=keras_loss(kmodel, loss))
    stop = lib.callbacks.EarlyStopping(monitor="val_loss", patience=settings["patience"],
                                       min_delta=settings["min_delta"],
                                       restore_best_weights=settings["restore_best_weights"])
    feed, epochs_cb = _feed(lib, xs, y, sw, orders, bs)
    start = time.perf_counter()
    h = kmodel.fit(feed, epochs=epochs, shuffle=False, verbose=0, validation_data=_val(data["val"]),
                   validation_batch_size=bs, callbacks=[epochs_cb, stop])
    seconds = time.perf_counter() - start
    run = len(h.history["loss"])
    expected = [(e, i) for e in range(run) for i in range(len(feed))]
    return dict(history={k: [float(v) for v in h.history[k]] for k in ("loss", "val_loss")}, epochs_run=run,
                best_epoch=int(stop.best_epoch) + 1, seconds=seconds, same_batches=feed.log == expected,
                weights=[np.asarray(w) for w in kmodel.get_weights()])


def _val(val):
    xs, y, sw = val
    x = list(xs) if len(xs) > 1 else xs[0]
    return (x, y) if sw is None else (x, y, sw)


def train_scratch(smodel, data, settings, seed, loss):
    """Train the scratch ``smodel`` the same way; same return keys as ``train_keras``."""
    from scratch import optimizers as sopt
    from scratch.trainer import EarlyStopping, Trainer

    xs, y, sw = data["train"]
    trainer = Trainer(smodel).compile(loss, sopt.get("Adam", learning_rate=settings["learning_rate"]))
    stop = EarlyStopping(monitor="val_loss", patience=settings["patience"], min_delta=settings["min_delta"],
                         restore_best_weights=settings["restore_best_weights"])
    start = time.perf_counter()
    h = trainer.fit(list(xs), y, batch_size=int(settings["batch_size"]), epochs=int(settings["max_epochs"]),
                    shuffle=True, seed=seed, validation_data=data["val"], sample_weight=sw, callbacks=[stop])
    return dict(history={k: [float(v) for v in h[k]] for k in ("loss", "val_loss")}, epochs_run=len(h["loss"]),
                best_epoch=int(stop.best_epoch) + 1, seconds=time.perf_counter() - start, same_batches=True,
                weights=[np.asarray(w) for w in smodel.get_weights()])


def same_initial_weights(kmodel, smodel):
    """True when every weight of the scratch model equals Keras's bit for bit (same order, same shape)."""
    pairs = list(zip(keras_order_weights(smodel), kmodel.get_weights()))
    return len(pairs) == len(kmodel.get_weights()) and all(
        np.shape(s) == np.shape(k) and np.array_equal(s, k) for (_, s), k in pairs)


def agreement(kmodel, smodel, keras, scratch, settings, n_train):
    """The verdict on epoch 1 (module docstring) and how far the final weights ended apart."""
    bs = int(settings["batch_size"])
    steps = math.ceil(n_train / bs)
    reduction = gradient_reduction(_infos(kmodel), bs)
    k1, s1 = keras["history"]["loss"][0], scratch["history"]["loss"][0]
    budget = training_budget(np.float32, step=steps, scale=abs(k1), lr=0.0, reduction=reduction)
    worst = dict(rel=-1.0)
    for (name, sw), kw in zip(keras_order_weights(smodel), kmodel.get_weights()):
        if np.shape(sw) != np.shape(kw):
            raise ValueError(f"weight order: scratch '{name}' {np.shape(sw)} vs Keras {np.shape(kw)}")
        diff = float(np.max(np.abs(np.asarray(sw, np.float64) - kw), initial=0.0))
        scale = float(np.max(np.abs(kw), initial=0.0))
        rel = diff / max(scale, 1e-30)
        if rel > worst["rel"]:
            worst = dict(rel=rel, weight=name, diff=diff, scale=scale)
    passed = bool(abs(s1 - k1) <= budget and keras["same_batches"])
    return dict(passed=passed, steps_per_epoch=steps, reduction=reduction, epoch1_loss_scratch=s1,
                epoch1_loss_keras=k1, epoch1_loss_diff=abs(s1 - k1), epoch1_loss_budget=budget,
                same_batches=keras["same_batches"], final_worst_weight=worst["weight"],
                final_weight_max_abs_diff=worst["diff"], final_weight_rel_diff=worst["rel"],
                final_weight_scale=worst["scale"])


def _infos(kmodel):
    from . import keras_runner as kr

    return kr.layer_infos(kmodel)


def side_record(res, **metrics):
    """The JSON-ready part of a side's result (the weights stay out)."""
    return {**{k: v for k, v in res.items() if k != "weights"}, **metrics}
