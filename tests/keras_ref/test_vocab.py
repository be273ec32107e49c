"""Vocabulary rules: specials first, frequency threshold, teacher-forcing pairs, JSON for the other side."""

import json

import numpy as np
import pytest

from keras_ref.vocab import Vocabulary, tokenize

CAPTIONS = [["a", "red", "dog"], ["a", "red", "cat"], ["a", "blue", "dog", "runs"]]


def test_tokenize_lowercases_and_drops_punctuation():
    assert tokenize("A Dog's ball, on the GRASS.") == ["a", "dog's", "ball", "on", "the", "grass"]
    assert tokenize("  two  dogs -- 3 cats!") == ["two", "dogs", "3", "cats"]


def test_specials_then_words_by_frequency_with_threshold():
    v = Vocabulary.build(CAPTIONS, min_count=2)
    assert v.itos[:4] == ["<pad>", "<start>", "<end>", "<unk>"]
    assert (v.pad, v.start, v.end, v.unk) == (0, 1, 2, 3)
    assert v.itos[4:] == ["a", "dog", "red"]           # a:3, then dog:2 and red:2 alphabetically
    assert v.ids(["blue", "dog"]) == [v.unk, v.stoi["dog"]]
    assert len(Vocabulary.build(CAPTIONS, min_count=1)) == 4 + 6


def test_encode_is_shifted_teacher_forcing_and_zero_padded():
    v = Vocabulary.build(CAPTIONS)
    assert v.max_len == 5                              # longest caption (4 words) + 1
    inputs, targets = v.encode(["a", "red", "dog"])
    ids = v.ids(["a", "red", "dog"])
    np.testing.assert_array_equal(inputs, [v.start, *ids, 0])
    np.testing.assert_array_equal(targets, [*ids, v.end, 0])
    assert inputs.dtype == targets.dtype == np.int32
    long_in, long_t = Vocabulary.build(CAPTIONS, max_len=3).encode(["a", "blue", "dog", "runs"])
    assert len(long_in) == 3 and long_t[-1] == v.end


def test_decode_stops_at_end_and_skips_pad_and_start():
    v = Vocabulary.build(CAPTIONS)
    ids = [v.start, v.stoi["a"], 0, v.stoi["dog"], v.end, v.stoi["red"]]
    assert v.decode(ids) == ["a", "dog"]


def test_json_round_trip_has_the_documented_keys(tmp_path):
    v = Vocabulary.build(CAPTIONS, min_count=2)
    path = tmp_path / "vocab.json"
    v.save(path)
    doc = json.loads(path.read_text())
    assert set(doc) == {"itos", "stoi", "pad", "start", "end", "unk", "max_len", "min_count"}
    assert doc["stoi"] == {w: i for i, w in enumerate(doc["itos"])}
    back = Vocabulary.load(path)
    assert back.itos == v.itos and back.max_len == v.max_len and back.min_count == 2
    assert (path.stat().st_mode & 0o777) == 0o644
    assert not list(tmp_path.glob(".tmp-*"))


def test_bad_vocabularies_are_refused():
    with pytest.raises(ValueError, match=r"itos must start with \['<pad>', '<start>', '<end>', '<unk>'\]"):
        Vocabulary(["a", "<pad>", "<start>", "<end>"], max_len=3)
    with pytest.raises(ValueError, match=r"min_count must be >= 1. Received: min_count=0"):
        Vocabulary.build(CAPTIONS, min_count=0)
    with pytest.raises(ValueError, match=r"captions must not contain special tokens. Received: \['<end>'\]"):
        Vocabulary.build([["a", "<end>"]])
    with pytest.raises(ValueError, match=r"stoi disagrees with itos"):
        Vocabulary.from_dict({"itos": ["<pad>", "<start>", "<end>", "<unk>", "a"], "stoi": {"a": 1}, "max_len": 2})
