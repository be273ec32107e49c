"""Every tolerance the project uses, and the one comparison everyone calls.

Rule (documented once, used everywhere)
---------------------------------------
Two float results agree when, element-wise,

    |actual - desired| <= atol_eff + rtol * |desired|
    atol_eff = atol * max(1, scale) * sqrt(max(1, reduction))

- ``atol``/``rtol`` come from the table for the compared dtype and the kind of check.
- ``scale`` is the largest magnitude in ``desired``. Rounding error in a float sum is proportional
  to the size of the terms, so an element near zero in a tensor of large values legitimately
  carries an absolute error of ~eps * scale.
- ``reduction`` is the length of the longest sum behind one output element (``kh*kw*cin`` for a
  conv, ``in`` for Dense, ``T*units`` for a recurrence). Independent rounding errors in an n-term
  sum grow like sqrt(n). When a layer's output is compared end to end through a model, it carries
  the rounding of every layer before it, so ``parity.compare`` passes the longest *chain* of sums
  behind the element (the layer's own reduction plus the largest among its inputs); a layer fed
  Keras's own inputs uses its own reduction alone.

The float32 ``atol`` is a few machine epsilons (eps32 = 1.19e-7). Nothing here is tuned to make
a test pass: when a comparison fails, the difference is a finding to explain.

Gradient checks compare an analytic gradient against centered finite differences in float64 with
``rel_error = max|a - b| / max(1e-8, max(|a| + |b|))`` (CS231n's form), bounded by the gradient
table. Centered differences at step h on an O(1) objective carry ~eps64/h of rounding noise, so a
relative bound is only measurable for gradients above that noise / bound; a gradient smaller than
that (a contracting recurrence can shrink d(initial_state) to ~1e-7) is instead held to the noise
itself: ``max|a - b| <= eps64 / h``.

Gradient parity (``kind="backward"``: scratch's backward against ``tf.GradientTape``) uses the
forward rule with its own table and the *backward* reduction: the longest sum behind one gradient
element. A weight gradient sums over every position the weight was used at (``N`` for a Dense
kernel, ``N*oh*ow`` for a conv kernel, ``N*T`` for a recurrent kernel), and dx sums over every
output the input element feeds (``units``, ``kh*kw*filters``). Through a whole model the chain of
those sums is passed, as for the forward rule. The table has the forward table's values: a backward
pass is the same kind of arithmetic (products and sums) run in the other direction, so it earns no
looser constants, only its own reduction lengths. ``scale`` is the largest gradient magnitude of the
compared array (one weight's gradient, or dx).

Amplified rounding (end to end through a model, against Keras's own float64 twin)
-----------------------------------------------------------------------------------
The forward rule's allowance is the rounding of a chain of sums, at the compared output's own
``scale``, and it must hold the rounding of *both* float32 sides. Some models amplify rounding far
beyond it. EfficientNetV2 with random weights is one: its activations grow with depth (to ~300 in
V2S), and every squeeze-excite gate ``sigmoid(conv(...))`` turns the absolute error of a
pre-activation summed from terms of that size into the error of a gate whose scale is 1, which
the gated product then multiplies back by the activation. There Keras does not meet the rule
against itself: its own float32 result misses its float64 result by up to 24x the rule (V2S, 173
of 515 nodes), and Keras on an input moved by one ulp, or with oneDNN off, misses Keras by 36x and
17x. The direct comparison cannot tell a scratch bug from the model's own rounding there.

So a node that fails the direct rule end to end gets a second judge, when Keras's float64 twin
``T`` of the model is at hand (``parity.keras_truth``: the same config and weights, every dtype
float64): scratch's float32 output against ``T``,

    |scratch - T| <= E_K + atol_eff + rtol * |T|,    E_K = max |keras_float32 - T| over the node

scratch may miss the exact result by as much as Keras's float32 result does, plus the rule; the
node passes if either judge passes it. The triangle inequality ``|s - k| <= |s - T| + |k - T|``
says why a correct scratch can fail the direct rule there: Keras's own miss ``E_K`` is part of
every ``|s - k|``. ``T`` is Keras's semantics, not scratch's (the older ``truth`` of
``parity.compare`` is scratch rerun in float64, and moves with a scratch bug), so a scratch layer
wrong by more than Keras's own float32 error at that node still fails; an error smaller than
``E_K`` is below what float32 Keras resolves end to end, and the layer-by-layer run (each layer fed
Keras's inputs, the direct rule unchanged) still bounds every layer's own error. Where Keras meets
the rule against ``T`` (``E_K`` within it), the second judge allows at most the rule twice: the
budget of two float32 sides the direct rule already meant. ``compare_to_truth``.

Its limits, measured, not loosened: (1) where rounding is amplified, ``|s - T|`` and ``|k - T|`` are
two draws of the same amplified noise, so an implementation exactly as accurate as Keras can land
further from ``T`` by chance (reduced-width V2S: 1.78; full V2S passes at 0.83, a second float32
Keras with oneDNN off at 0.56). A failure here is a finding to look at, with both numbers given.
(2) A chaotic model, where Keras float32's output misses its float64 twin by its whole size
(random-weight V2M and V2L: predictions differ by 1.0; a second float32 Keras fails this judge
too, 3.1), cannot be judged end to end by any float32 implementation; layer by layer still can.

Training parity (N optimizer steps from the same weights on the same batches) is judged by
``training_budget`` below: the drift budget grows linearly in the step count, because every step
feeds the rounding of the last one into the next update (errors add up step by step; an unstable
run would grow faster, and is then a finding).
"""

