"""N-step training parity: Keras ``train_on_batch`` against the scratch trainer, step by step.

Both sides start from the same weights (the file's) and take the same batches in the same order;
Keras is compiled with the optimizer and loss of the same classes and settings as scratch's. After
every step the loss each side reported (computed before its update, as Keras returns it) and every
weight (trainable and BN statistics) are compared. A float64 scratch run (``truth``) on the same
batches says which side drifted.

Drift budget (``parity.tolerance.training_budget``): step k's weights may differ by k times the
per-step allowance. Each step adds one update's worth of rounding on top of the last step's
difference, and for a stable run those differences add up (linear growth); an optimizer that
amplifies them (Adam divides by sqrt(v), which is tiny where a gradient is nearly 0) grows faster,
and that is reported, not hidden. The allowance of one step is the forward rule at the weight's
scale plus the rounding of one update, ``lr * eps * sqrt(reduction)`` for the gradient's
reduction (``parity.gradients.gradient_reduction``) times the optimizer's gain (1 for SGD; for
adaptive optimizers, ``1 / sqrt(v)``-like gains are bounded by Keras's ``epsilon``, which the budget
does not assume).

Attribution with the float64 truth: a gradient that is exactly 0 in exact arithmetic (the bias of a
layer followed by BatchNormalization in training mode) is computed as rounding noise, and Adam
turns noise g into an update ``lr * g / (|g| + eps)`` of up to ``lr``: from then on both float32
runs wander away from the exact one, chaotically, and from each other. A step beyond the budget is
*attributed to rounding* when both float32 runs are about equally far from the float64 run (neither
distance more than ``ROUNDING_RATIO`` = 100 times the other). A broken update rule or gradient fails
that test by orders of magnitude: the float64 run shares scratch's code, so scratch stays near it
while Keras does not (or the other way round for a bug only float32 hits).

Why no Adam-aware budget replaces that test: the only bound on how far Adam's gain can carry a
rounding difference is the bound on the update itself, ``|step| <= lr * (1 - beta1) / sqrt(1 - beta2)``
(Kingma and Ba, section 2.1: 3.16 lr for Keras's defaults). A budget of twice that per step would
pass any update rule whose steps stay that size, a wrong ``beta1`` or ``beta2`` among them; the
float64 run does not have to guess the gain, it measures which side left exact arithmetic.
"""

ROUNDING_RATIO = 100.0

import numpy as np

from . import keras_runner as kr
from .gradients import gradient_reduction, keras_loss, zero_dropout
from .tolerance import training_budget


def keras_optimizer(kmodel, name, config):
    lib = kr._model_api(kmodel)
    cfg = dict(config)
    lr = cfg.get("learning_rate")
    if hasattr(lr, "get_config"):   # a scratch schedule -> the Keras schedule of the same name
        cfg["learning_rate"] = getattr(lib.optimizers.schedules, type(lr).__name__)(
            **{k: v for k, v in lr.get_config().items()})
    return getattr(lib.optimizers, name)(**cfg)


def keras_training_side(kmodel, batches, loss, optimizer, optimizer_config):
    """Keras ``train_on_batch`` on ``batches`` from ``kmodel``'s weights (which it moves): {losses
    (one per step, as Keras returns them), weights (``get_weights()`` after each step), infos}.
    Plain arrays and JSON, so ``parity run`` can cache it (``parity.suite_training``)."""
    zero_dropout(kmodel, None)
    kmodel.compile(optimizer=keras_optimizer(kmodel, optimizer, optimizer_config), loss=keras_loss(kmodel, loss))
    # Create the optimizer's slots now, as Keras 3's train_on_batch does itself: tf_keras would create
    # them inside its first traced step and then trace the whole step a second time (the traces are
    # most of the cost of a short run; the slots start at zero either way).
    kmodel.optimizer.build(kmodel.trainable_variables)
    infos = kr.layer_infos(kmodel)
    losses, weights = [], []
    for xs, y, sw in batches:
        feed = xs if len(xs) > 1 else xs[0]
        losses.append(float(np.asarray(kmodel.train_on_batch(feed, y, sample_weight=sw))))
        weights.append([np.asarray(w) for w in kmodel.get_weights()])
    return dict(losses=losses, weights=weights, infos=infos)


