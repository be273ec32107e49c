"""Step-by-step comparison of two caption decoders (Keras loop vs scratch.decode).

Both decoders record every step (see ``scratch.decode``). At every step this module compares
- the logits of every row both sides computed for the same (image, prefix), under the tolerance
  policy; the reduction behind a step-t logit is the encoder's effective reduction plus (t + 1)
  times the step model's (the recurrence re-enters the step model once per token);
- the chosen tokens (greedy) or the surviving beams (beam search).

A divergence is allowed only when Keras itself was at a near-tie at that step:
- greedy: the Keras top-2 logits are within tolerance of each other,
  ``|l1 - l2| <= atol_eff + rtol * max(|l1|, |l2|)`` (the policy's own bound);
- beam: at each rank where the survivors differ, Keras's scores for the two candidates are within
  ``2 (t + 1)`` logit tolerances (a score sums t + 1 log-softmax values, each of which moves with a
  logit and with the log-sum-exp).
Every divergence is listed, explained or not; an unexplained one fails the model.
"""

import numpy as np

from .tolerance import compare, tolerance


def _log_softmax(z):
    z = np.asarray(z, dtype=np.float64)
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


def step_reduction(encoder_reduction, step_model_reduction, t):
    return int(encoder_reduction) + (t + 1) * int(step_model_reduction)


def logit_tolerance(logits, reduction, atol=None, rtol=None):
    """(atol_eff, rtol) the policy gives a float32 logits array with this reduction."""
    scale = float(np.max(np.abs(logits))) if np.size(logits) else 0.0
    a, r = tolerance(np.float32, scale=scale, reduction=reduction)
    if atol is not None:
        a = float(atol)
    if rtol is not None:
        r = float(rtol)
    return a, r


def _top2(row):
    order = np.argsort(-row.astype(np.float64), kind="stable")
    return int(order[0]), int(order[1]), float(row[order[0]]), float(row[order[1]])


class _LogitStats:
    def __init__(self):
        self.per_step = []

    def add(self, t, scratch, keras, reduction, atol, rtol):
        if len(keras) == 0:
            return
        s = compare(scratch, keras, reduction=reduction, atol=atol, rtol=rtol, dtype=np.float32)
        self.per_step.append(dict(step=t, rows=int(len(keras)), reduction=reduction, max_abs=s["max_abs"],
                                  eps_units=s["eps_units"], frac_beyond=s["frac_beyond"], atol=s["atol"],
                                  passed=s["passed"]))

    def summary(self):
        p = self.per_step
        return dict(steps_compared=len(p), max_abs=max((x["max_abs"] for x in p), default=0.0),
                    max_eps_units=max((x["eps_units"] for x in p), default=0.0),
                    passed=all(x["passed"] for x in p), per_step=p)


def compare_greedy(keras_res, scratch_res, *, encoder_reduction=1, step_reduction_=1, atol=None, rtol=None):
    """Compare two greedy decodings (dicts with 'captions' and 'steps'); returns a JSON-ready dict."""
    n = len(keras_res["captions"])
    diverged = np.zeros(n, dtype=bool)
    divergences, stats = [], _LogitStats()
    token_checks = token_agree = 0
    for t, (ks, ss) in enumerate(zip(keras_res["steps"], scratch_res["steps"])):
        red = step_reduction(encoder_reduction, step_reduction_, t)
        rows = np.flatnonzero(ks["alive"] & ss["alive"] & ~diverged)
        if rows.size == 0:
            continue
        a, r = logit_tolerance(ks["logits"][rows], red, atol, rtol)
        stats.add(t, ss["logits"][rows], ks["logits"][rows], red, atol, rtol)
        same = ks["tokens"][rows] == ss["tokens"][rows]
        token_checks += rows.size
        token_agree += int(same.sum())
        for i in rows[~same]:
            k1, k2, l1, l2 = _top2(ks["logits"][i])
            gap = abs(l1 - l2)
            bound = a + r * max(abs(l1), abs(l2))
            divergences.append(dict(sample=int(i), step=t, keras_token=int(ks["tokens"][i]),
                                    scratch_token=int(ss["tokens"][i]), keras_top2=[k1, k2],
                                    keras_gap=gap, tie_bound=bound, near_tie=bool(gap <= bound)))
            diverged[i] = True
    # Steps one side ran and the other did not mean the stopping decision differed.
    if len(keras_res["steps"]) != len(scratch_res["steps"]) and not divergences:
        divergences.append(dict(sample=None, step=min(len(keras_res["steps"]), len(scratch_res["steps"])),
                                reason="different number of steps", near_tie=False))
    return _verdict(keras_res, scratch_res, stats, divergences, token_checks, token_agree)


