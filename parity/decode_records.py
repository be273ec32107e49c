"""Decoding records (``keras_decode.greedy`` / ``keras_decode.beam`` results) as named arrays plus a
JSON document, the form ``KerasCache`` stores (``allow_pickle=False``: nothing is ever unpickled).

A record is rebuilt exactly, types included, because ``captioning.compare_greedy``/``compare_beam``
index by them: logits keep their dtype and bits (arrays), token ids and alive masks their dtype,
beam rows stay ``(image, prefix tuple)`` keys, ``selected`` keeps int image keys and
``(prefix tuple, score, finished)`` triples; scores and captions pass through JSON, which writes a
float's shortest exact repr (and ``-Infinity`` for an empty beam slot).

- greedy ``{captions, steps: [{logits, tokens, alive}]}``: arrays ``<name>/<t>/logits|tokens|alive``;
- beam ``{captions, scores, steps: [{rows, logits, selected}]}``: arrays ``<name>/<t>/logits``, the
  rest in the JSON.
"""

import numpy as np

GREEDY_ARRAYS = ("logits", "tokens", "alive")


def greedy_to_store(name, record):
    """``(arrays, meta)`` of a greedy decoding record, its arrays named under ``name/``."""
    arrays = {f"{name}/{t}/{field}": np.asarray(step[field])
              for t, step in enumerate(record["steps"]) for field in GREEDY_ARRAYS}
    return arrays, dict(captions=_captions(record), steps=len(record["steps"]))


def greedy_from_store(name, arrays, meta):
    """The greedy record ``greedy_to_store`` stored under ``name``."""
    steps = [{field: arrays[f"{name}/{t}/{field}"] for field in GREEDY_ARRAYS} for t in range(meta["steps"])]
    return dict(captions=meta["captions"], steps=steps)


def beam_to_store(name, record):
    """``(arrays, meta)`` of a beam-search record, its logits named under ``name/``."""
    arrays = {f"{name}/{t}/logits": np.asarray(step["logits"]) for t, step in enumerate(record["steps"])}
    steps = [dict(rows=[[int(i), [int(tok) for tok in prefix]] for i, prefix in step["rows"]],
                  selected=[[int(i), [[[int(tok) for tok in p], float(score), bool(done)] for p, score, done in beams]]
                            for i, beams in step["selected"].items()])
             for step in record["steps"]]
    return arrays, dict(captions=_captions(record), scores=[float(s) for s in record["scores"]], steps=steps)


def beam_from_store(name, arrays, meta):
    """The beam record ``beam_to_store`` stored under ``name``."""
    steps = [dict(rows=[(i, tuple(prefix)) for i, prefix in step["rows"]],
                  logits=arrays[f"{name}/{t}/logits"],
                  selected={i: [(tuple(p), score, done) for p, score, done in beams] for i, beams in step["selected"]})
             for t, step in enumerate(meta["steps"])]
    return dict(captions=meta["captions"], scores=meta["scores"], steps=steps)


def _captions(record):
    return [[int(tok) for tok in caption] for caption in record["captions"]]
