"""What every model evaluation of ``parity run`` shares: the ``Context`` (options, the Keras runner,
the test splits rebuilt from their MANIFEST loaders, METEOR, the cache), the per-layer comparison of
one model file (Keras's side and scratch's), the parameter-count check and the metric gate.

``parity.suite`` evaluates classifiers and runs the job; ``parity.suite_captioner`` evaluates
captioners. Both import this module and neither imports the other's evaluation.
"""

import importlib

import numpy as np

from . import compare as cmp
from .manifest import ManifestError

# Allowed drop of scratch's metric below the MANIFEST's Keras metric (parity.suite's docstring says why).
MARGIN = {"macro_f1": 0.01, "accuracy": 0.01, "bleu4": 0.01}


class Context:
    """What every model evaluation shares: options, the Keras runner, data caches, METEOR."""

    def __init__(self, args, manifest):
        from . import keras_runner as kr

        self.args, self.manifest, self.kr = args, manifest, kr
        self.data = {}
        self.meteor = None
        self.meteor_error = None
        self.assets = {}        # name -> arrays the report plots (images, kernels)

    def dataset(self, spec):
        key = repr(sorted(spec.items()))
        if key not in self.data:
            self.data[key] = load_dataset(spec)
        return self.data[key]


def load_dataset(spec):
    """The test split a MANIFEST entry names, rebuilt by its keras_ref loader with the recorded kwargs."""
    loader = spec.get("loader", "")
    module, _, func = loader.rpartition(".")
    if not module.startswith("keras_ref."):   # never import what a file names outside the project
        raise ManifestError(f"dataset loader {loader!r} is not a keras_ref function")
    kwargs = dict(spec.get("kwargs", {}))
    if func == "load_digit_scenes":
        # Each split has its own random stream: skipping train/val leaves the test scenes unchanged.
        kwargs.update(n_train=0, n_val=0, progress=False)
    split = getattr(importlib.import_module(module), func)(**kwargs)[spec.get("split", "test")]
    if isinstance(split, dict):
        return dict(x=split["images"], ids=list(split["ids"]), tokens=split["tokens"], captions=split["captions"])
    x, y, ids = split[:3]
    return dict(x=x, y=np.asarray(y), ids=[int(i) if isinstance(i, (int, np.integer)) else i for i in ids])


def subset(data, n):
    """The first ``n`` samples of every per-sample field of a test split (all of them when n is None)."""
    if not n:
        return data
    return {k: (v[:n] if hasattr(v, "__len__") else v) for k, v in data.items()}


def memory_budget(args):
    """What one model file may claim (``--max-memory``, else the engine's default)."""
    import scratch

    return getattr(args, "max_memory", None) or scratch.saving.io.DEFAULT_MAX_BYTES


def keras_layers(ctx, source, x):
    """Keras's side of a per-layer check on ``x``: (model, layer infos, flattened outputs); ``source``
    is a ``(path, config)`` pair (``Entry.source``). ``load_model`` lets the engine's gate clear the file first."""
    kr = ctx.kr
    kmodel = kr.load_model(*source, max_bytes=memory_budget(ctx.args))
    return kmodel, kr.layer_infos(kmodel), cmp.flatten_outputs(kr.intermediate_outputs(kmodel, x))


def scratch_layers(ctx, source, x, infos, keras_outputs):
    """The scratch trace (float32) against Keras's outputs on ``x``, with scratch in float64 as the
    truth: (comparison, scratch model, effective reductions)."""
    import scratch

    path, config = source
    budget = memory_budget(ctx.args)
    smodel = scratch.load(path, config=config, max_bytes=budget)
    truth = scratch.load(path, config=config, max_bytes=budget).to_dtype("float64").trace(x)
    res = cmp.compare_layers(keras_outputs, smodel.trace(x), infos, truth=truth)
    return res, smodel, cmp.effective_reductions(infos)


def record_params(out, keras_count, scratch_count):
    """Both parameter counts in ``out``; a difference is a failure."""
    out["params"] = dict(keras=keras_count, scratch=scratch_count)
    if keras_count != scratch_count:
        out["failures"].append(f"parameter count: Keras {keras_count:,}, scratch {scratch_count:,}")


def gate(entry, out, scratch_metrics, keras_metrics):
    """Scratch's metric >= the MANIFEST's Keras metric - MARGIN; also records whether Keras, rerun
    here the way keras_ref measured it, reproduces the MANIFEST's number (informational)."""
    rows = []
    for key, value in scratch_metrics.items():
        recorded = entry.keras_metric(key)
        if recorded is None or key not in MARGIN:
            continue
        ok = value >= recorded - MARGIN[key]
        rows.append(dict(metric=key, manifest_keras=recorded, keras_now=keras_metrics[key], scratch=value,
                         margin=MARGIN[key], passed=ok, keras_reproduces_manifest=keras_metrics[key] == recorded))
        if not ok:
            out["failures"].append(f"gate: scratch {key} {value:.4f} < MANIFEST Keras {recorded:.4f} - {MARGIN[key]}")
    out["gate"] = rows