import math

import numpy as np

EPS32 = float(np.finfo(np.float32).eps)
EPS64 = float(np.finfo(np.float64).eps)

# dtype -> (atol, rtol) for forward outputs.
FORWARD = {
    np.dtype(np.float32): (4 * EPS32, 32 * EPS32),
    np.dtype(np.float64): (4 * EPS64, 32 * EPS64),
}

# dtype -> (atol, rtol) for gradients against tf.GradientTape (rule: module docstring).
BACKWARD = dict(FORWARD)

# dtype -> max rel_error for analytic vs numerical gradients.
GRADIENT = {
    np.dtype(np.float64): 1e-6,
    np.dtype(np.float32): 1e-2,
}

# Centered-difference step for float64 gradient checks, and the rounding noise it leaves.
GRADIENT_STEP = 1e-5
FD_NOISE = EPS64 / GRADIENT_STEP


def tolerance(dtype, *, kind="forward", scale=1.0, reduction=1):
    """The (atol_eff, rtol) pair for comparing arrays of ``dtype`` under the rule above."""
    dtype = np.dtype(dtype)
    if kind not in ("forward", "backward"):
        raise ValueError(f"kind must be 'forward' or 'backward' for element-wise tolerances. Received: kind={kind!r}")
    table = FORWARD if kind == "forward" else BACKWARD
    if dtype not in table:
        raise ValueError(f"no tolerance for dtype {dtype}; known: {[str(d) for d in table]}")
    atol, rtol = table[dtype]
    return atol * max(1.0, float(scale)) * math.sqrt(max(1, int(reduction))), rtol


