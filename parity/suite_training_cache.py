"""The Keras side of ``parity run``'s gradient and training sections, through ``KerasCache``.

Keras's gradients (``gradients.keras_gradient_side``) and its ``train_on_batch`` steps
(``training.keras_training_side``) are a pure function of what the key holds, so a second run reads
them instead of loading the model and tracing its step again; scratch's side is always recomputed.
The key (with the cache's own stack: TensorFlow, Keras, tf_keras, NumPy, oneDNN, parity version):

- the sha256 of the training file Keras loads;
- the fingerprint of every array fed (inputs, targets, sample weights), batch by batch, in order;
- the loss (class and config), the optimizer (name and config), the step count, the batch size;
- the source text of every function that computes the Keras side (``CODE``) and of the Keras
  runner's module, so editing how Keras is driven cannot read a result of the old code.

An entry's arrays are checked against its JSON on the way back (count, names); anything missing or
unreadable is a miss, and the side is recomputed and stored again.
"""

import functools
import hashlib
import inspect
import json

import numpy as np

from . import gradients, keras_runner, training
from .keras_cache import array_fingerprint
from .report import to_json

# What computes the Keras side (its source text is in the key).
CODE = (gradients.keras_gradient_side, gradients.keras_loss_and_grads, gradients.keras_loss, gradients.zero_dropout,
        gradients._keras_leaves, training.keras_training_side, training.keras_optimizer, keras_runner)


def code_fingerprint():
    return _source_fingerprint(CODE)


@functools.lru_cache(maxsize=4)
def _source_fingerprint(code):
    """Read once per process and tuple of functions (sources do not change under a running suite),
    not once per section."""
    h = hashlib.sha256()
    for obj in code:
        h.update(inspect.getsource(obj).encode("utf-8"))
    return h.hexdigest()


def _batch_fingerprint(xs, y, sw):
    return dict(xs=[array_fingerprint(x) for x in xs], y=array_fingerprint(y),
                sw=None if sw is None else array_fingerprint(sw))


def _loss(loss):
    return dict(cls=type(loss).__name__, config=json.loads(to_json(loss.get_config())))


def gradient_parts(model_sha, batch, loss, training_mode):
    return dict(kind="gradients-v1", model=model_sha, batch=_batch_fingerprint(*batch), loss=_loss(loss),
                training=bool(training_mode), code=code_fingerprint())


def training_parts(model_sha, batches, loss, optimizer, config, batch_size):
    return dict(kind="training-v1", model=model_sha, steps=len(batches), batch_size=batch_size,
                batches=[_batch_fingerprint(*b) for b in batches], loss=_loss(loss), optimizer=optimizer,
                optimizer_config=json.loads(to_json(config)), code=code_fingerprint())


# ---- to and from the store ----------------------------------------------------------------------
def gradient_to_store(side):
    arrays = {f"grad/{i}": g for i, g in enumerate(side["grads"]) if g is not None}
    arrays.update({f"dx/{i}": g for i, g in side["dx"].items()})
    missing = [i for i, g in enumerate(side["grads"]) if g is None]
    meta = dict(loss=side["loss"], grads=len(side["grads"]), missing=missing, dx=sorted(side["dx"]), infos=side["infos"])
    return arrays, json.loads(to_json(meta))


def gradient_from_store(arrays, meta):
    missing = set(meta["missing"])
    grads = [None if i in missing else arrays[f"grad/{i}"] for i in range(meta["grads"])]
    _expect(arrays, len(grads) - len(missing) + len(meta["dx"]))
    return dict(loss=float(meta["loss"]), grads=grads, dx={int(i): arrays[f"dx/{i}"] for i in meta["dx"]},
                infos=meta["infos"])


def training_to_store(side):
    arrays = {f"w/{k}/{i}": w for k, ws in enumerate(side["weights"]) for i, w in enumerate(ws)}
    meta = dict(losses=side["losses"], weights=[len(ws) for ws in side["weights"]], infos=side["infos"])
    return arrays, json.loads(to_json(meta))


def training_from_store(arrays, meta):
    _expect(arrays, sum(meta["weights"]))
    weights = [[arrays[f"w/{k}/{i}"] for i in range(n)] for k, n in enumerate(meta["weights"])]
    return dict(losses=[float(v) for v in meta["losses"]], weights=weights, infos=meta["infos"])


def _expect(arrays, count):
    if len(arrays) != count:
        raise KeyError(f"cache entry holds {len(arrays)} arrays, its description {count}")


def cached(cache, parts, compute, to_store, from_store):
    """``(side, source)``: the stored side for ``parts`` ('cache') or ``compute()``'s, stored ('keras').

    A miss stores the side and returns it read back through ``from_store``, so a hit and a miss hand
    the comparison the same types and values (floats and infos through JSON)."""
    hit = cache.get(parts)
    if hit is not None:
        try:
            return from_store(*hit), "cache"
        except (KeyError, ValueError, TypeError, IndexError):   # a damaged entry: recompute it
            pass
    arrays, meta = to_store(compute())
    cache.put(parts, arrays, meta)
    return from_store({k: np.asarray(v) for k, v in arrays.items()}, meta), "keras"
