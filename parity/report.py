"""Reports: ``parity.json`` (everything), ``parity.md`` (the tables), ``index.html`` (tables + PNG plots).

The plots themselves are drawn by plots.py (matplotlib PNGs written next to the page in ``img/``,
so the page works from a file:// URL and in a headless browser). JUnit XML for ``parity check --junit``.
"""

import html
import json
import os
import tempfile
import xml.etree.ElementTree as ET

import numpy as np

from .amplified import judge_line, row_text
from .compare_table import LEGEND, overrides_line
from .plots import plot_error_budget, plot_error_vs_depth
from .suite_page import divergence_lines, layer_parts, margins_text, write_index
from .train_demo_page import md_section as train_demo_md
from .training_report import md_lines as training_md_lines, verdict as section_verdict


# ---- files --------------------------------------------------------------------------------------
def write_atomic(path, text):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o644)   # mkstemp makes 0600; reports are read by artifact servers running as other users
    os.replace(tmp, path)


def to_json(obj):
    def default(o):
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, (set, tuple)):
            return list(o)
        return str(o)

    return json.dumps(obj, indent=1, default=default, allow_nan=True)


def write_junit(path, model, result, elapsed):
    """One <testcase> per compared layer; a failing layer carries the comparison's reason."""
    rows = result["layers"]
    failures = sum(not r["passed"] for r in rows)
    suite = ET.Element("testsuite", name=f"parity {os.path.basename(str(model))}", tests=str(len(rows)),
                       failures=str(failures), errors="0", time=f"{elapsed:.3f}")
    for r in rows:
        case = ET.SubElement(suite, "testcase", classname=f"parity.{os.path.basename(str(model))}",
                             name=f"{r['depth']:03d} {r['name']} ({r['class_name']})")
        if not r["passed"]:
            from .compare import _reason

            ET.SubElement(case, "failure", message=f"{r['name']} diverges from Keras").text = _reason(r)
        elif "vs_truth" in r:
            ET.SubElement(case, "system-out").text = row_text(r)
    props = ET.Element("properties")
    overrides = result.get("tolerance_overrides") or {}
    ET.SubElement(props, "property", name="tolerance", value="overridden" if overrides else "policy")
    for key, value in overrides.items():
        ET.SubElement(props, "property", name=f"tolerance.{key}_override", value=repr(value))
    if judge_line(result):
        ET.SubElement(props, "property", name="keras_truth", value=judge_line(result))
    suite.insert(0, props)
    root = ET.Element("testsuites", tests=str(len(rows)), failures=str(failures))
    root.append(suite)
    write_atomic(path, ET.tostring(root, encoding="unicode"))


# ---- tables -------------------------------------------------------------------------------------
def md_table(headers, rows):
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def html_table(headers, rows, classes=None):
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = []
    for i, r in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def layer_rows(result):
    rows = []
    for r in result["layers"]:
        t = r.get("truth") or {}
        rows.append([r["depth"], r["name"], r["class_name"], "x".join(str(d) for d in r["shape"]), r["reduction"],
                     _e(r.get("max_abs")), _e(r.get("max_rel")), _e(r.get("mean_abs")), _f(r.get("eps_units")),
                     _f(100 * r["frac_beyond"]) if "frac_beyond" in r else "", _e(r.get("atol")), _f(r.get("headroom")),
                     _e(t.get("keras_max_abs")), _e(t.get("scratch_max_abs")), t.get("further", ""),
                     row_text(r), "ok" if r["passed"] else "FAIL"])
    return rows


LAYER_HEADERS = ["#", "layer", "class", "shape", "reduction", "max abs", "max rel", "mean abs", "eps units",
                 "% beyond", "atol used", "err/tol", "Keras vs f64", "scratch vs f64", "further from truth",
                 "vs Keras's float64 twin (err/tol)", "status"]


def _e(x):
    return "" if x is None else f"{x:.2e}"


def _f(x):
    return "" if x is None else f"{x:.2f}"


CSS = """body{font-family:sans-serif;margin:1.5em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.6em 0;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}
td:nth-child(-n+2),th:nth-child(-n+2){text-align:left}tr.fail{background:#fdd}tr.ok{background:#efe}
img{max-width:100%;border:1px solid #eee;margin:.3em 0}.pass{color:#070;font-weight:bold}.failw{color:#b00;font-weight:bold}
h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}details{margin:.4em 0}code{background:#f4f4f4}"""


