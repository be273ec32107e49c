"""How ``parity.train_demo``'s result reads: markdown (``train_demo.md``, ``parity.md``) and an HTML
section of ``make parity``'s page, both from ``train_demo.json``. Nothing here imports Keras, nor
``parity.report`` (which imports this module): the table drawers are passed in."""

import html
import json


def _load(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _g(x, digits=4):
    return "" if x is None else f"{x:.{digits}f}"


def _e(x):
    return "" if x is None else f"{x:.2e}"


def metric_rows(data):
    """One row per demo: the trained models' test metric, epochs, epoch-1 agreement, weights, time."""
    rows = []
    for kind, metric in (("cnn", "macro-F1"), ("captioner", "BLEU-1..4")):
        r = data.get(kind)
        if not r:
            continue
        a = r["agreement"]

        def value(side):
            s = r[side]
            return _g(s["macro_f1"]) if "macro_f1" in s else " / ".join(_g(b, 3) for b in s["bleu"])

        rows.append([f"{r['model']} ({kind})", metric, value("scratch"), value("keras"),
                     f"{r['scratch']['epochs_run']} ({r['scratch']['best_epoch']})",
                     f"{r['keras']['epochs_run']} ({r['keras']['best_epoch']})",
                     f"{_e(a['epoch1_loss_diff'])} / {_e(a['epoch1_loss_budget'])}",
                     f"{_e(a['final_weight_max_abs_diff'])} ({a['final_worst_weight']})",
                     f"{r['scratch']['seconds']:.1f} / {r['keras']['seconds']:.1f}",
                     "agree" if a["passed"] else "DISAGREE"])
    return rows


METRIC_HEADERS = ["model", "test metric", "scratch", "Keras", "epochs scratch (best)", "epochs Keras (best)",
                  "epoch-1 |dloss| / budget", "final max |dw| (weight)", "train s scratch / Keras", "epoch 1"]
EPOCH_HEADERS = ["epoch", "loss scratch", "loss Keras", "val_loss scratch", "val_loss Keras"]


def epoch_rows(r):
    hs, hk = r["scratch"]["history"], r["keras"]["history"]
    n = max(len(hs["loss"]), len(hk["loss"]))

    def at(h, key, i):
        return _g(h[key][i], 5) if i < len(h[key]) else ""

    return [[str(i + 1), at(hs, "loss", i), at(hk, "loss", i), at(hs, "val_loss", i), at(hk, "val_loss", i)]
            for i in range(n)]


def headline(data):
    verdict = "both sides agree on epoch 1" if data["passed"] else "the sides DISAGREE on epoch 1"
    return (f"{data['time']}, seed {data['seed']}{', quick configuration' if data.get('quick') else ''}: {verdict}; "
            f"wall time {data['wall_time_s']:.0f} s. Same initial weights and the same batches in the same order on "
            "both sides; later epochs drift apart by float32 rounding (Adam amplifies it), so they are reported, "
            "not judged. Dropout at rate 0.")


def markdown(data, md_table):
    """The lines of ``train_demo.md``; ``md_table(headers, rows)`` draws a table (``parity.report``)."""
    lines = ["# Training in NumPy vs Keras (make train-demo)", "", headline(data), "",
             md_table(METRIC_HEADERS, metric_rows(data))]
    for kind in ("cnn", "captioner"):
        if data.get(kind):
            lines += ["", f"## {data[kind]['model']}: loss per epoch", "", md_table(EPOCH_HEADERS, epoch_rows(data[kind]))]
    return lines


def md_section(path, md_table):
    """Lines for ``parity.md``: the latest train_demo.json's table, or how to make one."""
    data = _load(path)
    if data is None:
        return ["", "## Training in NumPy vs Keras", "", "no reports/train_demo.json yet: run `make train-demo`."]
    return ["", "## Training in NumPy vs Keras (latest make train-demo)", "", headline(data), "",
            md_table(METRIC_HEADERS, metric_rows(data))]


def html_section(path, table_html):
    """Parts of ``index.html``: the latest train_demo.json, when there is one (like the bench section)."""
    data = _load(path)
    if data is None:
        return ["<h2>Training in NumPy vs Keras</h2><p>no reports/train_demo.json yet: run "
                "<code>make train-demo</code>.</p>"]
    rows = metric_rows(data)
    parts = ["<h2>Training in NumPy vs Keras (latest make train-demo)</h2>", f"<p>{html.escape(headline(data))}</p>",
             table_html(METRIC_HEADERS, rows, ["ok" if r[-1] == "agree" else "fail" for r in rows])]
    for kind in ("cnn", "captioner"):
        if data.get(kind):
            parts.append(f"<details><summary>{html.escape(data[kind]['model'])}: loss per epoch</summary>"
                         f"{table_html(EPOCH_HEADERS, epoch_rows(data[kind]), None)}</details>")
    return parts
