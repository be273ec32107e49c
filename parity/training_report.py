"""The per-model gradient and training-parity sections of ``parity run``'s parity.md and index.html.

The numbers come from ``parity.suite_training`` (in parity.json under each model's ``gradients``
and ``training``); a failing section is a failing model, so its first diverging weight or first
failing step is also in the model's failures at the top of both reports.
"""

import html
import os

from . import plots
from .suite_plot_cache import cached

plot_training_parity = cached(plots.plot_training_parity)   # drawn once per distinct result (suite_plot_cache)

OVERVIEW_HEADERS = ["model", "gradients", "weights ok", "worst err/tol", "first diverging weight", "training",
                    "optimizer", "steps ok", "worst dw/budget", "beyond budget, rounding (f64)", "first failing step",
                    "seconds"]
GRAD_HEADERS = ["weight", "shape", "max abs err", "tolerance", "err/tol", "max abs grad", "scratch vs f64",
                "Keras vs f64", "status"]
TRAIN_HEADERS = ["step", "loss scratch", "loss Keras", "loss f64", "abs dloss", "loss budget", "max abs dw", "budget",
                 "dw/budget", "worst weight", "scratch vs f64", "Keras vs f64", "status"]
EXPLAIN = ("Gradients: d loss / d every trainable weight (and every float input) on one batch of test samples, "
           "scratch against tf.GradientTape, training mode with dropout at 0; tolerance: the backward rule of "
           "parity.tolerance (err/tol <= 1 passes); the first weight in Keras order that fails is named. "
           "Training: Keras train_on_batch against the scratch trainer from the file's weights on the same "
           "batches, with the MANIFEST's optimizer and learning rate; after every step the loss and every weight "
           "are compared against the drift budget (parity.tolerance.training_budget: k steps allow k times one "
           "step's rounding). A step beyond the budget passes only when the float64 scratch run shows both float32 "
           "runs equally far from exact arithmetic (attributed to rounding, parity.training). Either section "
           "failing fails the model.")


def _e(x):
    return "" if x is None else f"{x:.2e}"


def _g(x):
    return "" if x is None else f"{x:.7g}"


def verdict(sec):
    if not sec:
        return "not run"
    if "skipped" in sec:
        return "skipped"
    if "error" in sec:
        return "FAIL (error)"
    return "PASS" if sec["passed"] else "FAIL"


def _sections(data):
    return {n: r for n, r in data["models"].items() if r.get("gradients") or r.get("training")}


SKIPPED = "Gradient and training parity: skipped (--no-training); make parity runs them."


def _all_skipped(sections):
    return all("skipped" in (r.get("gradients") or {}) for r in sections.values())


def overview_rows(data):
    rows = []
    for name, r in _sections(data).items():
        g, t = r.get("gradients") or {}, r.get("training") or {}
        grows, tsteps = g.get("rows") or [], t.get("steps") or []
        worst = max((x.get("err_over_tol", 0.0) for x in grows), default=None)
        ratio = max((s["weight_diff"] / s["weight_budget"] for s in tsteps if s["weight_budget"]), default=None)
        rounding = sum(not s["within_budget"] and s["attributed_to_rounding"] for s in tsteps)
        seconds = sum(s.get("seconds", 0.0) for s in (g, t))
        rows.append([name, verdict(g), f"{sum(x['passed'] for x in grows)}/{len(grows)}" if grows else "",
                     "" if worst is None else f"{worst:.3f}", g.get("first_diverging") or ("none" if grows else ""),
                     verdict(t), t.get("optimizer", ""),
                     f"{sum(s['passed'] for s in tsteps)}/{len(tsteps)}" if tsteps else "",
                     "" if ratio is None else f"{ratio:.3g}", rounding if tsteps else "",
                     t.get("first_failing_step") or ("none" if tsteps else ""), f"{seconds:.1f}"])
    return rows


def gradient_rows(g):
    rows = []
    for r in g.get("rows") or []:
        status = "ok" if r["passed"] else "FAIL" + (f" ({r['note']})" if r.get("note") else "")
        rows.append([r["weight"], "x".join(str(d) for d in r["shape"]) if r.get("shape") else "", _e(r.get("max_abs")),
                     _e(r.get("atol")), "" if r.get("err_over_tol") is None else f"{r['err_over_tol']:.3f}",
                     _e(r.get("scale")), _e(r.get("scratch_vs_truth")), _e(r.get("keras_vs_truth")), status])
    return rows


def training_rows(t):
    rows = []
    for s in t.get("steps") or []:
        status = ("ok" if s["within_budget"] else "ok: rounding (f64)" if s["attributed_to_rounding"] else "FAIL")
        rows.append([s["step"], _g(s["loss_scratch"]), _g(s["loss_keras"]), _g(s.get("loss_truth")),
                     _e(s["loss_diff"]), _e(s["loss_budget"]), _e(s["weight_diff"]), _e(s["weight_budget"]),
                     f"{s['weight_diff'] / s['weight_budget']:.3g}" if s["weight_budget"] else "", s["worst_weight"],
                     _e(s.get("scratch_vs_truth")), _e(s.get("keras_vs_truth")), status])
    return rows


