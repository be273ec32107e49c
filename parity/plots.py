"""The report's matplotlib figures: PNG files that ``index.html`` links from ``img/``.

Apart from report.py because drawing is a concern of its own and the harness's only use of
matplotlib; ``_plt`` imports it (Agg backend, no display) on the first figure, so runs that
write only JSON/Markdown never load it.
"""

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


ZERO_LINTHRESH = 1e-3   # symlog: below this the axis is linear, so an exact 0 sits on a tick labelled 0


def _headroom_axis(ax, names, title, top):
    """err/tol per layer: symlog so that exact zero shows as 0, the tolerance line at 1, layer names on x."""
    ax.set_yscale("symlog", linthresh=ZERO_LINTHRESH)
    ax.set_ylim(0, max(3.0, 2 * top))   # the tolerance line is always on the plot
    ax.axhline(1.0, color="#b00", linewidth=1, linestyle="--", label="tolerance (err/tol = 1)")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=90, fontsize=5)
    ax.set_title(title, fontsize=8)
    ax.grid(True, which="major", alpha=0.3)


def _headroom(row):
    # A row with no numbers (missing output, wrong shape) failed outright: draw it off the scale.
    return row.get("headroom", 0.0 if row["passed"] else float("inf"))


def plot_error_vs_depth(path, results, title="Per-layer error vs tolerance"):
    """``results``: {label: compare_layers result}; one small plot per model of err/tol per layer.

    err/tol is the largest element error divided by the tolerance in force (``headroom`` in
    parity.compare): below the red line at 1 the layer passes.
    """
    plt = _plt()
    n = len(results)
    cols = min(n, 4)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows + 0.6), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    for ax, (label, res) in zip(axes.ravel(), results.items()):
        layers = res["layers"]
        ys = [min(_headroom(r), 1e6) for r in layers]
        failed = [i for i, r in enumerate(layers) if not r["passed"]]
        ax.plot(range(len(ys)), ys, marker=".", linewidth=1, color="#1f77b4", label="err/tol per layer")
        if failed:
            ax.plot(failed, [ys[i] for i in failed], "x", color="#b00", ms=7, label="failing layer")
        _headroom_axis(ax, [r["name"] for r in layers], f"{label} ({'FAIL' if failed else 'pass'})", max(ys, default=0))
    axes.ravel()[0].legend(fontsize=6, loc="upper left")
    fig.suptitle(title + " (symlog; 0 = bit-identical)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_error_budget(path, result, title):
    """Keras and scratch float32 error against the float64 truth, per layer (layer names on x)."""
    rows = [r for r in result["layers"] if "truth" in r]
    if not rows:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 3.4))
    x = range(len(rows))
    ax.plot(x, [r["truth"]["keras_max_abs"] for r in rows], marker="o", ms=3, label="Keras float32 vs float64 truth")
    ax.plot(x, [r["truth"]["scratch_max_abs"] for r in rows], marker="x", ms=4,
            label="scratch float32 vs float64 truth")
    ax.plot(x, [r["atol"] for r in rows], color="#b00", linestyle="--", linewidth=1, label="atol in force (per layer)")
    ax.set_yscale("symlog", linthresh=1e-9)
    ax.set_ylim(0, None)
    ax.set_xticks(list(x))
    ax.set_xticklabels([r["name"] for r in rows], rotation=90, fontsize=6)
    ax.set_ylabel("max abs error (0 = exact)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
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
    if axes[0].lines:   # one legend for both panels, beside them: 17 names do not fit inside
        fig.legend(*axes[0].get_legend_handles_labels(), loc="center right", fontsize=6, ncol=1 + len(histories) // 12)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 0.78, 1))
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
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.6 + 1.6, rows * 0.6 + 0.6))
    axes = np.atleast_1d(axes).ravel()
    # One symmetric scale for every filter, so that strips can be compared and the colour bar reads them.
    shown = kernel.mean(axis=2)
    lim = float(np.max(np.abs(shown))) or 1.0
    image = None
    for i, ax in enumerate(axes):
        ax.axis("off")
        if i < n:
            image = ax.imshow(shown[..., i], cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    fig.colorbar(image, ax=list(axes), fraction=0.02, pad=0.01, label="weight")
    fig.suptitle(title, fontsize=8)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def plot_caption_grid(path, images, rows, title):
    """``rows``: per image (ground truth, Keras caption, scratch caption), wrapped under each image."""
    import textwrap

    n = len(images)
    cols = min(n, 4)
    nrows = int(np.ceil(n / cols))
    plt = _plt()
    height = nrows * 4.3 + 1.0   # the last row's captions need room below its images
    fig, axes = plt.subplots(nrows, cols, figsize=(cols * 3.3, height))
    axes = np.atleast_1d(axes).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, img, (gt, k, s) in zip(axes, images, rows):
        ax.imshow(np.clip(img, 0, 1), interpolation="nearest")
        verdict = "identical" if k == s else "DIFFERENT"
        text = "\n".join(textwrap.fill(f"{label}: {c}", 48) for label, c in
                          (("GT", gt), ("Keras", k), ("scratch", s))) + f"\n[{verdict}]"
        ax.text(0.0, -0.03, text, transform=ax.transAxes, fontsize=6.5, va="top", ha="left", family="monospace",
                color="black" if k == s else "#b00")
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.02, right=0.98, top=1 - 0.45 / height, bottom=1.0 / height, wspace=0.08, hspace=0.45)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_training_parity(path, result, title):
    """Training parity of one model: both sides' loss per step on one axis (and the float64 scratch
    run), and the weight difference per step against the drift budget (``training_budget``)."""
    steps = result["steps"]
    x = [r["step"] for r in steps]
    plt = _plt()
    fig, (ax_loss, ax_w) = plt.subplots(1, 2, figsize=(10, 3.4))
    ax_loss.plot(x, [r["loss_keras"] for r in steps], marker="o", ms=4, linewidth=1.2, label="Keras train_on_batch")
    ax_loss.plot(x, [r["loss_scratch"] for r in steps], marker="x", ms=5, linewidth=1, linestyle="--",
                 label="scratch trainer (float32)")
    if all(r.get("loss_truth") is not None for r in steps):
        ax_loss.plot(x, [r["loss_truth"] for r in steps], linewidth=1, linestyle=":", color="#555",
                     label="scratch float64 (truth)")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("batch loss (before the step's update)")
    ax_loss.set_title("loss per step", fontsize=9)
    ax_loss.grid(True, alpha=0.3)
    ax_loss.legend(fontsize=7)
    ax_w.plot(x, [r["weight_diff"] for r in steps], marker="o", ms=4, linewidth=1.2,
              label="max |w scratch - w Keras| (worst weight)")
    ax_w.plot(x, [r["weight_budget"] for r in steps], color="#b00", linestyle="--", linewidth=1,
              label="drift budget of that weight (grows with step)")
    if "scratch_vs_truth" in steps[0]:
        ax_w.plot(x, [r["scratch_vs_truth"] for r in steps], linewidth=1, linestyle=":", label="scratch vs float64")
        ax_w.plot(x, [r["keras_vs_truth"] for r in steps], linewidth=1, linestyle="-.", label="Keras vs float64")
    rounding = [r for r in steps if not r["within_budget"] and r["attributed_to_rounding"]]
    if rounding:
        ax_w.plot([r["step"] for r in rounding], [r["weight_diff"] for r in rounding], "s", mfc="none", color="#d80",
                  ms=8, label="beyond budget, attributed to rounding (f64)")
    failed = [r for r in steps if not r["passed"]]
    if failed:
        ax_w.plot([r["step"] for r in failed], [r["weight_diff"] for r in failed], "x", color="#b00", ms=9, mew=2,
                  label="failing step")
    shown = [v for line in ax_w.lines for v in line.get_ydata()]
    if min(shown) > 0:   # log scale from a decade under the smallest value plotted
        ax_w.set_yscale("log")
        ax_w.set_ylim(min(shown) / 10, max(shown) * 10)
    else:                # a bit-identical step: symlog, so that an exact 0 shows as 0
        ax_w.set_yscale("symlog", linthresh=max(1e-12, min((v for v in shown if v > 0), default=1e-9)))
        ax_w.set_ylim(0, max(shown) * 10 or 1.0)
    ax_w.set_xlabel("step")
    ax_w.set_ylabel("max abs weight difference")
    ax_w.set_title("weight divergence vs drift budget", fontsize=9)
    ax_w.grid(True, which="major", alpha=0.3)
    ax_w.legend(fontsize=6, loc="best")
    for ax in (ax_loss, ax_w):
        ax.set_xticks(x)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
