"""``parity run``'s backward checks, per model: gradient parity and N-step training parity.

Both run on the model's own training file (a classifier's ``.h5``, a captioner's teacher-forced
training model) with what ``parity grad`` and ``parity train`` run (``parity.gradients`` and
``parity.training``), and both enter the gate: a model whose backward or update rule diverges from
Keras FAILS ``make parity``, and its failure names the first diverging weight or the first failing
step. A broken backward is a broken engine, even when predictions still match.

- **Data**: the first samples of the test split the suite already loaded (no metric is derived from
  training on them; they are real inputs, so pooling ties and ReLU kinks occur as in use). Targets
  are the true labels; a captioner is teacher-forced on each image's first reference caption as it
  was trained (``keras_ref.train``): inputs ``<start> w..``, targets ``w.. <end>``, sample weight
  ``target != <pad>``, loss sparse cross-entropy from logits.
- **Loss and optimizer**: the MANIFEST's training setup (the committed files carry no training
  config): sparse categorical cross-entropy, from logits unless the output layer ends in softmax
  (the rule of ``parity grad``), and the recorded optimizer and learning rate (Adam, 1e-3 if none).
- **Size**: a gradient batch of ``GRAD_SAMPLES`` and ``STEPS`` training steps of ``BATCH``, kept small
  because ``make parity`` runs them for every model (issue 11 bounds the job): the cost is Keras
  tracing its gradient and its train step once per model, plus scratch's float32 and float64
  backward passes per step, which grow with steps x batch. A wrong update rule shows at once (a
  swapped Adam bias correction fails step 1) and a wrong gradient fails the gradient table whatever
  the step count; ``parity train --steps 50`` runs the long version of one model.
- **Truth**: scratch in float64 runs beside both (cheap at these sizes); the training section uses it
  to attribute drift beyond the budget to rounding (``parity.training``).
- **Cache**: Keras's gradients and steps come from ``KerasCache`` when the same file, batches, loss,
  optimizer, steps and stack were run before (``parity.suite_training_cache`` holds the key); each
  section records ``keras_source`` ('cache' or 'keras'). Keras loads the file only on a miss, once
  for both sections. Scratch's side is always recomputed: it is what is under test.
"""

import time

import numpy as np

from . import suite_training_cache as tcache
from .keras_cache import file_sha256
from .suite_context import memory_budget

GRAD_SAMPLES = 4     # samples in the gradient batch
STEPS = 5            # training steps (--train-steps overrides)
BATCH = 4            # samples per training step


def add_training_sections(ctx, entry, out):
    """Add ``out['gradients']`` and ``out['training']`` and append their failures to ``out['failures']``."""
    args = ctx.args
    if getattr(args, "no_training", False):
        out["gradients"] = out["training"] = dict(skipped="--no-training")
        return
    steps = getattr(args, "train_steps", None) or STEPS
    try:
        setup = _setup(ctx, entry, GRAD_SAMPLES + steps * BATCH)
    except Exception as exc:  # noqa: BLE001 - a model the sections cannot set up fails them, by name
        for part in ("gradients", "training"):
            out[part] = dict(error=f"{type(exc).__name__}: {exc}", passed=False)
        out["failures"].append(f"gradient and training parity: cannot set up: {type(exc).__name__}: {exc}")
        return
    out["gradients"] = _section("gradient parity", out, lambda: _gradients(ctx, setup))
    out["training"] = _section("training parity", out, lambda: _training(ctx, setup, steps))


def _section(label, out, run):
    t0 = time.perf_counter()
    try:
        res = run()
    except Exception as exc:  # noqa: BLE001 - scratch failing to differentiate or train is a failure
        res = dict(error=f"{type(exc).__name__}: {' '.join(str(exc).split())}", passed=False)
        out["failures"].append(f"{label}: {res['error']}")
    else:
        reason = failure_reason(label, res)
        if reason:
            out["failures"].append(reason)
    res["seconds"] = time.perf_counter() - t0
    return res


def failure_reason(label, res):
    """The gate's one line for a failing section (None when it passes)."""
    if res.get("passed"):
        return None
    if label == "gradient parity":
        row = next(r for r in res["rows"] if r["weight"] == res["first_diverging"])
        what = row.get("note") or f"max abs err {row['max_abs']:.3e} > tolerance {row['atol']:.3e}"
        bad = sum(not r["passed"] for r in res["rows"])
        return (f"gradient parity: first diverging weight {res['first_diverging']}: {what} "
                f"({bad}/{len(res['rows'])} weight gradients fail)")
    row = res["steps"][res["first_failing_step"] - 1]
    what = (f"weight {row['worst_weight']} differs by {row['weight_diff']:.3e} > budget {row['weight_budget']:.3e}"
            if row["weight_diff"] > row["weight_budget"] else
            f"loss {row['loss_scratch']:.7g} vs Keras {row['loss_keras']:.7g} (budget {row['loss_budget']:.2e})")
    return f"training parity ({res['optimizer']}): first failing step {res['first_failing_step']}: {what}"


