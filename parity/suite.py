"""``parity run``: every model in ``weights/MANIFEST.json``, checked end to end, with reports.

For each model, after its files' sha256 and sizes match the MANIFEST:
- **per layer**: Keras intermediate outputs vs the scratch trace on the first ``--trace-samples``
  test samples, with scratch in float64 as the truth;
- **classifiers**: Keras and scratch predictions on the whole test split (same ids, same order,
  checked against the MANIFEST's fingerprint), argmax agreement with the near-tie rule, macro-F1,
  accuracy and confusion matrices;
- **captioners**: the encoder and step models per layer, then greedy and beam-search decoding on
  both sides compared step by step, and coco metrics for both caption sets;
- **gate**: scratch's metric is not below the MANIFEST's recorded Keras metric minus ``MARGIN``.
  The margin allows a couple of near-tie flips on the few-hundred-sample test splits (one flipped
  sample moves accuracy by ~0.003 and BLEU-4 by less); a broken layer costs far more.
"""

import fnmatch
import hashlib
import json
import os
import time
import traceback

import numpy as np

from . import compare as cmp
from .cli_inputs import BadInput
from .keras_cache import KerasCache, array_fingerprint, file_sha256
from .report import to_json
from .manifest import Manifest, ManifestError

# Allowed drop of scratch's metric below the MANIFEST's Keras metric (see the module docstring).
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
            self.data[key] = _load_dataset(spec)
        return self.data[key]


def _load_dataset(spec):
    """The test split a MANIFEST entry names, rebuilt by its keras_ref loader with the recorded kwargs."""
    import importlib

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


def _subset(data, n):
    if not n:
        return data
    return {k: (v[:n] if hasattr(v, "__len__") else v) for k, v in data.items()}


def _batched(fn, x, ids, batch):
    """Run ``fn`` over batches, returning (concatenated outputs, the ids in the order they were seen)."""
    outs, seen = [], []
    for s in range(0, len(x), batch):
        outs.append(np.asarray(fn(x[s:s + batch])))
        seen.extend(ids[s:s + batch])
    return np.concatenate(outs), seen


# ---- per layer --------------------------------------------------------------------------------------
def per_layer(ctx, source, x):
    """Keras probe vs scratch trace (float32) vs scratch float64 truth on ``x``; ``source`` is a
    ``(path, config)`` pair (see ``Entry.source``)."""
    import scratch

    path, config = source
    kr = ctx.kr
    budget = getattr(ctx.args, "max_memory", None) or scratch.saving.io.DEFAULT_MAX_BYTES
    smodel = scratch.load(path, config=config, max_bytes=budget)   # Keras gets the file once cleared (load_model)
    kmodel = kr.load_model(path, config, max_bytes=budget)
    infos = kr.layer_infos(kmodel)
    keras_out = kr.intermediate_outputs(kmodel, x)
    trace = smodel.trace(x)
    truth = scratch.load(path, config=config).to_dtype("float64").trace(x)
    res = cmp.compare_layers(keras_out, trace, infos, truth=truth)
    red = cmp.effective_reductions(infos)
    return res, kmodel, smodel, infos, red


# ---- classifiers ------------------------------------------------------------------------------------
def classifier_reference(ctx, path, data, trace_x):
    """Keras's side of a classifier (per-layer outputs, predictions, parameter count, first kernel),
    from the cache when the same file, inputs and stack were run before. Returns (ref, source)."""
    parts = dict(kind="classifier-v1", model=file_sha256(path), x=array_fingerprint(data["x"]),
                 ids=hashlib.sha256(json.dumps([str(i) for i in data["ids"]]).encode()).hexdigest(),
                 trace=array_fingerprint(trace_x))
    hit = ctx.cache.get(parts)
    if hit is not None:
        arrays, meta = hit
        outputs = {k[len("out/"):]: v for k, v in arrays.items() if k.startswith("out/")}
        return dict(meta, outputs={n: outputs[n] for n in meta["output_names"]}, probs=arrays["probs"],
                    kernel=arrays.get("kernel")), "cache"
    kr = ctx.kr
    budget = getattr(ctx.args, "max_memory", None) or _default_budget()
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


def _default_budget():
    import scratch

    return scratch.saving.io.DEFAULT_MAX_BYTES