KERAS_SOURCE = dict(cache="read from the cache", keras="computed in this run")


def cache_line(data):
    """How many models' Keras gradients and train_on_batch steps were read from the cache."""
    sections = [(n, sec) for n, r in _sections(data).items() for sec in (r.get("gradients"), r.get("training"))
                if sec and sec.get("keras_source")]
    cached = sorted({n for n, sec in sections if sec["keras_source"] == "cache"}, key=list(data["models"]).index)
    if not cached:
        return "Keras gradients and train_on_batch steps: computed in this run."
    return (f"Keras gradients and train_on_batch steps read from the cache (same file, batches, loss, optimizer, "
            f"steps, code and stack; --no-cache recomputes; scratch always recomputes) for "
            f"{sum(sec['keras_source'] == 'cache' for _, sec in sections)} of {len(sections)} sections, models: "
            f"{', '.join(cached)}.")


def _setup_line(r):
    g, t = r.get("gradients") or {}, r.get("training") or {}
    parts = []
    if "rows" in g:
        parts.append(f"gradients: {g['samples']} samples, {g['loss']}, {g['mode']}; loss scratch "
                     f"{g['loss_scratch']:.7g}, Keras {g['loss_keras']:.7g}")
    if "steps" in t:
        cfg = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in t["optimizer_config"].items())
        parts.append(f"training: {len(t['steps'])} steps of {t['batch_size']}, {t['optimizer']}({cfg}), {t['loss']}")
    sources = [f"{label} {KERAS_SOURCE[sec['keras_source']]}" for label, sec in (("gradients", g), ("training", t))
               if sec.get("keras_source")]
    if sources:
        parts.append("Keras side: " + ", ".join(sources))
    for label, sec in (("gradients", g), ("training", t)):
        if sec.get("error"):
            parts.append(f"{label}: {sec['error']}")
        if sec.get("skipped"):
            parts.append(f"{label}: skipped ({sec['skipped']})")
    return "; ".join(parts)


def md_lines(data, md_table):
    """parity.md's section: the overview, then each model's gradient and training tables."""
    sections = _sections(data)
    if not sections:
        return []
    if _all_skipped(sections):
        return ["", "## Gradient and training parity", "", SKIPPED]
    out = ["", "## Gradient and training parity", "", EXPLAIN, "", cache_line(data), "",
           md_table(OVERVIEW_HEADERS, overview_rows(data))]
    for name, r in sections.items():
        g, t = r.get("gradients") or {}, r.get("training") or {}
        if "skipped" in g:
            continue
        out += ["", f"### {name}: gradients {verdict(g)}, training {verdict(t)}", "", _setup_line(r)]
        if g.get("rows"):
            out += ["", md_table(GRAD_HEADERS, gradient_rows(g))]
        if t.get("steps"):
            out += ["", md_table(TRAIN_HEADERS, training_rows(t)), "", f"![training parity](img/training_{name}.png)"]
    return out


def html_parts(folder, data, table_html, fold):
    """index.html's section; draws ``img/training_<model>.png`` per model. ``fold(summary, body, open_)``."""
    sections = _sections(data)
    if not sections:
        return []
    if _all_skipped(sections):
        return [f"<h2 id='training'>Gradient and training parity</h2><p>{html.escape(SKIPPED)}</p>"]
    rows = overview_rows(data)
    parts = ["<h2 id='training'>Gradient and training parity (per model)</h2>", f"<p>{html.escape(EXPLAIN)}</p>",
             f"<p>{html.escape(cache_line(data))}</p>",
             table_html(OVERVIEW_HEADERS, rows, ["ok" if r[1] in ("PASS", "skipped") and r[5] in ("PASS", "skipped")
                                                 else "fail" for r in rows])]
    for name, r in sections.items():
        g, t = r.get("gradients") or {}, r.get("training") or {}
        if "skipped" in g:
            continue
        body = [f"<p>{html.escape(_setup_line(r))}</p>"]
        if t.get("steps"):
            plot_training_parity(os.path.join(folder, "img", f"training_{name}.png"), dict(steps=t["steps"]),
                                 f"{name}: training parity ({verdict(t)}), {t['optimizer']}")
            body.append(f"<img src='img/training_{html.escape(name)}.png' alt='training parity {html.escape(name)}'>")
        if g.get("rows"):
            body.append("<h4>Gradients</h4>" + table_html(GRAD_HEADERS, gradient_rows(g),
                                                          ["ok" if x["passed"] else "fail" for x in g["rows"]]))
        if t.get("steps"):
            body.append("<h4>Training steps</h4>" + table_html(TRAIN_HEADERS, training_rows(t),
                                                               ["ok" if s["passed"] else "fail" for s in t["steps"]]))
        first = g.get("first_diverging") or "none"
        summary = (f"{html.escape(name)}: gradients {verdict(g)} (first diverging weight: {html.escape(first)}), "
                   f"training {verdict(t)}")
        bad = verdict(g) != "PASS" or verdict(t) != "PASS"
        parts.append(fold(summary, "".join(body), open_=bad))
    return parts
