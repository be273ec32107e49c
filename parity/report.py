"""Reports: ``parity.json`` (everything), ``parity.md`` (the tables), ``index.html`` (tables + PNG plots).

Plots are matplotlib PNGs (Agg backend, no display) written next to the page in ``img/``, so the
page works from a file:// URL and in a headless browser. JUnit XML for ``parity check --junit``.
"""

import html
import json
import os
import tempfile
import xml.etree.ElementTree as ET

import numpy as np


# ---- files --------------------------------------------------------------------------------------
def write_atomic(path, text):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
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
    root = ET.Element("testsuites", tests=str(len(rows)), failures=str(failures))
    root.append(suite)
    write_atomic(path, ET.tostring(root, encoding="unicode"))


# ---- plots --------------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_error_vs_depth(path, results, title="Per-layer error vs depth"):
    """``results``: {label: compare_layers result}; max |scratch - Keras| in eps units, log scale."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4))
    for label, res in results.items():
        g = res["growth"]
        ys = [max(e, 1e-3) for e in g["eps_units"]]
        ax.plot(g["depth"], ys, marker=".", linewidth=1, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("layer depth (trace order)")
    ax.set_ylabel("max |scratch - Keras| / (eps32 * max(1, scale))")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if len(results) <= 12:
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_error_budget(path, result, title):
    """Keras and scratch float32 error against the float64 truth, per layer."""
    rows = [r for r in result["layers"] if "truth" in r]
    if not rows:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.2))
    d = [r["depth"] for r in rows]
    ax.plot(d, [max(r["truth"]["keras_max_abs"], 1e-12) for r in rows], marker="o", ms=3, label="Keras f32 vs f64 truth")
    ax.plot(d, [max(r["truth"]["scratch_max_abs"], 1e-12) for r in rows], marker="x", ms=3,
            label="scratch f32 vs f64 truth")
    ax.set_yscale("log")
    ax.set_xlabel("layer depth")
    ax.set_ylabel("max abs error")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def plot_history(path, histories, title="Training curves (MANIFEST history)"):
    """``histories``: {model: {metric: [per epoch]}}; loss and val_loss per model."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for name, h in histories.items():
        for ax, key in zip(axes, ("loss", "val_loss")):
            if h.get(key):
                ax.plot(range(1, len(h[key]) + 1), h[key], linewidth=1, label=name)
    for ax, key in zip(axes, ("loss", "val_loss")):
        ax.set_title(key)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
    if len(histories) <= 12:
        axes[1].legend(fontsize=6, ncol=2)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_confusions(path, keras_cm, scratch_cm, labels, title):
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.8))
    for ax, cm, side in zip(axes, (keras_cm, scratch_cm), ("Keras", "scratch")):
        cm = np.asarray(cm)
        ax.imshow(cm, cmap="Blues")
        for (i, j), v in np.ndenumerate(cm):
            if v:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=6,
                        color="white" if v > cm.max() / 2 else "black")
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, fontsize=6)
        ax.set_yticks(range(len(labels)))
        ax.set_yticklabels(labels, fontsize=6)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(side)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_filters(path, kernel, title):
    """First-layer filters: kernel (kh, kw, cin, filters) of a Conv2D, or a LocallyConnected2D's
    (positions, kh*kw*cin, filters) shown at its first output position."""
    kernel = np.asarray(kernel)
    if kernel.ndim == 3:
        pos0 = kernel[0]
        side = int(round(np.sqrt(pos0.shape[0])))
        if side * side != pos0.shape[0]:
            return False
        kernel = pos0.reshape(side, side, 1, -1)
    n = kernel.shape[-1]
    cols = min(n, 16)
    rows = int(np.ceil(n / cols))
    plt = _plt()
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.6, rows * 0.6 + 0.5))
    axes = np.atleast_1d(axes).ravel()
    for i, ax in enumerate(axes):
        ax.axis("off")
        if i >= n:
            continue
        f = kernel[..., i]
        if f.shape[2] == 3:
            f = (f - f.min()) / (np.ptp(f) or 1.0)
            ax.imshow(f, interpolation="nearest")
        else:
            ax.imshow(f.mean(axis=2), cmap="gray", interpolation="nearest")
    fig.suptitle(title, fontsize=8)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def plot_caption_grid(path, images, rows, title):
    """``rows``: per image (ground truth, Keras caption, scratch caption)."""
    n = len(images)
    cols = min(n, 4)
    nrows = int(np.ceil(n / cols))
    plt = _plt()
    fig, axes = plt.subplots(nrows, cols, figsize=(cols * 3.2, nrows * 3.6))
    axes = np.atleast_1d(axes).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, img, (gt, k, s) in zip(axes, images, rows):
        ax.imshow(np.clip(img, 0, 1), interpolation="nearest")
        same = "same" if k == s else "DIFFERENT"
        ax.set_title(f"GT: {gt}\nKeras: {k}\nscratch: {s} ({same})", fontsize=6.5, loc="left")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


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
                     _f(100 * r["frac_beyond"]) if "frac_beyond" in r else "", _e(r.get("atol")),
                     _e(t.get("keras_max_abs")), _e(t.get("scratch_max_abs")), t.get("further", ""),
                     "ok" if r["passed"] else "FAIL"])
    return rows


LAYER_HEADERS = ["#", "layer", "class", "shape", "reduction", "max abs", "max rel", "mean abs", "eps units",
                 "% beyond", "atol used", "Keras vs f64", "scratch vs f64", "further from truth", "status"]


def _e(x):
    return "" if x is None else f"{x:.2e}"


def _f(x):
    return "" if x is None else f"{x:.2f}"


CSS = """body{font-family:sans-serif;margin:1.5em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.6em 0;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}
td:nth-child(2),th:nth-child(2){text-align:left}tr.fail{background:#fdd}tr.ok{background:#efe}
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
    md = [f"# parity check: {model}", "", f"**{verdict}**", "", f"inputs: {inputs}, samples: {samples}, "
          f"oneDNN: {env.get('onednn_enabled')}", "", md_table(LAYER_HEADERS, layer_rows(result))]
    write_atomic(os.path.join(folder, "parity.md"), "\n".join(md) + "\n")
    plot_error_vs_depth(os.path.join(folder, "img", "error_vs_depth.png"), {os.path.basename(str(model)): result})
    has_truth = plot_error_budget(os.path.join(folder, "img", "error_budget.png"), result, "float64 error budget")
    cls = ["ok" if r["passed"] else "fail" for r in result["layers"]]
    body = (f"<p class='{'pass' if result['passed'] else 'failw'}'>{html.escape(verdict)}</p>"
            f"<p>inputs: {html.escape(str(inputs))}; samples: {samples}; TF {env.get('tensorflow')}, "
            f"Keras {env.get('keras')}, oneDNN on: {env.get('onednn_enabled')}</p>"
            "<img src='img/error_vs_depth.png' alt='error vs depth'>"
            + ("<img src='img/error_budget.png' alt='error budget'>" if has_truth else "")
            + html_table(LAYER_HEADERS, layer_rows(result), cls))
    write_atomic(os.path.join(folder, "index.html"), page(f"parity check: {os.path.basename(str(model))}", body))
