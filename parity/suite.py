"""``parity run``: every model in ``weights/MANIFEST.json``, checked end to end, with reports.

For each model, after its files' sha256 and sizes match the MANIFEST:
- **per layer**: Keras intermediate outputs vs the scratch trace on the first ``--trace-samples``
  test samples, with scratch in float64 as the truth;
- **classifiers**: Keras and scratch predictions on the whole test split (same ids, same order,
  checked against the MANIFEST's fingerprint), argmax agreement with the near-tie rule, macro-F1,
  accuracy and confusion matrices;
- **captioners**: the encoder and step models per layer, then greedy and beam-search decoding on
  both sides compared step by step, and coco metrics for both caption sets;
- **backward** (``parity.suite_training``): the loss gradient of every weight against tf.GradientTape
  and a few steps of Keras ``train_on_batch`` against the scratch trainer; a failure of either fails
  the model (``--no-training`` skips both);
- **gate**: scratch's metric is not below the MANIFEST's recorded Keras metric minus ``MARGIN``.
  The margin allows a couple of near-tie flips on the few-hundred-sample test splits (one flipped
  sample moves accuracy by ~0.003 and BLEU-4 by less); a broken layer costs far more.

This module evaluates the classifiers and runs the job; ``suite_captioner`` evaluates the captioners,
and ``suite_context`` holds what both share (the Context, per-layer comparison, the gate).
"""

import fnmatch
import json
import os
import time
import traceback

import numpy as np

from . import compare as cmp
from .cli_inputs import BadInput
from .keras_cache import KerasCache, array_fingerprint, file_sha256, ids_fingerprint
from .report import to_json
from .manifest import Manifest, ManifestError
from .suite_captioner import evaluate_captioner
from .suite_context import MARGIN, Context, gate, memory_budget, record_params, subset
from .suite_training import add_training_sections


def _batched(fn, x, ids, batch):
    """Run ``fn`` over batches, returning (concatenated outputs, the ids in the order they were seen)."""
    outs, seen = [], []
    for s in range(0, len(x), batch):
        outs.append(np.asarray(fn(x[s:s + batch])))
        seen.extend(ids[s:s + batch])
    return np.concatenate(outs), seen


# ---- classifiers ------------------------------------------------------------------------------------
def classifier_reference(ctx, path, data, trace_x):
    """Keras's side of a classifier (per-layer outputs, predictions, parameter count, first kernel),
    from the cache when the same file, inputs and stack were run before. Returns (ref, source)."""
    parts = dict(kind="classifier-v1", model=file_sha256(path), x=array_fingerprint(data["x"]),
                 ids=ids_fingerprint(data["ids"]),
                 trace=array_fingerprint(trace_x))
    hit = ctx.cache.get(parts)
    if hit is not None:
        arrays, meta = hit
        outputs = {k[len("out/"):]: v for k, v in arrays.items() if k.startswith("out/")}
        return dict(meta, outputs={n: outputs[n] for n in meta["output_names"]}, probs=arrays["probs"],
                    kernel=arrays.get("kernel")), "cache"
    kr = ctx.kr
    budget = memory_budget(ctx.args)
    kmodel = kr.load_model(path, None, max_bytes=budget)   # the engine's gate clears the file first
    infos = kr.layer_infos(kmodel)
    outputs = cmp.flatten_outputs(kr.intermediate_outputs(kmodel, trace_x))
    t0 = time.perf_counter()
    probs, ids = _batched(lambda b: kr.call(kmodel, b), data["x"], data["ids"], 256)
    keras_s = time.perf_counter() - t0
    kernel = kr.first_conv_kernel(kmodel)
    meta = dict(infos=infos, ids=[i if isinstance(i, (int, str)) else str(i) for i in ids], keras_s=keras_s,
                params=int(kr.count_params(kmodel)), output_names=list(outputs))
    meta = json.loads(to_json(meta))   # a hit reads JSON back: a miss must see the same values
    arrays = {f"out/{n}": v for n, v in outputs.items()}
    arrays["probs"] = probs
    if kernel is not None:
        arrays["kernel"] = kernel
    ctx.cache.put(parts, arrays, meta)
    return dict(meta, outputs=outputs, probs=probs, kernel=kernel), "keras"


def evaluate_classifier(ctx, entry):
    import scratch

    from .classification import compare_classification

    args = ctx.args
    data = subset(ctx.dataset(entry.dataset), args.samples)
    out = dict(kind="classifier", failures=[])
    entry.check_ids(data, out, full=not args.samples)
    path = entry.model_file()
    trace_x = data["x"][: args.trace_samples]
    budget = memory_budget(args)
    smodel = scratch.load(path, max_bytes=budget)   # the engine reads the file before Keras is asked to
    ref, out["keras_source"] = classifier_reference(ctx, path, data, trace_x)
    infos, red = ref["infos"], cmp.effective_reductions(ref["infos"])
    truth = scratch.load(path, max_bytes=budget).to_dtype("float64").trace(trace_x)
    res = cmp.compare_layers(ref["outputs"], smodel.trace(trace_x), infos, truth=truth)
    out["per_layer"] = res
    kprobs, kids = ref["probs"], ref["ids"]
    t1 = time.perf_counter()
    sprobs, sids = _batched(lambda b: smodel.predict(b, batch_size=256), data["x"], data["ids"], 256)
    t2 = time.perf_counter()
    out["timing"] = dict(keras_s=ref["keras_s"], scratch_s=t2 - t1, samples=len(data["ids"]),
                         keras_call=ctx.kr.KERAS_CALL, keras_from_cache=out["keras_source"] == "cache")
    cmp.assert_same_samples(kids, sids, what=f"{entry.name} test split")
    final = infos[-1]["name"] if infos else None
    labels = list(range(kprobs.shape[1]))
    cls = compare_classification(data["y"], kprobs, sprobs, ids=data["ids"], labels=labels,
                                 reduction=red.get(final, 1))
    out["classification"] = cls
    record_params(out, ref["params"], smodel.count_params())
    for other in entry.other_model_files():   # e.g. the .keras copy of an .h5: same predictions
        import scratch

        same = np.array_equal(scratch.load(other).predict(data["x"][:64], batch_size=256), sprobs[:64])
        out.setdefault("copies", {})[os.path.basename(other)] = same
        if not same:
            out["failures"].append(f"{os.path.basename(other)} predicts differently from {os.path.basename(path)}")
    ctx.assets[entry.name] = dict(kernel=ref["kernel"])
    gate(entry, out, {k: cls["scratch"][k] for k in ("macro_f1", "accuracy")},
          {k: cls["keras"][k] for k in ("macro_f1", "accuracy")})
    if not res["passed"]:
        out["failures"].append(f"per-layer parity: first diverging layer {res['first_diverging']}: "
                               f"{res['first_diverging_reason']}")
    if not cls["passed"]:
        bad = [d for d in cls["disagreements"] if not d["near_tie"]]
        out["failures"].append(f"{len(bad)} argmax disagreement(s) without a near-tie")
    return out