# ---- set-up -------------------------------------------------------------------------------------
def _setup(ctx, entry, n):
    """The file, loss, optimizer and data (inputs, targets, sample weights) of one model's sections."""
    from scratch import losses as L
    from scratch import optimizers as O

    path = entry.model_file() if entry.kind == "classifier" else entry.source("train")[0]
    data = ctx.dataset(entry.dataset)
    if entry.kind == "captioner":
        from keras_ref.vocab import Vocabulary

        vocab = entry.vocab()
        inputs, targets = Vocabulary(vocab["itos"], vocab["max_len"]).encode_batch(
            [refs[0] for refs in data["tokens"][:n]])
        xs, y, sw = [data["x"][:n], inputs], targets, (targets != vocab["pad"]).astype(np.float32)
    else:
        xs, y, sw = [data["x"][:n]], np.asarray(data["y"][:n]), None
    smodel = _scratch(ctx, path)   # one model per side for both sections (restored in between)
    out_layer = smodel._all_layers[smodel.outputs[0][0]]
    softmax = getattr(getattr(out_layer, "activation", None), "name", None) == "softmax"
    hp = entry.raw.get("hyper_parameters", {})
    name = {k.lower(): k for k in O.OPTIMIZERS}.get(str(hp.get("optimizer", "adam")).lower(), "Adam")
    config = dict(learning_rate=float(hp.get("learning_rate") or 1e-3))
    return dict(path=path, sha=file_sha256(path), xs=xs, y=y, sw=sw,
                loss=L.SparseCategoricalCrossentropy(from_logits=not softmax), optimizer=name, config=config,
                scratch=smodel, truth=_scratch(ctx, path, "float64"), keras=None)


def _scratch(ctx, path, dtype=None):
    import scratch

    model = scratch.load(path, max_bytes=memory_budget(ctx.args))
    return model.to_dtype(dtype) if dtype else model


def _keras(ctx, setup):
    """The Keras model, loaded on the first cache miss and shared by both sections."""
    if setup["keras"] is None:
        setup["keras"] = ctx.kr.load_model(setup["path"], None, max_bytes=memory_budget(ctx.args))
    return setup["keras"]


def _take(setup, start, count):
    """``count`` samples from ``start``, wrapping around a split shorter than the sections need."""
    idx = (start + np.arange(count)) % len(setup["y"])
    sw = setup["sw"]
    return [x[idx] for x in setup["xs"]], setup["y"][idx], None if sw is None else sw[idx]


# ---- the sections -------------------------------------------------------------------------------
def _gradients(ctx, setup):
    from .gradients import compare_gradients, keras_gradient_side

    batch = _take(setup, 0, GRAD_SAMPLES)
    xs, y, sw = batch

    def keras_side():
        kmodel = _keras(ctx, setup)
        # Keras in training mode moves BatchNormalization's statistics (scratch restores its own, keep_state):
        # put the file's values back so that the training section starts from the file's weights.
        saved = kmodel.get_weights()
        try:
            return keras_gradient_side(kmodel, xs, y, setup["loss"], sw, training=True)
        finally:
            kmodel.set_weights(saved)

    side, source = tcache.cached(ctx.cache, tcache.gradient_parts(setup["sha"], batch, setup["loss"], True),
                                 keras_side, tcache.gradient_to_store, tcache.gradient_from_store)
    res = compare_gradients(None, setup["scratch"], xs, y, setup["loss"], sw, training=True, truth=setup["truth"],
                            keras_side=side)
    for row in res["rows"]:
        if row.get("max_abs") is not None and row.get("atol"):
            row["err_over_tol"] = row["max_abs"] / row["atol"]
    return dict(res, samples=len(xs[0]), loss=_describe(setup["loss"]), mode="training=True, dropout rate 0",
                keras_source=source)


def _training(ctx, setup, steps):
    from .training import keras_training_side, training_parity

    batches = [_take(setup, GRAD_SAMPLES + k * BATCH, BATCH) for k in range(steps)]
    parts = tcache.training_parts(setup["sha"], batches, setup["loss"], setup["optimizer"], setup["config"], BATCH)
    side, source = tcache.cached(
        ctx.cache, parts,
        lambda: keras_training_side(_keras(ctx, setup), batches, setup["loss"], setup["optimizer"], setup["config"]),
        tcache.training_to_store, tcache.training_from_store)
    res = training_parity(None, setup["scratch"], batches, setup["loss"], setup["optimizer"], setup["config"],
                          truth=setup["truth"], keras_side=side)
    return dict(res, optimizer=setup["optimizer"], optimizer_config=setup["config"], batch_size=BATCH,
                loss=_describe(setup["loss"]), keras_source=source)


def _describe(loss):
    cfg = loss.get_config()
    return f"{type(loss).__name__}(from_logits={cfg.get('from_logits')})"
