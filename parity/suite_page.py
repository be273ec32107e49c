"""``index.html`` of ``parity run``: what a person reads first is what failed, then the evidence.

Order of the page: the verdict and the tolerance in force; the gate; the summary with failing models
first; one section per failing model, open; then the plots (each plot has a legend or is small
multiples, error plots draw the tolerance line and show exact zero as 0); and at the end everything
bulky (confusion matrices, filters, caption grids, per-layer tables) in collapsed ``<details>``, so
the default page stays short. Nothing here prints a Python repr: every value is formatted.
"""

import html
import os

from .compare_table import LEGEND, overrides_line
from . import plots
from .suite_plot_cache import cached
from .train_demo_page import html_section as train_demo_section
from .training_report import html_parts as training_parts

# Each figure is drawn once per distinct input (suite_plot_cache): a warm run copies most of them.
plot_caption_grid, plot_confusions, plot_error_budget, plot_error_vs_depth, plot_filters, plot_history = (
    cached(getattr(plots, name)) for name in ("plot_caption_grid", "plot_confusions", "plot_error_budget",
                                              "plot_error_vs_depth", "plot_filters", "plot_history"))


def _esc(x):
    return html.escape(str(x))


def _fold(summary, body, open_=False):
    return f"<details{' open' if open_ else ''}><summary>{summary}</summary>{body}</details>"


def _img(src, alt):
    return f"<img src='img/{src}' alt='{_esc(alt)}'>"


def margins_text(margins):
    return ", ".join(f"{k.replace('_', '-')} {v:g}" for k, v in margins.items())


def divergence_text(name, mode, d, samples):
    """One caption or class divergence in words."""
    if mode == "class":
        tie = "a near-tie" if d["near_tie"] else "NOT a near-tie"
        return (f"{name}: sample {d['id']}: Keras says class {d['keras']}, scratch says {d['scratch']}; Keras's top two "
                f"probabilities differ by {d['gap']:.2e} against a tie bound of {d['tie_bound']:.2e}: {tie}")
    verdict = "a near-tie in Keras's own logits" if d.get("near_tie") else "NOT explained by a near-tie"
    if d.get("reason"):
        return f"{name} {mode}: {d['reason']}: {verdict}"
    where = f"sample {d.get('sample')}, word {int(d.get('step', 0)) + 1}"
    if "keras_word" in d:
        what = f"Keras chose '{d['keras_word']}', scratch '{d.get('scratch_word', '?')}'"
        what += f" (Keras's top-2 logit gap {d['keras_gap']:.2e}, tie bound {d['tie_bound']:.2e})"
    else:
        what = f"the beams differ at {len(d.get('ranks', []))} rank(s)"
    caption = next((s for s in samples if s.get("index") == d.get("sample")), None)
    if caption is not None:
        k, s = (caption["keras"], caption["scratch"]) if mode == "greedy" else (caption["keras_beam"],
                                                                               caption["scratch_beam"])
        what += f"; captions: Keras \u201c{k}\u201d, scratch \u201c{s}\u201d"
    return f"{name} {mode}: {where}: {what}: {verdict}"


def divergence_lines(data):
    lines = []
    for name, r in data["models"].items():
        for d in r.get("classification", {}).get("disagreements", []):
            lines.append(divergence_text(name, "class", d, []))
        for mode in ("greedy", "beam"):
            for d in r.get(mode, {}).get("divergences", []):
                lines.append(divergence_text(name, mode, d, r.get("samples", [])))
    return lines


def _caption_rows(samples):
    """(reference, Keras, scratch) per shown sample; differing ones first (the suite chose which to keep)."""
    ordered = sorted(samples, key=lambda s: s["keras"] == s["scratch"])
    return [(s["references"][0], s["keras"], s["scratch"]) for s in ordered], [samples.index(s) for s in ordered]