def evaluate_classifier(ctx, entry):
    import scratch

    from .classification import compare_classification

    args = ctx.args
    data = _subset(ctx.dataset(entry.dataset), args.samples)
    out = dict(kind="classifier", failures=[])
    entry.check_ids(data, out, full=not args.samples)
    path = entry.model_file()
    trace_x = data["x"][: args.trace_samples]
    budget = getattr(args, "max_memory", None) or _default_budget()
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
    _record_params(out, ref["params"], smodel.count_params())
    for other in entry.other_model_files():   # e.g. the .keras copy of an .h5: same predictions
        import scratch

        same = np.array_equal(scratch.load(other).predict(data["x"][:64], batch_size=256), sprobs[:64])
        out.setdefault("copies", {})[os.path.basename(other)] = same
        if not same:
            out["failures"].append(f"{os.path.basename(other)} predicts differently from {os.path.basename(path)}")
    ctx.assets[entry.name] = dict(kernel=ref["kernel"])
    _gate(entry, out, {k: cls["scratch"][k] for k in ("macro_f1", "accuracy")},
          {k: cls["keras"][k] for k in ("macro_f1", "accuracy")})
    if not res["passed"]:
        out["failures"].append(f"per-layer parity: first diverging layer {res['first_diverging']}: "
                               f"{res['first_diverging_reason']}")
    if not cls["passed"]:
        bad = [d for d in cls["disagreements"] if not d["near_tie"]]
        out["failures"].append(f"{len(bad)} argmax disagreement(s) without a near-tie")
    return out


def _record_params(out, keras_count, scratch_count):
    out["params"] = dict(keras=keras_count, scratch=scratch_count)
    if keras_count != scratch_count:
        out["failures"].append(f"parameter count: Keras {keras_count:,}, scratch {scratch_count:,}")


def _gate(entry, out, scratch_metrics, keras_metrics):
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


# ---- captioners -------------------------------------------------------------------------------------
def evaluate_captioner(ctx, entry):
    from . import keras_decode
    from .captioning import compare_beam, compare_greedy, detokenize
    from scratch.models import decode as sdecode

    args = ctx.args
    data = _subset(ctx.dataset(entry.dataset), args.samples)
    out = dict(kind="captioner", failures=[])
    entry.check_ids(data, out, full=not args.samples)
    vocab = entry.vocab()
    images = data["x"]
    few = images[: args.trace_samples]
    enc_res, kenc, senc, enc_infos, enc_red = per_layer(ctx, entry.source("encoder"), few)
    kstates = ctx.kr.as_list(ctx.kr.call(kenc, few))
    step_x = [np.full((len(few), 1), vocab["start"], np.int32), *kstates]
    step_res, kstep, sstep, step_infos, step_red = per_layer(ctx, entry.source("step"), step_x)
    tokens = _teacher_tokens(data["tokens"][: args.trace_samples], vocab)
    train_res, ktrain, strain, _, _ = per_layer(ctx, entry.source("train"), [few, tokens])
    out["per_layer"] = dict(encoder=enc_res, step=step_res, train=train_res)
    kw = dict(start=vocab["start"], end=vocab["end"], max_len=int(vocab["max_len"]))
    reds = dict(encoder_reduction=max(enc_red.values(), default=1), step_reduction_=max(step_red.values(), default=1))
    t0 = time.perf_counter()
    kg = keras_decode.greedy(kenc, kstep, images, **kw)
    t1 = time.perf_counter()
    sg = sdecode.greedy_decode(senc, sstep, images, batch_size=4096, **kw)
    t2 = time.perf_counter()
    beam_images = images[: args.beam_samples] if args.beam_samples else images
    kb = keras_decode.beam(kenc, kstep, beam_images, beam_width=args.beam_width, **kw)
    t3 = time.perf_counter()
    sb = sdecode.beam_search(senc, sstep, beam_images, beam_width=args.beam_width, batch_size=4096, **kw)
    t4 = time.perf_counter()
    out["timing"] = dict(keras_s=t1 - t0, scratch_s=t2 - t1, keras_beam_s=t3 - t2, scratch_beam_s=t4 - t3,
                         samples=len(images), keras_call=ctx.kr.KERAS_CALL)
    cmp.assert_same_samples(data["ids"][: len(kg["captions"])], data["ids"][: len(sg["captions"])],
                            what=f"{entry.name} test split")
    out["greedy"] = compare_greedy(kg, sg, **reds)
    out["beam"] = compare_beam(kb, sb, **reds)
    out["beam"].update(width=args.beam_width, images=len(beam_images))
    itos = vocab["itos"]
    caps = {side: [detokenize(c, itos) for c in res["captions"]] for side, res in
            (("keras", kg), ("scratch", sg), ("keras_beam", kb), ("scratch_beam", sb))}
    out["metrics"] = _caption_metrics(ctx, data, {k: v for k, v in caps.items() if "beam" not in k})
    if len(beam_images) == len(images):
        out["metrics"].update(_caption_metrics(ctx, data, {k: v for k, v in caps.items() if "beam" in k}))
    # The encoder and step graphs share layers with the training model, which holds every weight once.
    _record_params(out, ctx.kr.count_params(ktrain), strain.count_params())
    # The report shows every caption the two sides disagree on, then a few that agree, as words.
    shown = _shown_samples(out, len(images))
    out["samples"] = [dict(index=i, id=data["ids"][i], references=data["captions"][i][:2], keras=caps["keras"][i],
                           scratch=caps["scratch"][i],
                           keras_beam=caps["keras_beam"][i] if i < len(beam_images) else None,
                           scratch_beam=caps["scratch_beam"][i] if i < len(beam_images) else None) for i in shown]
    for mode in ("greedy", "beam"):
        for d in out[mode]["divergences"]:
            for side in ("keras", "scratch"):
                if isinstance(d.get(f"{side}_token"), int):
                    d[f"{side}_word"] = itos[d[f"{side}_token"]] if d[f"{side}_token"] < len(itos) else "?"
    ctx.assets[entry.name] = dict(images=images[shown])
    _gate(entry, out, {"bleu4": out["metrics"]["scratch"]["nltk_bleu4"]}, {"bleu4": out["metrics"]["keras"]["nltk_bleu4"]})
    for part, res in out["per_layer"].items():
        if not res["passed"]:
            out["failures"].append(f"per-layer parity ({part} model): first diverging layer {res['first_diverging']}: "
                                   f"{res['first_diverging_reason']}")
    for mode in ("greedy", "beam"):
        if not out[mode]["passed"]:
            out["failures"].append(f"{mode} decoding: {len(out[mode]['unexplained'])} caption(s) differ without a "
                                   f"near-tie; logits within tolerance: {out[mode]['logits']['passed']}")
    m = out["metrics"]
    for side, mode in (("scratch", "greedy"), ("scratch_beam", "beam")):
        if side not in m:
            continue
        ref = m["keras" if mode == "greedy" else "keras_beam"]
        diff = [k for k in ref if not k.endswith("_error") and ref[k] != m[side].get(k)]
        if diff and not out[mode]["differing"]:
            out["failures"].append(f"{side} metrics differ from Keras's on identical captions: {diff}")
    if not m["bleu_cross_check"]["passed"]:
        out["failures"].append(f"coco BLEU vs nltk corpus_bleu differ by {m['bleu_cross_check']['max_diff']:.2e}")
    return out


