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


def plot_error_vs_depth(path, results, title="Per-layer error vs depth"):
    """``results``: {label: compare_layers result}; max |scratch - Keras| in eps units, log scale."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 4.5))
    floor = 1e-2
    for label, res in results.items():
        g = res["growth"]
        ys = [max(e, floor) for e in g["eps_units"]]
        ax.plot(g["depth"], ys, marker=".", linewidth=1, label=label)
    ax.set_yscale("log")
    ax.axhline(floor, color="#888", linewidth=0.6, linestyle=":")
    ax.text(0.01, floor * 1.15, "bit-identical (error 0)", fontsize=6, color="#666", transform=ax.get_yaxis_transform())
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
        if ax.lines and len(histories) <= 17:
            ax.legend(fontsize=5, ncol=2)
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
