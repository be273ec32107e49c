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
two decoders step by step. The model calls are batched over images (and beams): one step-model call
per step runs every live beam of every image, and the beams' bookkeeping is done on (image, rank)
arrays, so that a step costs the step model's arithmetic and little Python besides the record.
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
    kept = []   # per step: the tokens that join a caption (-1 where the row is finished or chose end)
    steps = []
    for _ in range(max_len):
        logits, states = _step(step_model, tokens, states, batch_size)
        tokens = np.argmax(logits, axis=-1)
        steps.append(dict(logits=logits, tokens=tokens.copy(), alive=alive.copy()))
        stops = alive & (tokens == end)
        kept.append(np.where(alive & ~stops, tokens, -1))
        alive &= ~stops
        if not alive.any():
            break
    table = np.stack(kept, axis=1).tolist() if kept else [[] for _ in range(n)]
    return dict(captions=[[t for t in row if t >= 0] for row in table], steps=steps)


def beam_search(encoder, step_model, images, *, start, end, max_len, beam_width=3, batch_size=256):
    """Beam-search captions for ``images`` (rules in the module docstring).

    Returns {'captions': [[token ids]], 'scores': [float], 'steps': [{'rows': [(image, prefix)],
    'logits': (R, V) float32, 'selected': {image: [(prefix, score, finished)]}}]} where a prefix is
    the tuple of generated tokens (``end`` included once chosen).
    """
    k = int(beam_width)
    if k < 1:
        raise ValueError(f"beam_width must be >= 1. Received: beam_width={beam_width!r}")
    states = as_list(encoder.predict(images, batch_size=batch_size))
    n = len(states[0])
    # Beam slots (image, rank), rank order: score (float64), filled, finished, prefix. Only rank 0
    # (the start beam) is filled at first. The step model's rows are the live slots (filled, not
    # finished, image not done) in image-major rank order; `states` holds exactly those rows.
    score = np.zeros((n, k))
    filled = np.zeros((n, k), dtype=bool)
    filled[:, 0] = True
    finished = np.zeros((n, k), dtype=bool)
    prefix = [[()] * k for _ in range(n)]
    done = np.zeros(n, dtype=bool)
    last = np.full(n, start, dtype=np.int64)
    img, slot = np.arange(n), np.zeros(n, dtype=np.int64)
    steps = []
    for _ in range(max_len):
        if img.size == 0:
            break
        row_keys = [(i, prefix[i][r]) for i, r in zip(img.tolist(), slot.tolist())]
        logits, new_states = _step(step_model, last, states, batch_size)
        # Only a beam's k best tokens can survive: rank every row's tokens at once, by total score and
        # then token id (a stable sort of -total keeps the lower id first on a tie).
        total = score[img, slot][:, None] + log_softmax(logits)
        best = np.argsort(-total, axis=1, kind="stable")[:, :k]
        width = best.shape[1]
        # Each image's candidates as sort keys -score, laid out (rank, column): column 0 keeps a
        # finished beam, columns 1.. extend a live one by its best tokens; NaN is no candidate (sorts
        # last). A stable sort of that layout breaks exact ties by parent rank, then token id, with a
        # finished beam ahead of extensions, as the module docstring says.
        key = np.full((n, k, 1 + width), np.nan)
        key[:, :, 0] = np.where(filled & finished, -score, np.nan)
        key[img, slot, 1:] = -np.take_along_axis(total, best, axis=1)
        act = np.flatnonzero(~done)
        flat = key[act].reshape(len(act), -1)
        order = np.argsort(flat, axis=1, kind="stable")[:, :k]
        keep = np.arange(order.shape[1]) < np.minimum(k, (~np.isnan(flat)).sum(axis=1))[:, None]
        parent, col = order // (1 + width), order % (1 + width)
        row_of = np.zeros((n, k), dtype=np.int64)
        row_of[img, slot] = np.arange(img.size)
        parent_row = row_of[act[:, None], parent]
        token = np.where(col > 0, best[parent_row, np.maximum(col - 1, 0)], -1)
        new_finished = keep & ((col == 0) | (token == end))
        new_score = np.where(keep, -np.take_along_axis(flat, order, axis=1), 0.0)
        selected = {}
        lists = zip(act.tolist(), keep.sum(axis=1).tolist(), parent.tolist(), col.tolist(), token.tolist(),
                    new_finished.tolist(), new_score.tolist())   # Python values: one conversion per step
        for i, m, ps, cs, ts, fs, ss in lists:
            old = prefix[i]
            beams = [(old[p] if c == 0 else old[p] + (t,), s, f)
                     for p, c, t, f, s in zip(ps[:m], cs[:m], ts[:m], fs[:m], ss[:m])]
            prefix[i] = [b[0] for b in beams] + [()] * (k - m)
            selected[i] = beams
        score[act], finished[act], filled[act] = new_score, new_finished, keep
        done[act] = (new_finished | ~keep).all(axis=1)
        steps.append(dict(rows=row_keys, logits=logits, selected=selected))
        # The next rows: surviving live beams, which continue from their parent's new states.
        nxt = keep & ~new_finished & ~done[act][:, None]
        a_idx, b_idx = np.nonzero(nxt)
        img, slot = act[a_idx], b_idx
        states = [s[parent_row[a_idx, b_idx]] for s in new_states]
        last = token[a_idx, b_idx]
    captions = [[t for t in prefix[i][0] if t != end] for i in range(n)]
    return dict(captions=captions, scores=[float(s) for s in score[:, 0]], steps=steps)
