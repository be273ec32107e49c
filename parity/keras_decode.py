"""Greedy and beam-search decoding as a loop driving the Keras encoder and step models.

This is the Keras side's own implementation, written independently of ``scratch.decode`` (arrays
of beams instead of per-image lists) but with the same documented rules, so that two decoders
agreeing is evidence about the models and not an artifact of shared code:
- greedy takes ``argmax`` of the logits (lowest id on an exact tie);
- beam search scores are float64 sums of log-softmax, no length penalty; candidates are ordered by
  score, exact ties by the parent's rank and then the token id, a finished beam (it chose ``end``)
  competing with its own score ahead of its parent's extensions; an image stops when its k beams
  are all finished; the answer is the rank-0 beam.
The models are called eagerly, ``model(x, training=False)``, on the whole batch of rows.
"""

import numpy as np


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _log_softmax(logits):
    z = logits.astype(np.float64)
    m = np.max(z, axis=-1, keepdims=True)
    return z - m - np.log(np.sum(np.exp(z - m), axis=-1, keepdims=True))


def _run_step(step_model, tokens, states):
    out = _as_list(step_model([tokens.reshape(-1, 1).astype("int32"), *states], training=False))
    logits = np.asarray(out[0])
    return logits.reshape(len(tokens), -1), [np.asarray(s) for s in out[1:]]


def _encode(encoder, images):
    return [np.asarray(s) for s in _as_list(encoder(images, training=False))]


def greedy(encoder, step_model, images, *, start, end, max_len):
    """Returns {'captions', 'steps': [{'logits', 'tokens', 'alive'}]} like scratch.models.decode."""
    states = _encode(encoder, images)
    n = states[0].shape[0]
    token = np.full(n, start, dtype=np.int64)
    finished = np.zeros(n, dtype=bool)
    chosen, steps = [], []
    for _ in range(max_len):
        logits, states = _run_step(step_model, token, states)
        token = logits.argmax(axis=-1)
        steps.append(dict(logits=logits, tokens=token.copy(), alive=~finished))
        chosen.append(np.where(finished | (token == end), -1, token))
        finished = finished | (token == end)
        if finished.all():
            break
    captions = [[int(t) for t in col if t >= 0] for col in np.array(chosen).T] if chosen else [[] for _ in range(n)]
    return dict(captions=captions, steps=steps)


def beam(encoder, step_model, images, *, start, end, max_len, beam_width=3):
    """Returns {'captions', 'scores', 'steps': [{'rows', 'logits', 'selected'}]} like scratch.models.decode."""
    k = int(beam_width)
    init = _encode(encoder, images)
    n = init[0].shape[0]
    # Slot state per (image, beam): -inf score marks an empty slot (only slot 0 exists at first).
    score = np.full((n, k), -np.inf)
    score[:, 0] = 0.0
    finished = np.zeros((n, k), dtype=bool)
    prefix = [[() for _ in range(k)] for _ in range(n)]
    states = [np.repeat(s, k, axis=0) for s in init]          # row = image * k + slot
    last = np.full(n * k, start, dtype=np.int64)
    done = np.zeros(n, dtype=bool)
    steps = []
    for _ in range(max_len):
        live = np.isfinite(score) & ~finished & ~done[:, None]
        if not live.any():
            break
        logits_all, new_states = _run_step(step_model, last, states)
        vocab = logits_all.shape[1]
        logp = _log_softmax(logits_all).reshape(n, k, vocab)
        # Candidate table (n, k, 1 + V): column 0 keeps a finished beam, columns 1.. extend a live one.
        cand = np.full((n, k, 1 + vocab), -np.inf)
        cand[:, :, 0] = np.where(finished, score, -np.inf)
        cand[:, :, 1:] = np.where(live[:, :, None], score[:, :, None] + logp, -np.inf)
        flat = cand.reshape(n, -1)
        # A stable sort on -score keeps flat order (slot, then column) for exact ties.
        order = np.argsort(-flat, axis=1, kind="stable")[:, :k]
        rows_idx = np.flatnonzero(live.reshape(-1))
        steps.append(dict(rows=[(int(r // k), prefix[r // k][r % k]) for r in rows_idx],
                          logits=logits_all[rows_idx], selected={}))
        new_score = np.take_along_axis(flat, order, axis=1)
        parent, col = order // (1 + vocab), order % (1 + vocab)
        new_prefix = [[None] * k for _ in range(n)]
        new_finished = np.zeros((n, k), dtype=bool)
        gather = np.zeros(n * k, dtype=np.int64)
        for i in range(n):
            if done[i]:
                new_prefix[i], new_finished[i], new_score[i] = prefix[i], finished[i], score[i]
                gather[i * k: (i + 1) * k] = np.arange(i * k, (i + 1) * k)
                continue
            for b in range(k):
                p, c = int(parent[i, b]), int(col[i, b])
                if c == 0:
                    new_prefix[i][b], new_finished[i, b] = prefix[i][p], True
                else:
                    new_prefix[i][b], new_finished[i, b] = prefix[i][p] + (c - 1,), c - 1 == end
                gather[i * k + b] = i * k + p
            steps[-1]["selected"][i] = [(new_prefix[i][b], float(new_score[i, b]), bool(new_finished[i, b]))
                                        for b in range(k)]
        states = [s[gather] for s in new_states]
        last = np.array([p[-1] if p else start for row in new_prefix for p in row], dtype=np.int64)
        prefix, score, finished = new_prefix, new_score, new_finished
        done = done | finished.all(axis=1)
    captions = [[t for t in prefix[i][0] if t != end] for i in range(n)]
    return dict(captions=captions, scores=[float(score[i, 0]) for i in range(n)], steps=steps)