# ---- the job ----------------------------------------------------------------------------------------
def _selected(manifest, patterns):
    names = manifest.names()
    if not patterns:
        return names
    globs = [p.strip() for p in patterns.split(",") if p.strip()]
    return [n for n in names if any(fnmatch.fnmatchcase(n, g) for g in globs)]


def run_suite(args):
    import scratch

    t_start = time.perf_counter()
    try:
        manifest = Manifest.load(args.weights)
    except ManifestError as exc:
        raise BadInput(str(exc)) from None
    names = _selected(manifest, args.models)
    if not names:
        raise BadInput(f"no model in {manifest.path} matches --models {args.models!r}")
    meteor = _start_meteor(args)
    ctx = Context(args, manifest)
    ctx.meteor, ctx.meteor_error = meteor
    env = ctx.kr.environment()
    ctx.cache = KerasCache(os.path.join(args.report, ".keras-cache"), env, enabled=not getattr(args, "no_cache", False))
    results = {}
    for name in names:
        entry = manifest.entry(name)
        t0 = time.perf_counter()
        bad = entry.verify_checksums()
        if bad:
            results[name] = dict(kind=entry.kind, failures=bad, checksums_ok=False)
        else:
            try:
                fn = evaluate_captioner if entry.kind == "captioner" else evaluate_classifier
                results[name] = fn(ctx, entry)
                add_training_sections(ctx, entry, results[name])   # gradient + training parity (gated)
            except cmp.SampleOrderError as exc:
                results[name] = dict(kind=entry.kind, failures=[f"sample order guard: {exc}"])
            except scratch.ScratchError as exc:   # a file the engine refuses: no parity computed for it
                results[name] = dict(kind=entry.kind, failures=[f"unreadable input: {exc}"], unreadable="input")
            except Exception as exc:  # noqa: BLE001 - one broken model must not hide the others
                results[name] = dict(kind=entry.kind, failures=[f"internal error: {type(exc).__name__}: {exc}"],
                                     traceback=traceback.format_exc(), unreadable="internal error")
            results[name]["checksums_ok"] = True
        results[name]["seconds"] = time.perf_counter() - t0
        results[name]["passed"] = not results[name]["failures"]
        print(f"  {name:<24} {'ok' if results[name]['passed'] else 'FAIL'} ({results[name]['seconds']:.1f} s)",
              flush=True)
    meteor_check = None
    if meteor[0] is not None:
        # METEOR 1.5 gives an exact match no fragmentation penalty: anything but 1.0 means a broken jar.
        meteor_check = meteor[0].score({0: ["a large red three left of a small blue seven"]},
                                       {0: ["a large red three left of a small blue seven"]})
        meteor[0].close()
    from .report import print_summary, write_suite_report

    wall = time.perf_counter() - t_start
    data = dict(environment=env, manifest=manifest.path, margin=MARGIN, wall_time_s=wall,
                meteor=dict(self_check_exact_match=meteor_check, error=meteor[1]),
                options=dict(samples=args.samples, trace_samples=args.trace_samples, beam_width=args.beam_width,
                             training=not getattr(args, "no_training", False),
                             train_steps=getattr(args, "train_steps", None)),
                models=results, passed=all(r["passed"] for r in results.values())
                and meteor_check in (None, 1.0))
    write_suite_report(args.report, data, manifest, ctx.assets, html=not args.no_html)
    print_summary(data)
    print(f"parity run: {'PASS' if data['passed'] else 'FAIL'}: {sum(r['passed'] for r in results.values())}/"
          f"{len(results)} models; reports in {args.report}/ ({time.perf_counter() - t_start:.0f} s)")
    # The exit-code contract: 1 when the run computed a failure (parity, metrics, a checksum or sample
    # order differing from the MANIFEST); 2 when a model could not be checked at all.
    unreadable = [f"{n} ({r['unreadable']})" for n, r in results.items() if r.get("unreadable")]
    if unreadable:
        raise BadInput(f"{len(unreadable)} model(s) could not be checked (see {args.report}/parity.md): "
                       + ", ".join(unreadable))
    return 0 if data["passed"] else 1


def _start_meteor(args):
    """Start METEOR's JVM now: it loads its paraphrase table while TensorFlow works."""
    if args.no_meteor:
        return None, "skipped (--no-meteor)"
    from .metrics import MeteorScorer, MetricError

    try:
        return MeteorScorer(), None
    except MetricError as exc:
        return None, str(exc)
