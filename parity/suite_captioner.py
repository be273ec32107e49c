"""``parity run`` for a captioner: its encoder, step and training models per layer, then greedy and
beam-search decoding on both sides compared step by step, and coco metrics for both caption sets,
gated against the MANIFEST's Keras BLEU-4 (``suite_context.gate``)."""

import time

import numpy as np

from . import compare as cmp
from .suite_context import gate, per_layer, record_params, subset


def evaluate_captioner(ctx, entry):
    from . import keras_decode
    from .captioning import compare_beam, compare_greedy, detokenize
    from scratch.models import decode as sdecode

    args = ctx.args
    data = subset(ctx.dataset(entry.dataset), args.samples)
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
    record_params(out, ctx.kr.count_params(ktrain), strain.count_params())
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
