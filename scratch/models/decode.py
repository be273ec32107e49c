"""Greedy and beam-search caption decoding, driving a scratch encoder model and step model.

A captioner is two models that share the trained weights:
- the **encoder** maps images (N, H, W, C) to the decoder's initial states (a list of arrays);
- the **step** model maps ``[token ids (N, 1), *states]`` to ``[logits, *new_states]``; the logits
  are pre-softmax, shaped (N, V) or (N, 1, V).

Both searches start every caption from ``start`` and stop it at ``end`` (the returned captions hold
neither) or after ``max_len`` generated tokens.

Greedy: at each step the token is ``argmax(logits)`` (the lowest id wins an exact tie, as
``np.argmax`` does).

Beam search (width k), scores are sums of float64 log-softmax values, with no length penalty:
- step 0 extends the single start beam of each image; every later step extends each live beam by
  every token, and a finished beam (it chose ``end``) competes again with its unchanged score;
- the k best candidates survive, ordered by score, exact ties broken by the parent's rank and then
  the token id (a finished beam ranks before its parent's extensions);
- an image is done when its k beams are all finished; the answer is the rank-0 beam, finished or not
  when ``max_len`` runs out.

Every step is recorded (logits, chosen tokens, surviving beams) so that the parity suite can compare
two decoders step by step. The model calls are batched over images (and beams).
"""

import numpy as np

from .graph import as_list


def log_softmax(logits):
    """Float64 log-softmax over the last axis."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _step(step_model, tokens, states, batch_size):
    out = as_list(step_model.predict([tokens[:, None].astype(np.int32), *states], batch_size=batch_size))
    logits = np.asarray(out[0])
    return logits.reshape(logits.shape[0], -1), out[1:]


def greedy_decode(encoder, step_model, images, *, start, end, max_len, batch_size=256):
    """Greedy captions for ``images``.

    Returns {'captions': [[token ids]], 'steps': [{'logits': (N, V) float32, 'tokens': (N,),
    'alive': (N,) bool}]}. Rows of finished captions keep being computed (the batch stays whole)
    but are marked not alive.
    """
    states = as_list(encoder.predict(images, batch_size=batch_size))
    n = len(states[0])
    tokens = np.full(n, start, dtype=np.int64)
    alive = np.ones(n, dtype=bool)
    captions = [[] for _ in range(n)]
    steps = []
    for _ in range(max_len):
        logits, states = _step(step_model, tokens, states, batch_size)
        tokens = np.argmax(logits, axis=-1)
        steps.append(dict(logits=logits, tokens=tokens.copy(), alive=alive.copy()))
        for i in np.flatnonzero(alive):
            if tokens[i] == end:
                alive[i] = False
            else:
                captions[i].append(int(tokens[i]))
        if not alive.any():
            break
    return dict(captions=captions, steps=steps)


def beam_search(encoder, step_model, images, *, start, end, max_len, beam_width=3, batch_size=256):
    """Beam-search captions for ``images`` (rules in the module docstring).

    Returns {'captions': [[token ids]], 'scores': [float], 'steps': [{'rows': [(image, prefix)],
    'logits': (R, V) float32, 'selected': {image: [(prefix, score, finished)]}}]} where a prefix is
    the tuple of generated tokens (``end`` included once chosen).
    """
    k = int(beam_width)
    if k < 1:
        raise ValueError(f"beam_width must be >= 1. Received: beam_width={beam_width!r}")
    init = as_list(encoder.predict(images, batch_size=batch_size))
    n = len(init[0])
    # beams[i]: list of (prefix, score, finished, states row) in rank order.
    beams = [[((), 0.0, False, [s[i] for s in init])] for i in range(n)]
    done = np.zeros(n, dtype=bool)
    steps = []
    for _ in range(max_len):
        rows = [(i, r) for i in range(n) if not done[i] for r, b in enumerate(beams[i]) if not b[2]]
        if not rows:
            break
        row_keys = [(i, beams[i][r][0]) for i, r in rows]
        last = np.array([beams[i][r][0][-1] if beams[i][r][0] else start for i, r in rows])
        states = [np.stack([beams[i][r][3][j] for i, r in rows]) for j in range(len(init))]
        logits, new_states = _step(step_model, last, states, batch_size)
        logp = log_softmax(logits)
        # Only a beam's k best tokens can survive: rank every row's tokens at once, by total score and
        # then token id (a stable sort of -total keeps the lower id first on a tie).
        total = np.array([beams[i][r][1] for i, r in rows])[:, None] + logp
        best = np.argsort(-total, axis=1, kind="stable")[:, :k]
        best_scores = np.take_along_axis(total, best, axis=1).tolist()   # Python floats, read below
        best = best.tolist()
        row_of = {key: j for j, key in enumerate(rows)}
        selected = {}
        for i in np.flatnonzero(~done):
            cands = []  # (-score, parent rank, token, prefix, finished, states)
            for r, (prefix, score, finished, st) in enumerate(beams[i]):
                if finished:
                    cands.append((-score, r, -1, prefix, True, st))
                    continue
                j = row_of[(i, r)]
                row_states = [s[j] for s in new_states]
                for v, total_v in zip(best[j], best_scores[j]):
                    cands.append((-total_v, r, v, prefix + (v,), v == end, row_states))
            cands.sort(key=lambda c: c[:3])
            beams[i] = [(c[3], -c[0], c[4], c[5]) for c in cands[:k]]
            selected[int(i)] = [(b[0], b[1], b[2]) for b in beams[i]]
            done[i] = all(b[2] for b in beams[i])
        steps.append(dict(rows=row_keys, logits=logits, selected=selected))
    captions, scores = [], []
    for i in range(n):
        prefix, score = beams[i][0][0], beams[i][0][1]
        captions.append([t for t in prefix if t != end])
        scores.append(float(score))
    return dict(captions=captions, scores=scores, steps=steps)

