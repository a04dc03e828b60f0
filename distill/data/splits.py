"""Speech Commands' split rule: a speaker never crosses training/validation/testing.

Same arithmetic as TensorFlow's ``speech_commands/input_data.which_set``: the
SHA-1 of the speaker part of the file name (before ``_nohash_``) picks a stable
percentage bucket, so adding files later never moves an existing speaker.
"""

from __future__ import annotations

import hashlib
import os
import re

MAX_NUM_WAVS_PER_CLASS = 2**27 - 1  # ~134M, the tutorial's constant
TRAINING, VALIDATION, TESTING = "training", "validation", "testing"
SPLITS = (TRAINING, VALIDATION, TESTING)

_NOHASH = re.compile(r"_nohash_.*$")


def speaker_of(filename: str) -> str:
    """The speaker id of ``<speaker>_nohash_<n>.wav`` (the whole stem if there is no ``_nohash_``)."""
    base = os.path.basename(filename)
    return _NOHASH.sub("", base) if "_nohash_" in base else os.path.splitext(base)[0]


def which_set(filename: str, validation_percentage: float = 10.0, testing_percentage: float = 10.0) -> str:
    hash_name_hashed = hashlib.sha1(speaker_of(filename).encode("utf-8")).hexdigest()
    percentage_hash = (int(hash_name_hashed, 16) % (MAX_NUM_WAVS_PER_CLASS + 1)) * (100.0 / MAX_NUM_WAVS_PER_CLASS)
    if percentage_hash < validation_percentage:
        return VALIDATION
    if percentage_hash < validation_percentage + testing_percentage:
        return TESTING
    return TRAINING