def training_parity(kmodel, smodel, batches, loss, optimizer, optimizer_config, truth=None, dtype=np.float32,
                    keras_side=None):
    """Per-step records for ``batches`` = [(xs, y, sample_weight)], plus the verdict.

    ``optimizer`` is a class name ('Adam'); ``optimizer_config`` its keyword arguments (the same
    for both sides); ``keras_side`` is ``keras_training_side``'s result for them (computed from
    ``kmodel`` when None). Returns {steps: [...], passed, first_failing_step, worst_weight}.
    """
    from scratch import optimizers as sopt
    from scratch.trainer import Trainer

    if keras_side is None:
        keras_side = keras_training_side(kmodel, batches, loss, optimizer, optimizer_config)
    if len(keras_side["losses"]) != len(batches):
        raise ValueError(f"Keras took {len(keras_side['losses'])} steps for {len(batches)} batches")
    zero_dropout(None, smodel)
    trainer = Trainer(smodel).compile(loss, sopt.get(optimizer, **optimizer_config))
    t_trainer = None
    if truth is not None:
        zero_dropout(None, truth)
        t_trainer = Trainer(truth).compile(loss, sopt.get(optimizer, **optimizer_config))
    reduction = gradient_reduction(keras_side["infos"], len(batches[0][0][0]))
    steps, first = [], None
    for k, (xs, y, sw) in enumerate(batches, start=1):
        k_loss, k_weights = keras_side["losses"][k - 1], keras_side["weights"][k - 1]
        s_loss = trainer.train_on_batch(xs, y, sw)
        t_loss = None
        if t_trainer is not None:
            t_loss = t_trainer.train_on_batch([np.asarray(x, np.float64) if np.asarray(x).dtype.kind == "f" else x
                                               for x in xs], y, sw)
        lr = float(trainer.optimizer.learning_rate)
        worst = dict(ratio=-1.0)
        for (name, sw_), kw in zip(keras_order_weights(smodel), k_weights):
            if np.shape(sw_) != np.shape(kw):   # never compare two different weights
                raise ValueError(f"weight order: scratch '{name}' {np.shape(sw_)} vs Keras {np.shape(kw)}")
            diff = float(np.max(np.abs(np.asarray(sw_, np.float64) - kw), initial=0.0))
            budget = training_budget(dtype, step=k, scale=float(np.max(np.abs(kw), initial=0.0)), lr=lr,
                                     reduction=reduction)
            ratio = diff / budget
            if ratio > worst["ratio"]:
                worst = dict(ratio=ratio, weight=name, diff=diff, budget=budget)
        loss_budget = training_budget(dtype, step=k, scale=abs(k_loss), lr=0.0, reduction=reduction)
        loss_diff = abs(s_loss - k_loss)
        within = worst["ratio"] <= 1.0 and loss_diff <= loss_budget
        row = dict(step=k, loss_scratch=s_loss, loss_keras=k_loss, loss_truth=t_loss, loss_diff=loss_diff,
                   loss_budget=loss_budget, worst_weight=worst["weight"], weight_diff=worst["diff"],
                   weight_budget=worst["budget"], within_budget=within, attributed_to_rounding=False)
        if t_trainer is not None:
            st = max(float(np.max(np.abs(np.asarray(a, np.float64) - b), initial=0.0))
                     for a, b in zip(smodel.get_weights(), truth.get_weights()))
            kt = max(float(np.max(np.abs(np.asarray(a, np.float64) - b), initial=0.0))
                     for a, (_, b) in zip(k_weights, keras_order_weights(truth)))
            row["scratch_vs_truth"], row["keras_vs_truth"] = st, kt
            if not within:
                row["attributed_to_rounding"] = bool(max(st, kt) <= ROUNDING_RATIO * max(min(st, kt), 1e-30))
        row["passed"] = within or row["attributed_to_rounding"]
        steps.append(row)
        if not row["passed"] and first is None:
            first = k
    return dict(steps=steps, passed=first is None, first_failing_step=first,
                max_weight_diff=max(r["weight_diff"] for r in steps), reduction=reduction)


def keras_order_weights(model):
    """A scratch model's ``[(name, array)]`` in Keras's ``get_weights()`` order: layer by layer, each
    layer's weights in its own order (Keras 3 and tf_keras alike)."""
    return [(f"{l.name}/{n}", w) for l in model.layers for n, w in zip(l.active_weight_names(), l.get_weights())]


def format_training_table(result):
    has_truth = "scratch_vs_truth" in result["steps"][0]
    head = f"{'step':>4} {'loss scratch':>13} {'loss Keras':>13} {'|dloss|':>10} {'max |dw|':>10} {'budget':>10}"
    head += f" {'scr-f64':>10} {'keras-f64':>10}" if has_truth else ""
    lines = [head + "  worst weight", "-" * (len(head) + 30)]
    for r in result["steps"]:
        line = (f"{r['step']:>4} {r['loss_scratch']:>13.7g} {r['loss_keras']:>13.7g} {r['loss_diff']:>10.2e} "
                f"{r['weight_diff']:>10.2e} {r['weight_budget']:>10.2e}")
        if has_truth:
            line += f" {r['scratch_vs_truth']:>10.2e} {r['keras_vs_truth']:>10.2e}"
        mark = "" if r["within_budget"] else "  rounding (f64)" if r["attributed_to_rounding"] else "  FAIL"
        lines.append(line + f"  {r['worst_weight']}{mark}")
    if result["first_failing_step"]:
        lines.append(f"first failing step: {result['first_failing_step']}")
    return "\n".join(lines)
