"""Train the reference models and export them to weights/ (``make weights``).

    python -m keras_ref.export [--models GLOB[,GLOB...]] [--data SPEC] [--out DIR] [--smoke] [--list]

- ``--models``: glob(s) over the model names (``cnn_*``, ``lc2d_twin``, ``cap_lstm*``); default all.
  The twin is built for the best grid model of this run or, if the grid is not retrained, of the
  MANIFEST (same dataset only).
- ``--data``: a real dataset instead of the embedded default of its task:
  ``intel:/path`` (classifiers), ``flickr8k:/path`` or ``coco:/annotations.json,/image/folder``
  (captioners). Default: scikit-learn digits (classifiers) and digit scenes (captioners).
- ``--out``: output folder (default ``weights``); the MANIFEST is merged, not replaced.
- ``--smoke``: tiny data and one epoch, to check the pipeline (never commit its output).

Each model is saved right after training (atomic writes) and the MANIFEST is updated after each
model, so an interrupted run keeps what it finished. Every saved file is reloaded with its own Keras
and must reproduce the in-memory model's outputs exactly. That the engine runs every saved config is
checked by the tests (tests/keras_ref/test_manifest.py) with the engine's own check: keras_ref never
imports scratch, and the engine's class table is the only list of supported layers.
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_ref import cnn as cnn_mod  # noqa: E402
from keras_ref import manifest  # noqa: E402
from keras_ref.captioner import captioner_configs  # noqa: E402
from keras_ref.datasets import caption_dataset, classification_dataset  # noqa: E402

TWIN = "lc2d_twin"


def all_model_names():
    return list(cnn_mod.grid_configs()) + [TWIN] + list(captioner_configs())


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m keras_ref.export", description=__doc__.split("\n")[0])
    p.add_argument("--models", default="", help="comma-separated globs over model names (default: all)")
    p.add_argument("--data", default="", help="intel:/path | flickr8k:/path | coco:/annotations.json,/images")
    p.add_argument("--out", default="weights", help="output folder (default: weights)")
    p.add_argument("--smoke", action="store_true", help="tiny data, one epoch: a pipeline check only")
    p.add_argument("--list", action="store_true", help="print the model names and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def _fmt_table(headers, rows):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
    return "\n".join([line.format(*headers), line.format(*("-" * w for w in widths))]
                     + [line.format(*r) for r in rows])


def summary(entries):
    """The two summary tables (classifiers, captioners) for ``entries``, as text."""
    out = []
    cls = [(n, e) for n, e in entries.items() if e["task"] == "classification"]
    if cls:
        rows = [(n, f"{e['params']:,}", f"{e['metrics']['val_macro_f1']:.4f}", f"{e['metrics']['macro_f1']:.4f}",
                 f"{e['metrics']['accuracy']:.4f}", e["epochs"], f"{e['train_seconds']:.1f}") for n, e in cls]
        out.append(_fmt_table(("classifier", "params", "val F1", "test macro-F1", "test acc", "epochs", "train s"),
                              rows))
    caps = [(n, e) for n, e in entries.items() if e["task"] == "captioning"]
    if caps:
        rows = [(n, f"{e['params']:,}", *(f"{e['metrics'][f'bleu{k}']:.4f}" for k in range(1, 5)), e["epochs"],
                 f"{e['train_seconds']:.1f}") for n, e in caps]
        out.append(_fmt_table(("captioner", "params", "BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "epochs", "train s"),
                              rows))
        for n, e in caps:
            for s in e.get("samples", []):
                out.append(f"  {n} [{s['id']}] {s['generated']!r}  (ref: {s['references'][0]!r})")
    return "\n\n".join(out)


def main(argv=None):
    args = parse_args(argv)
    names = all_model_names()
    if args.list:
        print("\n".join(names))
        return 0
    selected = cnn_mod.select(names, args.models)
    if not selected:
        raise SystemExit(f"--models {args.models!r} matches none of: {', '.join(names)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import warnings

    import absl.logging
    import tensorflow as tf

    # Keras 3 warns on every legacy .h5 save, tf_keras on retracing; the summary says what matters.
    absl.logging.set_verbosity(absl.logging.ERROR)
    tf.get_logger().setLevel("ERROR")
    warnings.filterwarnings("ignore", message=".*HDF5 file.*legacy.*")
    from keras_ref import export_steps as steps

    progress = not args.no_progress
    start = time.perf_counter()
    command = "python -m keras_ref.export " + " ".join(sys.argv[1:] if argv is None else argv)
    done = {}

    def record(entry_by_name):
        for name, e in entry_by_name.items():
            score = (f"macro-F1 {e['metrics']['macro_f1']:.4f}" if e["task"] == "classification"
                     else f"BLEU-4 {e['metrics']['bleu4']:.4f}")
            print(f"[{time.perf_counter() - start:7.1f}s] {name}: {e['params']:,} params, {score}, "
                  f"{e['epochs']} epochs, {e['train_seconds']:.1f}s training", flush=True)
        done.update(entry_by_name)
        manifest.update(out, entry_by_name, {"models": list(done), "wall_seconds": round(time.perf_counter() - start, 1),
                                             "command": command, "smoke": args.smoke})

    grid = [n for n in selected if n.startswith("cnn_")]
    if grid or TWIN in selected:
        data, meta = classification_dataset(args.data, smoke=args.smoke, progress=progress)
        for name in grid:
            record({name: steps.export_grid_model(name, data, meta, out, smoke=args.smoke, progress=progress)})
        if TWIN in selected:
            record({TWIN: steps.export_twin(data, meta, out, manifest.load(out)["models"], smoke=args.smoke,
                                            progress=progress)})
    caps = [n for n in selected if n.startswith("cap_")]
    if caps:
        data, meta = caption_dataset(args.data, smoke=args.smoke, progress=progress)
        for name, entry in steps.export_captioners(caps, data, meta, out, smoke=args.smoke, progress=progress):
            record({name: entry})
    total = time.perf_counter() - start
    print()
    print(summary(done))
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    print(f"\n{len(done)} models in {total / 60:.1f} min; {out}/ holds {size / 2**20:.1f} MiB")
    problems = manifest.verify(out)
    if problems:
        print("MANIFEST problems:\n  " + "\n  ".join(problems))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
