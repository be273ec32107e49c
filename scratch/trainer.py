"""Training a scratch ``Model``: compile, train_on_batch, fit, evaluate, early stopping, callbacks.

One training step is Keras's ``train_step``: ``y_pred = model(x, training=True)`` (BatchNormalization
normalizes with the batch moments and updates its moving statistics; Dropout draws a mask from its
own seeded generator), ``loss = loss_fn(y, y_pred, sample_weight)`` with the output mask of the model
(an ``Embedding(mask_zero=True)`` mask that reaches the output), the gradients of the loss with respect
to every trainable weight (``model.backward``), one ``optimizer.apply``. ``train_on_batch`` returns the
loss computed before the update, as Keras does.

Keras's cross-entropies read the logits behind a sigmoid/softmax output instead of the output (and
never clip: a sample with p = 1e-30 costs 69, not -log(1e-7) = 16), even with ``from_logits=True``
and whichever of the two activations it was. ``scratch.keras_logits`` states exactly when; the
trainer then takes the loss from those logits with ``from_logits=True`` and starts the backward
pass below the activation.

Masks: Keras 3 and tf_keras both weight a masked loss by ``size / count(mask)`` (the mean over the
kept items; scratch.losses).

Dropout: Keras's random stream cannot be reproduced, so step-by-step parity with Keras needs dropout
rates of 0 or the same masks on both sides; ``fit(seed=...)`` reseeds every Dropout layer so that a
scratch run is reproducible. The epoch loss is the batch losses' mean weighted by batch size
(Keras's loss tracker). Nothing here imports anything but numpy.
"""

import copy

import numpy as np

from . import keras_logits
from . import losses as losses_mod
from . import optimizers as optimizers_mod
from . import parallel
from .errors import ScratchError
from .models.model import Model

class TrainerError(ScratchError, ValueError):
    """The model, data or compile arguments cannot be trained as given."""


class Callback:
    """Hooks called by ``fit``; ``logs`` hold 'loss' (and 'val_loss' at epoch end)."""

    def on_train_begin(self, trainer):
        pass

    def on_batch_end(self, step, logs):
        pass

    def on_epoch_end(self, epoch, logs):
        pass

    def on_train_end(self, logs):
        pass


class EarlyStopping(Callback):
    """Keras's EarlyStopping on ``monitor`` (minimised): stop after ``patience`` epochs without an
    improvement larger than ``min_delta``; optionally restore the best epoch's weights."""

    def __init__(self, monitor="val_loss", patience=0, min_delta=0.0, restore_best_weights=False):
        self.monitor, self.patience, self.min_delta = monitor, int(patience), abs(float(min_delta))
        self.restore_best_weights = bool(restore_best_weights)

    def on_train_begin(self, trainer):
        self.trainer, self.best, self.wait, self.best_weights, self.best_epoch = trainer, np.inf, 0, None, 0
        self.stopped_epoch = None

    def on_epoch_end(self, epoch, logs):
        current = logs.get(self.monitor)
        if current is None:
            raise TrainerError(f"EarlyStopping monitors '{self.monitor}', which the logs lack: {sorted(logs)}")
        self.wait += 1
        if current + self.min_delta < self.best:   # an improvement beats the best by more than min_delta
            self.best, self.best_epoch, self.wait = current, epoch, 0
            if self.restore_best_weights:
                self.best_weights = [w.copy() for w in self.trainer.model.get_weights()]
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.trainer.stop_training = True

    def on_train_end(self, logs):
        if self.restore_best_weights and self.best_weights is not None:
            self.trainer.model.set_weights(self.best_weights)