def compare_beam(keras_res, scratch_res, *, encoder_reduction=1, step_reduction_=1, atol=None, rtol=None):
    """Compare two beam searches (dicts with 'captions', 'scores', 'steps')."""
    n = len(keras_res["captions"])
    diverged = set()
    divergences, stats = [], _LogitStats()
    token_checks = token_agree = 0
    prev_scores = {i: {(): 0.0} for i in range(n)}   # Keras's score of each surviving prefix
    for t, (ks, ss) in enumerate(zip(keras_res["steps"], scratch_res["steps"])):
        red = step_reduction(encoder_reduction, step_reduction_, t)
        k_rows = {key: j for j, key in enumerate(ks["rows"])}
        s_rows = {key: j for j, key in enumerate(ss["rows"])}
        common = [key for key in ks["rows"] if key in s_rows]
        if common:
            kl = np.stack([ks["logits"][k_rows[c]] for c in common])
            sl = np.stack([ss["logits"][s_rows[c]] for c in common])
            stats.add(t, sl, kl, red, atol, rtol)
        a, r = logit_tolerance(ks["logits"], red, atol, rtol) if len(ks["rows"]) else (0.0, 0.0)
        logp = {key: _log_softmax(ks["logits"][j]) for key, j in k_rows.items()}
        for i, k_sel in ks["selected"].items():
            if i in diverged:
                continue
            s_sel = ss["selected"].get(i)
            token_checks += 1
            if s_sel is not None and [x[0] for x in s_sel] == [x[0] for x in k_sel]:
                token_agree += 1
                continue
            diverged.add(i)
            ranks = []
            for rank, (kc, sc) in enumerate(zip(k_sel, s_sel or [])):
                if kc[0] == sc[0]:
                    continue
                ks_score = kc[1]
                alt = _keras_score(sc[0], i, logp, prev_scores[i])
                bound = 2 * (t + 1) * (a + r * max(abs(ks_score), 1.0))
                gap = abs(ks_score - alt) if alt is not None else float("inf")
                ranks.append(dict(rank=rank, keras_prefix=list(kc[0]), scratch_prefix=list(sc[0]),
                                  keras_score=ks_score, keras_score_of_scratch_choice=alt, gap=gap,
                                  tie_bound=bound, near_tie=bool(gap <= bound)))
            divergences.append(dict(sample=int(i), step=t, ranks=ranks,
                                    near_tie=bool(ranks) and all(x["near_tie"] for x in ranks)))
        for i, k_sel in ks["selected"].items():
            prev_scores[i] = {p: sc for p, sc, _ in k_sel}
    out = _verdict(keras_res, scratch_res, stats, divergences, token_checks, token_agree)
    ks, ss = np.asarray(keras_res["scores"]), np.asarray(scratch_res["scores"])
    out["final_score_max_abs_diff"] = float(np.max(np.abs(ks - ss))) if ks.size else 0.0
    return out


def _keras_score(prefix, i, logp, prev):
    """Keras's cumulative score for a candidate prefix at this step (None if Keras never saw it)."""
    prefix = tuple(prefix)
    if prefix in prev:  # a finished beam carried over unchanged
        return prev[prefix]
    parent, tok = prefix[:-1], prefix[-1]
    if parent in prev and (i, parent) in logp:
        return prev[parent] + float(logp[(i, parent)][tok])
    return None


def _verdict(keras_res, scratch_res, stats, divergences, token_checks, token_agree):
    kc, sc = keras_res["captions"], scratch_res["captions"]
    differing = [i for i, (a, b) in enumerate(zip(kc, sc)) if a != b]
    explained = {d["sample"] for d in divergences if d.get("near_tie")}
    unexplained = [i for i in differing if i not in explained]
    logit = stats.summary()
    return dict(
        captions=len(kc), identical=len(kc) - len(differing), differing=differing,
        token_checks=token_checks, token_agreement=token_agree,
        divergences=divergences, unexplained=unexplained, logits=logit,
        passed=bool(logit["passed"] and not unexplained and len(kc) == len(sc)
                    and all(d.get("near_tie") for d in divergences)),
    )


def detokenize(ids, itos):
    """Token ids -> words; ``itos`` is a list or a {str(id): word} mapping."""
    if isinstance(itos, dict):
        return " ".join(itos.get(str(int(t)), "<?>") for t in ids)
    return " ".join(itos[int(t)] if 0 <= int(t) < len(itos) else "<?>" for t in ids)
