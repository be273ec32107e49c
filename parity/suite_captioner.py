"""``parity run`` for a captioner: its encoder, step and training models per layer, then greedy and
beam-search decoding on both sides compared step by step, and coco metrics for both caption sets,
gated against the MANIFEST's Keras BLEU-4 (``suite_context.gate``). Keras's side comes from the
cache (``keras_cache``) when the same files, inputs and stack were run before."""

import json
import time

import numpy as np

from . import compare as cmp
from . import decode_records as records
from .keras_cache import array_fingerprint, file_sha256, ids_fingerprint
from .report import to_json
from .suite_context import gate, keras_layers, record_params, scratch_layers, subset


def captioner_reference(ctx, entry, data, few, tokens, beam_images, kw):
    """Keras's side of a captioner: per-layer outputs of the encoder, step and training models, the
    encoder's states that feed the step check, the parameter count, and the greedy and beam decoding
    records (``keras_decode``), from the cache when the same files, inputs and stack were run before.
    Returns (ref, source)."""
    width = ctx.args.beam_width
    parts = dict(kind="captioner-v1", files={part: [file_sha256(p) for p in entry.source(part) if p]
                                             for part in ("encoder", "step", "train")},
                 x=array_fingerprint(data["x"]), ids=ids_fingerprint(data["ids"]), trace=array_fingerprint(few, tokens),
                 beam_images=len(beam_images), beam_width=width, decode=kw)
    hit = ctx.cache.get(parts)
    if hit is not None:
        return _from_store(*hit), "cache"
    from . import keras_decode

    kr, images = ctx.kr, data["x"]
    kenc, enc_infos, enc_out = keras_layers(ctx, entry.source("encoder"), few)
    kstates = [np.asarray(s) for s in kr.as_list(kr.call(kenc, few))]
    kstep, step_infos, step_out = keras_layers(ctx, entry.source("step"), _step_inputs(kw["start"], kstates))
    ktrain, train_infos, train_out = keras_layers(ctx, entry.source("train"), [few, tokens])
    t0 = time.perf_counter()
    greedy = keras_decode.greedy(kenc, kstep, images, **kw)
    t1 = time.perf_counter()
    beam = keras_decode.beam(kenc, kstep, beam_images, beam_width=width, **kw)
    t2 = time.perf_counter()
    arrays = {f"kstates/{i}": s for i, s in enumerate(kstates)}
    meta = dict(params=int(kr.count_params(ktrain)), keras_s=t1 - t0, keras_beam_s=t2 - t1, kstates=len(kstates))
    for part, infos, outputs in (("encoder", enc_infos, enc_out), ("step", step_infos, step_out),
                                 ("train", train_infos, train_out)):
        arrays.update({f"{part}/out/{n}": v for n, v in outputs.items()})
        meta[part] = dict(infos=infos, output_names=list(outputs))
    for name, (to_store, record) in dict(greedy=(records.greedy_to_store, greedy),
                                         beam=(records.beam_to_store, beam)).items():
        more, meta[name] = to_store(name, record)
        arrays.update(more)
    meta = json.loads(to_json(meta))   # a hit reads JSON back: a miss must see the same values
    ctx.cache.put(parts, arrays, meta)
    return _from_store(arrays, meta), "keras"


def _from_store(arrays, meta):
    ref = dict(meta, kstates=[arrays[f"kstates/{i}"] for i in range(meta["kstates"])],
               greedy=records.greedy_from_store("greedy", arrays, meta["greedy"]),
               beam=records.beam_from_store("beam", arrays, meta["beam"]))
    for part in ("encoder", "step", "train"):
        ref[part] = dict(meta[part], outputs={n: arrays[f"{part}/out/{n}"] for n in meta[part]["output_names"]})
    return ref


def _step_inputs(start, states):
    return [np.full((len(states[0]), 1), start, np.int32), *states]