class Trainer:
    """Trains ``model`` (a scratch ``Model`` with one output) with a scratch loss and optimizer."""

    def __init__(self, model):
        if not isinstance(model, Model):
            raise TrainerError(f"Trainer needs a scratch Model. Received: {type(model).__name__}")
        if len(model.outputs) != 1:
            raise TrainerError(f"model '{model.name}' has {len(model.outputs)} outputs {model.output_names}; "
                               "the trainer trains single-output models only")
        self.model = model
        self.loss = self.optimizer = None
        self.stop_training = False

    def compile(self, loss, optimizer="rmsprop"):
        """``loss``: a scratch Loss or a Keras name; ``optimizer``: an Optimizer or a name."""
        self.loss = losses_mod.get(loss)
        if getattr(self.model, "keras_flavor", "keras3") == "tf_keras" and \
                isinstance(self.loss, losses_mod.BinaryCrossentropy):
            self.loss = copy.copy(self.loss)
            self.loss.log_epsilon = losses_mod.EPSILON   # tf_keras's log(p + eps) (scratch.losses)
        self.optimizer = optimizers_mod.get(optimizer)
        return self

    # ---- the variables ----------------------------------------------------------------------
    def trainable_names(self):
        """Keys of ``model.weights`` that the optimizer updates (frozen layers and BN statistics excluded)."""
        return _trainable(self.model, "")

    # ---- one batch --------------------------------------------------------------------------
    def loss_and_grads(self, x, y, sample_weight=None, training=True, keep_state=False):
        """``(loss, {weight key: gradient})`` for one batch; ``keep_state`` restores BN statistics after."""
        # As in predict: the engine spreads big products over its own pool; a multi-threaded BLAS call
        # under it waits for every thread and stalls on a busy machine (a captioner batch: 5x).
        with parallel.single_threaded_blas():
            return self._loss_and_grads(x, y, sample_weight, training, keep_state)

    def _loss_and_grads(self, x, y, sample_weight, training, keep_state):
        self._check_compiled()
        model = self.model
        xs = model._standardize(x)
        saved = _state(model) if keep_state else None
        with keras_logits.logits_tap(model, self.loss) as tap:
            out = model.forward(xs if len(xs) > 1 else xs[0], training=training)
            mask = model.output_masks[0] if getattr(model, "output_masks", None) else None
            if not tap.active:
                value, dy = self.loss.value_and_grad(y, out, sample_weight, mask)
            elif not self._squeezed(y, out):   # Keras's loss reads the logits (scratch.keras_logits)
                value, dy = self._on_logits().value_and_grad(y, out, sample_weight, mask)
            else:                                    # the output is the logits; the loss reads probabilities
                probs = tap.activation.forward(out)
                value, dp = self.loss.value_and_grad(y, probs, sample_weight, mask)
                dy = tap.activation.backward(out, probs, dp.astype(out.dtype))
            dx = model.backward(dy.astype(out.dtype))
        self.input_grads = dx if len(xs) > 1 else [dx]   # d loss / d each input (None for integer inputs)
        if saved is not None:
            _restore(model, saved)
        grads = model.grads
        return float(value), {n: grads[n] for n in self.trainable_names() if n in grads}

    def train_on_batch(self, x, y, sample_weight=None):
        value, grads = self.loss_and_grads(x, y, sample_weight, training=True)
        weights = self.model.weights
        self.optimizer.apply(grads, {n: weights[n] for n in grads})
        return value

    def test_on_batch(self, x, y, sample_weight=None):
        with parallel.single_threaded_blas():
            return self._test_on_batch(x, y, sample_weight)

    def _test_on_batch(self, x, y, sample_weight):
        self._check_compiled()
        with keras_logits.logits_tap(self.model, self.loss) as tap:
            out = self.model.forward(_one(self.model._standardize(x)), training=False)
        mask = self.model.output_masks[0] if self.model.output_masks else None
        if not tap.active:
            return float(self.loss(y, out, sample_weight, mask))
        if not self._squeezed(y, out):
            return float(self._on_logits()(y, out, sample_weight, mask))
        return float(self.loss(y, tap.activation.forward(out), sample_weight, mask))

    def _squeezed(self, y, out):
        return keras_logits.squeezed(y, out, getattr(self.model, "keras_flavor", "keras3"))

    def _on_logits(self):
        twin = copy.copy(self.loss)
        twin.from_logits = True
        return twin

    # ---- loops ------------------------------------------------------------------------------
    def evaluate(self, x, y, batch_size=32, sample_weight=None):
        """The loss over ``x`` in batches, averaged weighted by batch size (Keras's loss tracker)."""
        xs = self.model._standardize(x)
        n = len(xs[0])
        total = 0.0
        for s in range(0, n, batch_size):
            sl = slice(s, s + batch_size)
            sw = None if sample_weight is None else np.asarray(sample_weight)[sl]
            total += self.test_on_batch([v[sl] for v in xs], np.asarray(y)[sl], sw) * len(xs[0][sl])
        return total / max(n, 1)

    def fit(self, x, y, batch_size=32, epochs=1, shuffle=True, seed=0, validation_data=None, sample_weight=None,
            callbacks=()):
        """Keras's ``fit``: epochs of (shuffled, seeded) batches; returns the history dict."""
        self._check_compiled()
        xs = self.model._standardize(x)
        y = np.asarray(y)
        n = len(xs[0])
        if len(y) != n or any(len(v) != n for v in xs):
            raise TrainerError(f"x and y hold different numbers of samples: {[len(v) for v in xs]} vs {len(y)}")
        rng = np.random.default_rng(seed)
        reseed_dropout(self.model, seed)
        history = {"loss": []}
        self.stop_training = False
        for cb in callbacks:
            cb.on_train_begin(self)
        for epoch in range(int(epochs)):
            order = rng.permutation(n) if shuffle else np.arange(n)
            total = 0.0
            for step, s in enumerate(range(0, n, batch_size)):
                idx = order[s:s + batch_size]
                sw = None if sample_weight is None else np.asarray(sample_weight)[idx]
                value = self.train_on_batch([v[idx] for v in xs], y[idx], sw)
                total += value * len(idx)
                for cb in callbacks:
                    cb.on_batch_end(step, {"loss": value})
            logs = {"loss": total / n}
            if validation_data is not None:
                vx, vy, *vsw = validation_data
                logs["val_loss"] = self.evaluate(vx, vy, batch_size, vsw[0] if vsw else None)
            for k, v in logs.items():
                history.setdefault(k, []).append(v)
            for cb in callbacks:
                cb.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        for cb in callbacks:
            cb.on_train_end(history)
        return history

    def _check_compiled(self):
        if self.loss is None or self.optimizer is None:
            raise TrainerError(f"model '{self.model.name}' must be compiled first: call compile(loss=, optimizer=)")


# ---- helpers ----------------------------------------------------------------------------------
def _one(xs):
    return xs if len(xs) > 1 else xs[0]


def _trainable(model, prefix):
    names = []
    if not getattr(model, "keras_trainable", True):
        return names
    for layer in model.layers:
        if isinstance(layer, Model):
            names += _trainable(layer, f"{prefix}{layer.name}/")
        elif getattr(layer, "keras_trainable", True) and getattr(layer, "trainable", True):
            names += [f"{prefix}{layer.name}/{n}" for n in layer.trainable_weight_names()]
    return names


def _state(model):
    return [w.copy() for w in model.get_weights()]


def _restore(model, saved):
    model.set_weights(saved)


def _leaves(model, prefix=""):
    for layer in model.layers:
        if isinstance(layer, Model):
            yield from _leaves(layer, f"{prefix}{layer.name}/")
        else:
            yield layer


def reseed_dropout(model, seed):
    """Restart every Dropout layer's mask stream from ``seed`` (layer i gets ``seed + i``)."""
    for i, layer in enumerate(_leaves(model)):
        if hasattr(layer, "reseed"):
            layer.reseed(None if seed is None else int(seed) + i)
