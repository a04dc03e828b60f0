"""Example sets: a split composed as the TensorFlow tutorial's ``input_data.py`` does it, as aligned arrays.

``make_examples`` takes every target-word clip, a ``ceil``-rounded share of ``unknown`` clips and of
generated ``silence``; saved with ``ExampleSet.save`` it is the unit that soft labels, logits and
metrics of later stages line up with, row for row. ``materialize`` turns (part of) one into float32 waveforms.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from distill.core.errors import DistillError
from distill.core.io import atomic_path, load_archive
from distill.core.labels import (
    CLASSES,
    CLIP_SAMPLES,
    KAGGLE,
    SILENCE_INDEX,
    UNKNOWN_INDEX,
    LabelSet,
    check_words_in_tree,
)
from distill.data.cache import DecodedDataset
from distill.data.index import check_split

# Silence examples: log-uniform gain over this range, and this share fully silent.
SILENCE_GAIN_DB = (-40.0, 0.0)
SILENCE_ZERO_FRACTION = 0.1


@dataclass(frozen=True)
class MixConfig:
    """How much ``silence`` and ``unknown`` to add, in percent of the split's target-word clips.

    The TensorFlow tutorial's defaults (``--silence_percentage 10 --unknown_percentage 10``).
    """

    silence_percentage: float = 10.0
    unknown_percentage: float = 10.0

    def __post_init__(self) -> None:
        if self.silence_percentage < 0 or self.unknown_percentage < 0:
            raise DistillError(f"MixConfig: percentages must be >= 0, got {self}")


@dataclass(frozen=True, eq=False)
class ExampleSet:
    """Aligned int64 arrays describing the examples of one split, one entry per example.

    ``rows``: row of ``DecodedDataset.audio``, or -1 for a generated silence example;
    ``labels``: class index (the word list's ``LabelSet.classes`` order: ``labels.CLASSES`` for the Kaggle ten); ``seeds``: per-example
    non-negative seed (picks the silence window and gain; augmentation views
    derive from it), all distinct. Later stages store their outputs in this
    order, so save the set next to them.
    """

    rows: np.ndarray
    labels: np.ndarray
    seeds: np.ndarray
    split: str

    def __post_init__(self) -> None:
        arrays = {}
        for name in ("rows", "labels", "seeds"):
            value = np.array(getattr(self, name), dtype=np.int64, copy=True).reshape(-1)
            value.flags.writeable = False  # shared by subsets and callers; nobody may edit it in place
            arrays[name] = value
            object.__setattr__(self, name, value)
        if not (len(arrays["rows"]) == len(arrays["labels"]) == len(arrays["seeds"])):
            raise ValueError("ExampleSet: rows, labels and seeds must have the same length")
        if len(arrays["labels"]) and arrays["labels"].min() < 0:
            raise ValueError("ExampleSet: labels must be class indices >= 0")
        check_split(self.split)

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        counts = np.bincount(self.labels, minlength=len(CLASSES)) if len(self) else np.zeros(len(CLASSES), int)  # silence and unknown lead every list
        return f"ExampleSet(split={self.split!r}, n={len(self)}, silence={counts[SILENCE_INDEX]}, unknown={counts[UNKNOWN_INDEX]})"

    def subset(self, positions: Sequence[int] | np.ndarray) -> "ExampleSet":
        positions = np.asarray(positions)
        return ExampleSet(rows=self.rows[positions], labels=self.labels[positions], seeds=self.seeds[positions], split=self.split)

    def save(self, path: str | os.PathLike) -> Path:
        """Write an ``.npz`` atomically (the exact ``path``, no suffix added)."""
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, rows=self.rows, labels=self.labels, seeds=self.seeds, split=np.array(self.split), format=np.array(1))
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ExampleSet":
        if not Path(path).exists():
            raise DistillError(f"{path}: no example set there (written by ExampleSet.save)")
        npz = load_archive(path)  # cut short or not an archive: a DistillError naming the file
        try:
            return cls(rows=npz["rows"], labels=npz["labels"], seeds=npz["seeds"], split=str(npz["split"]))
        except (KeyError, ValueError) as err:
            raise DistillError(f"{path}: not an example set written by distill ({err})") from err


_MASK63 = np.uint64((1 << 63) - 1)


def _mix63(x: np.ndarray) -> np.ndarray:
    """A bijection of [0, 2**63): xorshift-multiply rounds (splitmix64's, cut to 63 bits).

    Each step (right xorshift, multiply by an odd constant mod 2**63) is invertible
    on 63-bit values, so distinct inputs give distinct, well-scrambled outputs.
    """
    x = np.asarray(x, dtype=np.uint64) & _MASK63
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = (x * np.uint64(0xBF58476D1CE4E5B9)) & _MASK63
        x = x ^ (x >> np.uint64(27))
        x = (x * np.uint64(0x94D049BB133111EB)) & _MASK63
        x = x ^ (x >> np.uint64(31))
    return x


def _split_code(split: str) -> int:
    return int.from_bytes(hashlib.sha1(split.encode()).digest()[:7], "little")


def _example_seeds(seed: int, split: str, n: int) -> np.ndarray:
    # Split in the base, so validation silence is not a copy of training silence.
    base = _mix63(np.array([(seed * 0x9E3779B97F4A7C15 + _split_code(split)) & ((1 << 63) - 1)], dtype=np.uint64))[0]
    with np.errstate(over="ignore"):
        x = (base + np.arange(n, dtype=np.uint64)) & _MASK63
    return _mix63(x).astype(np.int64)


def make_examples(
    dataset: DecodedDataset, *, split: str, mix: MixConfig = MixConfig(), seed: int = 0, all_unknown: bool = False, labels: LabelSet = KAGGLE
) -> ExampleSet:
    """The examples of ``split``, composed like the TensorFlow tutorial's ``input_data.py``.

    Every target-word clip of the split; ``ceil(n_target * unknown_percentage / 100)``
    clips drawn without replacement from the split's other words (all of them with
    ``all_unknown``, for teacher-prediction pools; fewer if the split has fewer);
    ``ceil(n_target * silence_percentage / 100)`` silence examples (row -1).
    Clip examples come in row order (cache-friendly reads), silence last; shuffle
    when you train. Deterministic in ``seed``. ``labels``: the word list (``LabelSet``) whose
    words are targets; a listed word with no folder in the tree is refused.
    """
    check_split(split)
    index = dataset.index
    if labels != KAGGLE:
        check_words_in_tree(labels.words, set(index.words), dataset_root(dataset))
    clip_labels = index.labels_for(labels)
    positions = index.positions(split)
    labels = clip_labels[positions]
    target = positions[labels != UNKNOWN_INDEX]
    others = positions[labels == UNKNOWN_INDEX]
    n_target = len(target)
    rng = np.random.default_rng([seed & ((1 << 63) - 1), _split_code(split), 1])
    if all_unknown:
        unknown = others
    else:
        n_unknown = min(math.ceil(n_target * mix.unknown_percentage / 100.0), len(others))
        unknown = np.sort(rng.choice(others, size=n_unknown, replace=False)) if n_unknown else others[:0]
    n_silence = math.ceil(n_target * mix.silence_percentage / 100.0)
    clip_rows = np.sort(np.concatenate([target, unknown]))
    rows = np.concatenate([clip_rows, np.full(n_silence, -1, dtype=np.int64)])
    example_labels = np.concatenate([clip_labels[clip_rows], np.full(n_silence, SILENCE_INDEX, dtype=np.int64)])
    return ExampleSet(rows=rows, labels=example_labels, seeds=_example_seeds(seed, split, len(rows)), split=split)


def dataset_root(dataset) -> str:
    """The folder a decoded dataset came from, for error messages."""
    return str(getattr(dataset, "root", None) or getattr(dataset, "data", None) or "the dataset")


def silence_waveform(noise: Sequence[np.ndarray], seed: int) -> np.ndarray:
    """A 1 s "silence" example: a window of a background recording at a random gain.

    The recording, offset and gain (log-uniform over ``SILENCE_GAIN_DB``) come from
    ``seed``; about ``SILENCE_ZERO_FRACTION`` of seeds give exact zeros, like the
    digital silence of a muted microphone. With no recordings: zeros.
    """
    rng = np.random.default_rng(int(seed) & ((1 << 64) - 1))
    out = np.zeros(CLIP_SAMPLES, dtype=np.float32)
    if rng.random() < SILENCE_ZERO_FRACTION or not len(noise):
        return out
    recording = noise[int(rng.integers(len(noise)))]
    start = int(rng.integers(0, max(len(recording) - CLIP_SAMPLES, 0) + 1))
    window = recording[start : start + CLIP_SAMPLES]
    gain = np.float32(10.0 ** (rng.uniform(*SILENCE_GAIN_DB) / 20.0))
    np.multiply(window, gain, out=out[: len(window)], dtype=np.float32)
    np.clip(out, -1.0, 1.0, out=out)
    return out


def materialize(dataset: DecodedDataset, examples: ExampleSet, positions: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
    """float32 ``(B, 16000)`` waveforms of ``examples`` (or of ``examples[positions]``).

    Clip rows are one vectorised gather from the memmap; silence rows are
    generated from their seeds.
    """
    rows, seeds = examples.rows, examples.seeds
    if positions is not None:
        positions = np.asarray(positions)
        rows, seeds = rows[positions], seeds[positions]
    is_clip = rows >= 0
    if is_clip.all():
        out = dataset.waveforms(rows)
    else:
        out = np.zeros((len(rows), CLIP_SAMPLES), dtype=np.float32)
        out[is_clip] = dataset.waveforms(rows[is_clip])
    for i in np.flatnonzero(~is_clip):
        out[i] = silence_waveform(dataset.noise, int(seeds[i]))
    return out