def write_index(folder, data, manifest, assets, *, head, tables, table_html, layer_table):
    """Write ``index.html``; ``table_html(headers, rows, classes)`` and ``layer_table(result)`` draw tables."""
    img = os.path.join(folder, "img")
    models = data["models"]
    failing = [n for n, r in models.items() if not r["passed"]]
    order = failing + [n for n in models if n not in failing]
    parts = [f"<p class='{'pass' if data['passed'] else 'failw'}'>{_esc(head)}</p>",
             f"<p>{_esc(overrides_line(data.get('tolerance_overrides')))}</p>"]
    h, rows = tables["gate"]
    parts += ["<h2>Gate: scratch's metrics against the MANIFEST's Keras metrics</h2>",
              f"<p>scratch must not fall below the MANIFEST's Keras metric minus the margin "
              f"({_esc(margins_text(data['margin']))}).</p>",
              table_html(h, rows, ["ok" if r[-1] == "ok" else "fail" for r in rows])]
    h, rows = tables["summary"]
    by_name = {r[0]: r for r in rows}
    rows = [by_name[n] for n in order if n in by_name]
    parts += ["<h2>Summary</h2>", table_html(h, rows, ["ok" if r[-1] == "PASS" else "fail" for r in rows])]
    for n in failing:
        items = "".join(f"<li>{_esc(f)}</li>" for f in models[n]["failures"]) or "<li>see the per-layer table</li>"
        parts.append(f"<h2 class='failw'>FAIL: {_esc(n)}</h2><ul>{items}</ul>")
    classifiers = {n: models[n] for n in order if models[n].get("kind") == "classifier" and "per_layer" in models[n]}
    captioners = {n: models[n] for n in order if models[n].get("kind") == "captioner" and "per_layer" in models[n]}
    parts.append("<h2>Per-layer error against the tolerance</h2><p>Each small plot is one model: the largest "
                 "element error of each layer divided by the tolerance in force (err/tol). Below the red line at 1 the "
                 "layer passes; 0 means bit-identical. Inputs: the first test samples.</p>")
    if classifiers:
        plot_error_vs_depth(os.path.join(img, "depth_classifiers.png"),
                            {n: r["per_layer"] for n, r in classifiers.items()}, "Classifiers")
        parts.append(_img("depth_classifiers.png", "classifier error vs tolerance"))
    for part in ("encoder", "step", "train"):
        res = {n: r["per_layer"][part] for n, r in captioners.items() if part in r["per_layer"]}
        if res:
            plot_error_vs_depth(os.path.join(img, f"depth_captioner_{part}.png"), res, f"Captioners, {part} model")
            parts.append(_fold(f"Captioners, {part} model", _img(f"depth_captioner_{part}.png", f"{part} error"),
                               open_=any(not r["passed"] for r in res.values())))
    budget_model = next((n for n in order if n in classifiers), None)
    if budget_model and plot_error_budget(os.path.join(img, "budget.png"), classifiers[budget_model]["per_layer"],
                                          f"{budget_model}: float32 error against the float64 scratch truth"):
        parts.append(f"<h3>Float64 truth: {_esc(budget_model)}{' (failing)' if budget_model in failing else ''}</h3>"
                     + _img("budget.png", "error budget"))
    divs = divergence_lines(data)
    parts.append("<h2>Divergences (each must be a near-tie)</h2>"
                 + ("<ul>" + "".join(f"<li>{_esc(d)}</li>" for d in divs) + "</ul>" if divs else "<p>none</p>"))
    if classifiers:
        h, rows = tables["classifiers"]
        parts += ["<h2>CNN grid + LocallyConnected2D twin: Keras vs scratch</h2>", table_html(h, rows, None)]
        cms = []
        for n, r in classifiers.items():
            c = r["classification"]
            plot_confusions(os.path.join(img, f"cm_{n}.png"), c["confusion_keras"], c["confusion_scratch"],
                            list(range(len(c["confusion_keras"]))),
                            f"{n}: macro-F1 Keras {c['keras']['macro_f1']:.4f} | scratch {c['scratch']['macro_f1']:.4f}")
            cms.append(_fold(_esc(n), _img(f"cm_{n}.png", f"confusion {n}"), open_=n in failing))
        parts.append(_fold("Confusion matrices (Keras | scratch), one per model", "".join(cms)))
        strips = []
        for n in classifiers:
            k = (assets.get(n) or {}).get("kernel")
            if k is not None and plot_filters(os.path.join(img, f"filters_{n}.png"), k, f"{n}: first layer filters"):
                strips.append(_img(f"filters_{n}.png", f"filters {n}"))
        if strips:
            parts.append(_fold("First-layer filters (one colour scale per model)", "".join(strips)))
    if captioners:
        h, rows = tables["captioners"]
        parts += ["<h2>Captioners: Keras vs scratch</h2>", table_html(h, rows, None)]
        grids = []
        for n, r in captioners.items():
            imgs = (assets.get(n) or {}).get("images")
            if imgs is None or not r.get("samples"):
                continue
            rows_, idx = _caption_rows(r["samples"])
            differ = sum(k != s for _, k, s in rows_)
            plot_caption_grid(os.path.join(img, f"captions_{n}.png"), imgs[idx], rows_,
                              f"{n} (greedy): {differ} differing caption(s) and {len(rows_) - differ} agreeing samples")
            grids.append(_fold(f"{_esc(n)}: {differ} differing", _img(f"captions_{n}.png", f"captions {n}"),
                               open_=differ > 0))
        parts.append("<h2>Test images: reference / Keras / scratch</h2>" + "".join(grids))
    histories = {n: manifest.entry(n).raw.get("history") or {} for n in models}
    for kind in ("classifier", "captioner"):
        hs = {n: h for n, h in histories.items() if models[n].get("kind") == kind and h}
        if hs:
            plot_history(os.path.join(img, f"history_{kind}.png"), hs, f"Training curves: {kind}s (MANIFEST history)")
            parts.append(_fold(f"Training curves ({kind}s)", _img(f"history_{kind}.png", f"{kind} history")))
    parts += training_parts(folder, data, table_html, _fold)
    parts += bench_section(os.path.join(folder, "bench.json"), table_html)
    parts += train_demo_section(os.path.join(folder, "train_demo.json"), table_html)
    tables_ = []
    for n in order:
        for suffix, res in layer_parts(models[n]).items():
            first = res["first_diverging"] or "none"
            tables_.append(_fold(f"{_esc(n + suffix)}: {len(res['layers'])} layers, first diverging: {_esc(first)}",
                                 layer_table(res), open_=not res["passed"]))
    parts += ["<h2>Per-layer tables</h2>", f"<p class='legend'>{_esc(LEGEND)}</p>"] + tables_
    return parts