def compare(actual, desired, *, reduction=1, atol=None, rtol=None, dtype=None, kind="forward"):
    """Error statistics of ``actual`` against ``desired`` (no assertion).

    Returns a dict: max_abs, max_rel, mean_abs, eps_units (max_abs in units of eps*max(1, scale)),
    frac_beyond (share of elements outside tolerance), headroom (the largest element-wise
    ``|actual - desired| / (atol + rtol*|desired|)``: below 1 passes, and how far below says how much
    room is left), atol, rtol, worst_index, worst_actual, worst_desired, passed. ``dtype`` picks the table row (defaults to desired's dtype).
    """
    a = np.asarray(actual, dtype=np.float64)
    d = np.asarray(desired, dtype=np.float64)
    dtype = np.dtype(dtype or np.asarray(desired).dtype)
    finite = d[np.isfinite(d)]
    scale = float(np.max(np.abs(finite))) if finite.size else 0.0  # an inf must not widen the tolerance
    t_atol, t_rtol = tolerance(dtype, kind=kind, scale=scale, reduction=reduction)
    atol = t_atol if atol is None else float(atol)
    rtol = t_rtol if rtol is None else float(rtol)
    if a.size == 0:
        return dict(max_abs=0.0, max_rel=0.0, mean_abs=0.0, eps_units=0.0, frac_beyond=0.0, headroom=0.0, atol=atol,
                    rtol=rtol, worst_index=None, worst_actual=None, worst_desired=None, passed=True)
    diff = np.abs(a - d)
    nonfinite = ~(np.isfinite(a) & np.isfinite(d))
    # Identical infinities agree; any other non-finite pair is an infinite error.
    diff = np.where(nonfinite, np.where(a == d, 0.0, np.inf), diff)
    bound = atol + rtol * np.abs(np.where(np.isfinite(d), d, 0.0))
    beyond = diff > bound
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(diff == 0, 0.0, diff / bound)   # a zero bound (atol=0 override) makes any error inf
    worst = np.unravel_index(int(np.argmax(np.where(beyond, diff, -1.0) if beyond.any() else diff)), a.shape)
    eps = float(np.finfo(dtype).eps) if dtype.kind == "f" else EPS32
    max_abs = float(diff.max())
    return dict(
        max_abs=max_abs,
        max_rel=float(np.max(diff / np.maximum(np.abs(d), np.finfo(np.float64).tiny))),
        mean_abs=float(diff.mean()),
        eps_units=max_abs / (eps * max(1.0, scale)),
        frac_beyond=float(beyond.mean()),
        headroom=float(ratio.max()),
        atol=atol,
        rtol=rtol,
        worst_index=tuple(int(i) for i in worst),
        worst_actual=float(a[worst]),
        worst_desired=float(d[worst]),
        passed=not bool(beyond.any()),
    )


def compare_to_truth(actual, reference, truth, *, reduction=1, dtype=None):
    """The amplified-rounding rule (module docstring): ``actual`` (scratch) and ``reference``
    (Keras, same dtype) against ``truth`` (Keras's float64 twin), no assertion.

    Returns a dict: amplified (the reference itself fails the forward rule against the truth),
    keras_headroom and keras_max_abs (``E_K``) of the reference against the
    truth, max_abs and headroom (largest ``|actual - T| / (E_K + atol_eff + rtol |T|)``) of actual,
    atol (``atol_eff``), rtol, worst_index, passed (every element within the bound).
    """
    dtype = np.dtype(dtype or np.asarray(reference).dtype)
    t = np.asarray(truth, dtype=np.float64)
    keras = compare(reference, t, reduction=reduction, dtype=dtype)
    a = np.asarray(actual, dtype=np.float64)
    e_k = keras["max_abs"]
    bound = e_k + keras["atol"] + keras["rtol"] * np.abs(np.where(np.isfinite(t), t, 0.0))
    diff = np.abs(a - t)
    diff = np.where(np.isfinite(a) & np.isfinite(t), diff, np.where(a == t, 0.0, np.inf))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(diff == 0, 0.0, diff / bound)
    amplified = not keras["passed"]
    headroom = float(ratio.max()) if ratio.size else 0.0
    return dict(amplified=amplified, keras_headroom=keras["headroom"], keras_max_abs=e_k,
                max_abs=float(diff.max()) if diff.size else 0.0, headroom=headroom, atol=keras["atol"],
                rtol=keras["rtol"], worst_index=tuple(int(i) for i in np.unravel_index(int(np.argmax(ratio)), a.shape))
                if ratio.size else None, passed=math.isfinite(e_k) and headroom <= 1.0)