def page(title, body):
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>")


def write_check_report(folder, model, result, env, *, inputs, samples):
    """parity.json, parity.md and index.html for one ``parity check``."""
    os.makedirs(os.path.join(folder, "img"), exist_ok=True)
    data = dict(model=str(model), inputs=inputs, samples=samples, environment=env, result=result)
    write_atomic(os.path.join(folder, "parity.json"), to_json(data))
    verdict = "PASS" if result["passed"] else f"FAIL (first diverging layer: {result['first_diverging']})"
    tol_line = overrides_line(result.get("tolerance_overrides"))
    md = [f"# parity check: {model}", "", f"**{verdict}**", "", f"inputs: {inputs}, samples: {samples}, "
          f"oneDNN: {env.get('onednn_enabled')}", "", f"**{tol_line}**", "", judge_line(result), "", md_table(LAYER_HEADERS, layer_rows(result)),
          "", LEGEND]
    write_atomic(os.path.join(folder, "parity.md"), "\n".join(md) + "\n")
    plot_error_vs_depth(os.path.join(folder, "img", "error_vs_depth.png"), {os.path.basename(str(model)): result})
    has_truth = plot_error_budget(os.path.join(folder, "img", "error_budget.png"), result, "float64 error budget")
    cls = ["ok" if r["passed"] else "fail" for r in result["layers"]]
    body = (f"<p class='{'pass' if result['passed'] else 'failw'}'>{html.escape(verdict)}</p>"
            f"<p>inputs: {html.escape(str(inputs))}; samples: {samples}; TF {env.get('tensorflow')}, "
            f"Keras {env.get('keras')}, oneDNN on: {env.get('onednn_enabled')}</p>"
            f"<p class='{'failw' if result.get('tolerance_overrides') else ''}'>{html.escape(tol_line)}</p>"
            f"<p>{html.escape(judge_line(result))}</p>"
            "<img src='img/error_vs_depth.png' alt='error vs depth'>"
            + ("<img src='img/error_budget.png' alt='error budget'>" if has_truth else "")
            + html_table(LAYER_HEADERS, layer_rows(result), cls)
            + f"<p class='legend'>{html.escape(LEGEND)}</p>")
    write_atomic(os.path.join(folder, "index.html"), page(f"parity check: {os.path.basename(str(model))}", body))


# ---- the suite report -----------------------------------------------------------------------------
def _worst(r):
    """(layer label, max abs, eps units, layers passed, layers total) over all of a model's parts."""
    best, ok, total = None, 0, 0
    for suffix, res in layer_parts(r).items():
        ok += sum(x["passed"] for x in res["layers"])
        total += len(res["layers"])
        for row in res["layers"]:
            if "eps_units" in row and (best is None or row["eps_units"] > best[2]):
                best = (suffix.lstrip("/") + (":" if suffix else "") + row["name"], row["max_abs"], row["eps_units"])
    return (best or ("-", 0.0, 0.0)) + (ok, total)


def _truth_counts(r):
    """'K/S/=': layers where Keras / scratch is further from the float64 truth, and exact ties."""
    counts = {"keras": 0, "scratch": 0, "tie": 0}
    for res in layer_parts(r).values():
        for row in res["layers"]:
            if "truth" in row:
                counts[row["truth"]["further"]] += 1
    return f"{counts['keras']}/{counts['scratch']}/{counts['tie']}"


def _first_div(r):
    for suffix, res in layer_parts(r).items():
        if res["first_diverging"]:
            return suffix.lstrip("/") + (":" if suffix else "") + res["first_diverging"]
    return "none"


def _metric_pair(r):
    if r.get("kind") == "captioner" and "metrics" in r:
        return "BLEU-4", r["metrics"]["keras"]["Bleu_4"], r["metrics"]["scratch"]["Bleu_4"]
    if "classification" in r:
        c = r["classification"]
        return "macro-F1", c["keras"]["macro_f1"], c["scratch"]["macro_f1"]
    return "-", None, None


