"""Caption vocabulary: lower-cased word tokens, a frequency threshold and four special tokens.

Ids: ``<pad>`` = 0 (so ``Embedding(mask_zero=True)`` masks padding), ``<start>`` = 1, ``<end>`` = 2,
``<unk>`` = 3, then the kept words by descending training frequency (ties alphabetical).

Sequences: a caption of words ``w1..wn`` becomes, padded to ``max_len``,
``inputs  = <start> w1 ... wn`` and ``targets = w1 ... wn <end>`` (teacher forcing).
``max_len`` is the longest training caption plus one; longer captions are cut to ``max_len - 1``
words. Greedy decoding emits at most ``max_len`` tokens and stops at ``<end>``.

JSON file (``save``/``load``), read by the scratch engine and the parity suite without importing this:
``{"itos": [...], "stoi": {...}, "pad": 0, "start": 1, "end": 2, "unk": 3, "max_len": N,
"min_count": k}``.
"""

import json
import os
import re
import tempfile
from collections import Counter

import numpy as np

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIALS = (PAD, START, END, UNK)
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokenize(text):
    """Lower-case word tokens; punctuation and other symbols are dropped ("A dog's ball." -> a dog's ball)."""
    return _WORD.findall(text.lower())


class Vocabulary:
    """Maps words to ids and back; built from training captions only."""

    def __init__(self, itos, max_len, min_count=1):
        itos = list(itos)
        if tuple(itos[:4]) != SPECIALS:
            raise ValueError(f"itos must start with {list(SPECIALS)}. Received: {itos[:4]}")
        if len(set(itos)) != len(itos):
            raise ValueError("itos must not repeat a token")
        if int(max_len) < 1:
            raise ValueError(f"max_len must be a positive int. Received: max_len={max_len!r}")
        self.itos = itos
        self.stoi = {w: i for i, w in enumerate(itos)}
        self.max_len = int(max_len)
        self.min_count = int(min_count)
        self.pad, self.start, self.end, self.unk = (self.stoi[s] for s in SPECIALS)

    def __len__(self):
        return len(self.itos)

    @classmethod
    def build(cls, token_lists, min_count=1, max_len=None):
        """Keep words seen at least ``min_count`` times; ``max_len`` defaults to longest caption + 1."""
        if int(min_count) < 1:
            raise ValueError(f"min_count must be >= 1. Received: min_count={min_count!r}")
        token_lists = [list(t) for t in token_lists]
        counts = Counter(w for tokens in token_lists for w in tokens)
        bad = sorted(set(counts) & set(SPECIALS))
        if bad:
            raise ValueError(f"captions must not contain special tokens. Received: {bad}")
        words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        if max_len is None:
            max_len = 1 + max((len(t) for t in token_lists), default=0)
        return cls(list(SPECIALS) + words, max_len=max_len, min_count=min_count)

    def ids(self, tokens):
        return [self.stoi.get(w, self.unk) for w in tokens]

    def encode(self, tokens):
        """(inputs, targets), each int32 of length ``max_len``: ``<start> w..`` and ``w.. <end>``, 0-padded."""
        words = self.ids(tokens)[: self.max_len - 1]
        inputs = np.zeros(self.max_len, dtype=np.int32)
        targets = np.zeros(self.max_len, dtype=np.int32)
        inputs[: len(words) + 1] = [self.start] + words
        targets[: len(words) + 1] = words + [self.end]
        return inputs, targets

    def encode_batch(self, token_lists):
        pairs = [self.encode(t) for t in token_lists]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])

    def decode(self, ids):
        """Words up to the first ``<end>``; ``<pad>`` and ``<start>`` are skipped."""
        words = []
        for i in ids:
            i = int(i)
            if i == self.end:
                break
            if i not in (self.pad, self.start):
                words.append(self.itos[i])
        return words

    def to_dict(self):
        return {"itos": self.itos, "stoi": self.stoi, "pad": self.pad, "start": self.start, "end": self.end,
                "unk": self.unk, "max_len": self.max_len, "min_count": self.min_count}

    @classmethod
    def from_dict(cls, d):
        vocab = cls(d["itos"], max_len=d["max_len"], min_count=d.get("min_count", 1))
        if d.get("stoi", vocab.stoi) != vocab.stoi:
            raise ValueError("stoi disagrees with itos")
        return vocab

    def save(self, path):
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path):
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))


def write_json_atomic(path, obj):
    """Write JSON to a temp file in the same folder, then ``os.replace`` it over ``path``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1, sort_keys=False)
            f.write("\n")
        os.chmod(tmp, 0o644)   # mkstemp creates 0600; the file is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