def _shown_samples(out, n, agreeing=4, most=16):
    """Indices of the captions to show: every one either decoder disagrees on (up to ``most``), then a few that agree."""
    differing = sorted(set(out["greedy"]["differing"]) | set(out["beam"]["differing"]))[:most]
    agree = [i for i in range(n) if i not in set(differing)][:agreeing]
    return sorted(differing + agree)


def _teacher_tokens(token_lists, vocab):
    """``<start> w1 .. wn`` 0-padded to max_len for the first reference of each image."""
    stoi, n = vocab["stoi"], int(vocab["max_len"])
    rows = np.zeros((len(token_lists), n), np.int32)
    for i, refs in enumerate(token_lists):
        ids = [vocab["start"]] + [stoi.get(w, vocab["unk"]) for w in refs[0]][: n - 1]
        rows[i, : len(ids)] = ids
    return rows


def _caption_metrics(ctx, data, caps):
    """coco metrics of every caption set against the references, tokenized in one PTB call."""
    from . import metrics as M

    keys = list(data["ids"])
    sides = list(caps)
    table = {("ref", k): [" ".join(t) for t in toks] for k, toks in zip(keys, data["tokens"])}
    table.update({(side, k): [c] for side in sides for k, c in zip(keys, caps[side])})
    tokenized, method = M.tokenize(table, method=ctx.args.tokenizer)
    gts = {k: tokenized[("ref", k)] for k in keys}
    out = dict(tokenizer=method)
    for side in sides:
        res = {k: tokenized[(side, k)] for k in keys}
        scores = M.caption_metrics(gts, res, meteor=ctx.meteor if ctx.meteor is not None else False)
        if ctx.meteor is None:
            scores["METEOR_error"] = ctx.meteor_error
        scores["nltk_bleu4"] = M.nltk_bleu(gts, res)[3]
        out[side] = scores
        if side == "keras":
            out["bleu_cross_check"] = M.bleu_cross_check(gts, res)
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
                options=dict(samples=args.samples, trace_samples=args.trace_samples, beam_width=args.beam_width),
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