def summary_rows(data):
    rows = []
    for name, r in data["models"].items():
        label, k, s = _metric_pair(r)
        wl, wa, we, ok, total = _worst(r)
        t = r.get("timing", {})
        rows.append([name, r.get("kind", "?"), f"{ok}/{total}", wl, _e(wa), _f(we), _first_div(r), _truth_counts(r), label,
                     _f4(k), _f4(s), _f(t.get("keras_s")), _f(t.get("scratch_s")), section_verdict(r.get("gradients")),
                     section_verdict(r.get("training")), "PASS" if r["passed"] else "FAIL"])
    return rows


SUMMARY_HEADERS = ["model", "kind", "layers ok", "worst layer", "max abs", "eps units", "first diverging",
                   "further from f64 truth: Keras/scratch/tie", "metric", "Keras", "scratch", "Keras s", "scratch s",
                   "gradients", "training", "status"]


def _f4(x):
    return "" if x is None else f"{x:.4f}"


def print_summary(data):
    rows = summary_rows(data)
    cols = [0, 2, 3, 5, 8, 9, 10, 11, 12, 13, 14, 15]
    heads = [SUMMARY_HEADERS[c] for c in cols]
    table = [[str(r[c]) for c in cols] for r in rows]
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(heads)]
    print("  ".join(h.ljust(w) for h, w in zip(heads, widths)))
    for t in table:
        print("  ".join(c.ljust(w) for c, w in zip(t, widths)))
    for name, r in data["models"].items():
        for f in r["failures"]:
            print(f"  FAIL {name}: {f}")


def classifier_rows(data, manifest):
    rows = []
    for name, r in data["models"].items():
        if r.get("kind") != "classifier" or "classification" not in r:
            continue
        e = manifest.entry(name).raw
        hp = e.get("hyper_parameters", {})
        c, t = r["classification"], r.get("timing", {})
        label = f"{name} (twin of {e['twin_of']})" if e.get("twin_of") else name
        rows.append([label, hp.get("blocks", ""), "/".join(str(f) for f in hp.get("filters", [])), hp.get("kernel", ""),
                     hp.get("pool", ""), f"{r['params']['keras']:,}", _f4(c["keras"]["macro_f1"]),
                     _f4(c["scratch"]["macro_f1"]), _f4(c["keras"]["accuracy"]), _f4(c["scratch"]["accuracy"]),
                     f"{100 * c['agreement']:.2f}%", c["near_ties"], _f(e.get("train_seconds", e.get("train_time_s"))),
                     _f(t.get("keras_s")), _f(t.get("scratch_s"))])
    return rows


CLASSIFIER_HEADERS = ["model", "blocks", "filters", "kernel", "pool", "params", "Keras macro-F1", "scratch macro-F1",
                      "Keras acc", "scratch acc", "argmax agree", "near-ties", "train s", "Keras eval s",
                      "scratch eval s"]


def captioner_rows(data, manifest):
    rows = []
    for name, r in data["models"].items():
        if r.get("kind") != "captioner" or "metrics" not in r:
            continue
        hp = manifest.entry(name).raw.get("hyper_parameters", {})
        m, t = r["metrics"], r.get("timing", {})
        k, s = m["keras"], m["scratch"]
        rows.append([name, hp.get("cell", ""), hp.get("layers", ""), hp.get("inject", ""),
                     f"{r['params']['keras']:,}",
                     " / ".join(_f4(k[f"Bleu_{i}"]) for i in range(1, 5)),
                     " / ".join(_f4(s[f"Bleu_{i}"]) for i in range(1, 5)),
                     _f4(k.get("METEOR")) or "skipped", _f4(s.get("METEOR")) or "skipped", _f4(k["ROUGE_L"]),
                     _f4(s["ROUGE_L"]),
                     _f4(k["CIDEr"]), _f4(s["CIDEr"]), _f4(m.get("keras_beam", {}).get("Bleu_4")),
                     _f4(m.get("scratch_beam", {}).get("Bleu_4")),
                     f"{r['greedy']['identical']}/{r['greedy']['captions']}",
                     f"{r['beam']['identical']}/{r['beam']['captions']}", _f(t.get("keras_s")), _f(t.get("scratch_s"))])
    return rows