def evaluate_captioner(ctx, entry):
    from .captioning import compare_beam, compare_greedy, detokenize
    from scratch.models import decode as sdecode

    args = ctx.args
    data = subset(ctx.dataset(entry.dataset), args.samples)
    out = dict(kind="captioner", failures=[])
    entry.check_ids(data, out, full=not args.samples)
    vocab = entry.vocab()
    images = data["x"]
    few = images[: args.trace_samples]
    tokens = _teacher_tokens(data["tokens"][: args.trace_samples], vocab)
    kw = dict(start=vocab["start"], end=vocab["end"], max_len=int(vocab["max_len"]))
    beam_images = images[: args.beam_samples] if args.beam_samples else images
    ref, out["keras_source"] = captioner_reference(ctx, entry, data, few, tokens, beam_images, kw)
    inputs = dict(encoder=few, step=_step_inputs(kw["start"], ref["kstates"]), train=[few, tokens])
    checked = {part: scratch_layers(ctx, entry.source(part), x, ref[part]["infos"], ref[part]["outputs"])
               for part, x in inputs.items()}
    out["per_layer"] = {part: res for part, (res, _, _) in checked.items()}
    (_, senc, enc_red), (_, sstep, step_red), (_, strain, _) = (checked[p] for p in ("encoder", "step", "train"))
    reds = dict(encoder_reduction=max(enc_red.values(), default=1), step_reduction_=max(step_red.values(), default=1))
    kg, kb = ref["greedy"], ref["beam"]
    t0 = time.perf_counter()
    sg = sdecode.greedy_decode(senc, sstep, images, batch_size=4096, **kw)
    t1 = time.perf_counter()
    sb = sdecode.beam_search(senc, sstep, beam_images, beam_width=args.beam_width, batch_size=4096, **kw)
    t2 = time.perf_counter()
    out["timing"] = dict(keras_s=ref["keras_s"], scratch_s=t1 - t0, keras_beam_s=ref["keras_beam_s"],
                         scratch_beam_s=t2 - t1, samples=len(images), keras_call=ctx.kr.KERAS_CALL,
                         keras_from_cache=out["keras_source"] == "cache")
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
    record_params(out, ref["params"], strain.count_params())
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
    gate(entry, out, {"bleu4": out["metrics"]["scratch"]["nltk_bleu4"]}, {"bleu4": out["metrics"]["keras"]["nltk_bleu4"]})
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
    """coco metrics of every caption set against the references, tokenized in one PTB call. The Keras
    sets' scores (and the BLEU cross-check on them) come from the cache when the same references,
    captions, tokenizer, METEOR state and metric code were scored before; scratch's are always computed."""
    from . import metrics as M

    keys = list(data["ids"])
    table = {("ref", k): [" ".join(t) for t in toks] for k, toks in zip(keys, data["tokens"])}
    parts = {side: _metric_parts(ctx, table, caps[side]) for side in caps if side.startswith("keras")}
    stored = {side: ctx.cache.get(p) for side, p in parts.items()}
    stored = {side: hit[1] for side, hit in stored.items() if hit is not None and "scores" in hit[1]}
    sides = [side for side in caps if side not in stored]
    table.update({(side, k): [c] for side in sides for k, c in zip(keys, caps[side])})
    tokenized, method = M.tokenize(table, method=ctx.args.tokenizer)
    gts = {k: tokenized[("ref", k)] for k in keys}
    out = dict(tokenizer=method)
    for side in caps:
        if side in stored and stored[side]["tokenizer"] == method:
            out[side] = stored[side]["scores"]
            if side == "keras":
                out["bleu_cross_check"] = stored[side]["bleu_cross_check"]
            continue
        if side in stored:   # scored with another tokenizer: score it again, tokenized as now
            tokenized.update(M.tokenize({(side, k): [c] for k, c in zip(keys, caps[side])}, method=method)[0])
        res = {k: tokenized[(side, k)] for k in keys}
        scores = M.caption_metrics(gts, res, meteor=ctx.meteor if ctx.meteor is not None else False)
        if ctx.meteor is None:
            scores["METEOR_error"] = ctx.meteor_error
        scores["nltk_bleu4"] = M.nltk_bleu(gts, res)[3]
        entry = dict(tokenizer=method, scores=scores)
        if side == "keras":
            entry["bleu_cross_check"] = M.bleu_cross_check(gts, res)
        if side in parts and not (ctx.meteor is not None and "METEOR_error" in scores):   # never keep a failure
            # a hit reads JSON back: a miss must see the same values
            entry = json.loads(to_json(entry))
            ctx.cache.put(parts[side], {}, entry)
        out[side] = entry["scores"]
        if side == "keras":
            out["bleu_cross_check"] = entry["bleu_cross_check"]
    return out


def _metric_parts(ctx, table, captions):
    """The cache key of one Keras caption set's scores: everything they are a function of."""
    import hashlib
    import inspect
    from importlib import metadata

    from . import metrics as M

    def versions(*names):
        found = {}
        for name in names:
            try:
                found[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                found[name] = None
        return found

    text = json.dumps([sorted(table.items()), list(captions)], default=str)
    return dict(kind="caption-metrics-v1", captions=hashlib.sha256(text.encode()).hexdigest(),
                tokenizer=ctx.args.tokenizer, java=M.java_available(), meteor=ctx.meteor is not None,
                meteor_error=ctx.meteor_error, code=hashlib.sha256(inspect.getsource(M).encode()).hexdigest(),
                versions=versions("pycocoevalcap", "nltk"))