def bench_section(path, table_html):
    """The latest ``make bench`` (reports/bench.json), when there is one: speed is reported, never asserted."""
    import json

    try:
        with open(path, encoding="utf-8") as f:
            bench = json.load(f)
    except (OSError, ValueError):
        return ["<h2>Speed</h2><p>no reports/bench.json yet: run <code>make bench</code>.</p>"]
    rows = []
    for c in bench.get("cases", []):
        ratio = c.get("ratio")
        rows.append([c.get("case", "?"), _num(c.get("scratch_s")), _num(c.get("keras_s")), _num(ratio, 2),
                     _num(c.get("target"), 2), _num(c.get("scratch_peak_mb"), 0), _num(c.get("keras_peak_mb"), 0),
                     "met" if c.get("met") else ("not met" if ratio is not None else c.get("status", ""))])
    head = (f"{bench.get('time', '')}, mode {bench.get('mode', '?')}, load average (1/5/15 min) "
            f"{_load_text(bench.get('load_before'))} before and {_load_text(bench.get('load_after'))} after; "
            "ratio = scratch s / Keras s, medians of interleaved runs")
    return ["<h2>Speed (latest make bench)</h2>", f"<p>{_esc(head)}</p>",
            _fold(f"{sum(r[-1] == 'met' for r in rows)} of {len(rows)} cases meet their target",
                  table_html(["case", "scratch s", "Keras s", "ratio", "target", "scratch peak MB", "Keras peak MB",
                              "target"], rows, ["ok" if r[-1] == "met" else "fail" for r in rows]))]


def _load_text(load):
    """'0.99 / 1.02 / 2.15 on 2 CPUs' from bench.json's load record (never its dict repr)."""
    if not isinstance(load, dict):
        return "unknown"
    avg = " / ".join(_num(load.get(k), 2) or "?" for k in ("load1", "load5", "load15"))
    return f"{avg} on {load['cpus']} CPUs" if load.get("cpus") else avg


def _num(x, digits=3):
    return "" if x is None else f"{x:.{digits}f}"


def layer_parts(r):
    """{label suffix: compare result} for a model result (captioners have several graphs)."""
    pl = r.get("per_layer")
    if not pl:
        return {}
    return {"": pl} if "layers" in pl else {f"/{k}": v for k, v in pl.items()}