CAPTIONER_HEADERS = ["model", "cell", "layers", "inject", "params", "Keras BLEU-1/2/3/4", "scratch BLEU-1/2/3/4",
                     "Keras METEOR", "scratch METEOR", "Keras ROUGE-L", "scratch ROUGE-L", "Keras CIDEr-D",
                     "scratch CIDEr-D", "Keras beam BLEU-4", "scratch beam BLEU-4", "greedy identical",
                     "beam identical", "Keras greedy s", "scratch greedy s"]


def cache_text(data):
    """Which models' Keras outputs were read from the cache (parity/keras_cache.py) instead of recomputed."""
    cached = [n for n, r in data["models"].items() if r.get("keras_source") == "cache"]
    if not cached:
        return "Keras outputs: computed in this run."
    return (f"Keras outputs read from the cache (same file, inputs and stack; --no-cache recomputes) for "
            f"{len(cached)} of {len(data['models'])} models: {', '.join(cached)}.")


def gate_rows(data):
    return [[n, g["metric"], _f4(g["manifest_keras"]), _f4(g["keras_now"]), _f4(g["scratch"]), f"{g['margin']:g}",
             "yes" if g["keras_reproduces_manifest"] else "no", "ok" if g["passed"] else "FAIL"]
            for n, r in data["models"].items() for g in r.get("gate", [])]


GATE_HEADERS = ["model", "metric", "MANIFEST Keras", "Keras now", "scratch", "margin", "Keras reproduces MANIFEST",
                "gate"]


def write_suite_report(folder, data, manifest, assets, *, html=True):
    os.makedirs(os.path.join(folder, "img"), exist_ok=True)
    write_atomic(os.path.join(folder, "parity.json"), to_json(data))
    env = data["environment"]
    verdict = "PASS" if data["passed"] else "FAIL"
    head = (f"{verdict}: {sum(r['passed'] for r in data['models'].values())}/{len(data['models'])} models. "
            f"TF {env['tensorflow']}, Keras {env['keras']}, tf_keras {env['tf_keras']}, NumPy {env['numpy']}; "
            f"oneDNN on: {env['onednn_enabled']}; Keras numbers from {env['keras_call']}. "
            f"Evaluation wall time {data['wall_time_s']:.0f} s (plots not included). "
            f"Gate margins below the MANIFEST's Keras metrics: {margins_text(data['margin'])}. "
            f"{cache_text(data)}")
    cls_rows, cap_rows = classifier_rows(data, manifest), captioner_rows(data, manifest)
    divs = divergence_lines(data)
    md = ["# Keras vs scratch parity", "", f"**{head}**", "", overrides_line(data.get("tolerance_overrides")), "",
          "## Gate: scratch vs the MANIFEST's Keras metrics", "", md_table(GATE_HEADERS, gate_rows(data)), "",
          "## Summary", "", md_table(SUMMARY_HEADERS, summary_rows(data)), "",
          "## CNN grid + LocallyConnected2D twin", "", md_table(CLASSIFIER_HEADERS, cls_rows), "", "## Captioners", "",
          md_table(CAPTIONER_HEADERS, cap_rows), "", "## Divergences (near-ties)", ""] + ([f"- {l}" for l in divs]
                                                                                          or ["none"])
    md += training_md_lines(data, md_table)
    fails = [f"- {n}: {f}" for n, r in data["models"].items() for f in r["failures"]]
    md += ["", "## Failures", ""] + (fails or ["none"])
    md += train_demo_md(os.path.join(folder, "train_demo.json"), md_table)
    write_atomic(os.path.join(folder, "parity.md"), "\n".join(md) + "\n")
    if html:
        tables = dict(gate=(GATE_HEADERS, gate_rows(data)), summary=(SUMMARY_HEADERS, summary_rows(data)),
                      classifiers=(CLASSIFIER_HEADERS, cls_rows), captioners=(CAPTIONER_HEADERS, cap_rows))
        parts = write_index(folder, data, manifest, assets, head=head, tables=tables, table_html=html_table,
                            layer_table=lambda res: html_table(LAYER_HEADERS, layer_rows(res),
                                                               ["ok" if x["passed"] else "fail" for x in res["layers"]]))
        write_atomic(os.path.join(folder, "index.html"), page("Keras vs scratch parity", "".join(parts)))
