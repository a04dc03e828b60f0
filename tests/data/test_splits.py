"""The split rule matches TensorFlow's which_set and keeps speakers in one split."""

from __future__ import annotations

import collections
import hashlib
import re

from distill.data.splits import SPLITS, speaker_of, which_set


def _tutorial_which_set(filename, validation_percentage=10, testing_percentage=10):
    # verbatim arithmetic of tensorflow/examples/speech_commands/input_data.py
    base_name = filename.rsplit("/", 1)[-1]
    hash_name = re.sub(r"_nohash_.*$", "", base_name)
    hash_name_hashed = hashlib.sha1(hash_name.encode()).hexdigest()
    percentage_hash = (int(hash_name_hashed, 16) % (2**27 - 1 + 1)) * (100.0 / (2**27 - 1))
    if percentage_hash < validation_percentage:
        return "validation"
    if percentage_hash < testing_percentage + validation_percentage:
        return "testing"
    return "training"


def test_matches_tutorial_and_is_speaker_stable():
    names = [f"{w}/{i:08x}_nohash_{n}.wav" for i in range(0, 4000, 7) for w in ("yes", "bed") for n in range(2)]
    by_speaker = collections.defaultdict(set)
    for name in names:
        split = which_set(name)
        assert split == _tutorial_which_set(name)
        by_speaker[speaker_of(name)].add(split)
    assert all(len(s) == 1 for s in by_speaker.values())
    counts = collections.Counter(which_set(n) for n in names)
    assert set(counts) == set(SPLITS)
    assert 0.05 < counts["validation"] / len(names) < 0.15


def test_speaker_of():
    assert speaker_of("yes/0a7c2a8d_nohash_3.wav") == "0a7c2a8d"
    assert speaker_of("clip_0a0a60a16.wav") == "clip_0a0a60a16"