def assert_close(actual, desired, *, kind="forward", label, reduction=1, atol=None, rtol=None):
    """Assert shape, then dtype, then values agree; on failure name the layer and the worst element.

    ``kind`` is 'forward' (element-wise rule above), 'backward' (the same rule for gradients
    against Keras's) or 'gradient' (finite differences: rel_error against the table).
    """
    actual = np.asarray(actual)
    desired = np.asarray(desired)
    if actual.shape != desired.shape:
        raise AssertionError(f"[{label}] shape mismatch: mine {actual.shape} vs Keras {desired.shape}")
    if actual.dtype != desired.dtype:
        raise AssertionError(f"[{label}] dtype mismatch: mine {actual.dtype} vs Keras {desired.dtype}")
    if kind == "gradient":
        return assert_gradient_close(actual, desired, label=label)
    stats = compare(actual, desired, reduction=reduction, atol=atol, rtol=rtol,
                    kind="backward" if kind == "backward" else "forward")
    if not stats["passed"]:
        raise AssertionError(
            f"[{label}] values differ: worst at index {stats['worst_index']}: "
            f"mine {stats['worst_actual']!r} vs Keras {stats['worst_desired']!r}; "
            f"max abs err {stats['max_abs']:.3e}, max rel err {stats['max_rel']:.3e}, "
            f"{100 * stats['frac_beyond']:.3f}% of {actual.size} elements beyond "
            f"atol={stats['atol']:.3e}, rtol={stats['rtol']:.3e} (reduction={reduction})"
        )
    return stats


def rel_error(a, b):
    """CS231n's relative error between two gradients: max|a-b| / max(1e-8, max(|a|+|b|))."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(1e-8, float(np.max(np.abs(a) + np.abs(b)))))


def assert_gradient_close(analytic, numeric, *, label):
    """Assert an analytic gradient matches its finite-difference estimate under the gradient table."""
    analytic = np.asarray(analytic)
    numeric = np.asarray(numeric)
    if analytic.shape != numeric.shape:
        raise AssertionError(f"[{label}] gradient shape mismatch: analytic {analytic.shape} vs numeric {numeric.shape}")
    bound = GRADIENT[np.dtype(analytic.dtype)]
    err = rel_error(analytic, numeric)
    if analytic.size and float(np.max(np.abs(analytic) + np.abs(numeric))) < FD_NOISE / bound:
        # Below what centered differences resolve: the relative error would measure noise.
        abs_err = float(np.max(np.abs(analytic.astype(np.float64) - numeric)))
        if not abs_err <= FD_NOISE:
            raise AssertionError(f"[{label}] gradient below finite-difference resolution differs by "
                                 f"{abs_err:.3e} > noise {FD_NOISE:.1e}")
        return err
    if not err <= bound:
        idx = np.unravel_index(int(np.argmax(np.abs(analytic.astype(np.float64) - numeric))), analytic.shape)
        raise AssertionError(
            f"[{label}] gradient rel_error {err:.3e} > {bound:.1e}; worst at index {tuple(int(i) for i in idx)}: "
            f"analytic {float(analytic[idx])!r} vs numeric {float(numeric[idx])!r}"
        )
    return err


def numerical_gradient(f, x, dout, h=GRADIENT_STEP):
    """Centered-difference gradient of sum(f(x) * dout) with respect to ``x`` (modified in place, restored)."""
    grad = np.zeros_like(x, dtype=np.float64)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    for _ in it:
        i = it.multi_index
        old = x[i].copy()
        x[i] = old + h
        plus = np.sum(np.asarray(f(), dtype=np.float64) * dout)
        x[i] = old - h
        minus = np.sum(np.asarray(f(), dtype=np.float64) * dout)
        x[i] = old
        grad[i] = (plus - minus) / (2 * h)
    return grad


def training_budget(dtype, *, step, scale, lr, reduction):
    """Largest weight (or loss) difference allowed after ``step`` training steps (module docstring).

    One step's allowance is the forward rule at the weight's ``scale`` plus one update's rounding,
    ``lr * atol * sqrt(reduction)``; step k allows k of them.
    """
    atol, _ = FORWARD[np.dtype(dtype)]
    per_step = atol * (max(1.0, float(scale)) + float(lr) * math.sqrt(max(1, int(reduction))))
    return int(step) * per_step
