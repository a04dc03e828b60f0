"""Cross-fitted teachers: soft labels for training clips from teachers that never fitted them.

A teacher scores its own training clips almost perfectly (here 98.3% against 96.3%
on validation), so the soft labels a student learns its training clips from carry
less "dark knowledge" than the teacher has on unseen speakers. Cross-fitting splits
the training speakers into K folds and trains one run per fold on the other K-1;
``distill teachers predict`` then labels every training example with the run that
held its speaker out, and every other split (validation, testing, unlabeled) with
the mean probability of all K runs. A fold group is a folder::

    <teacher>/fold0/ ... <teacher>/fold{K-1}/   ordinary run folders, RunConfig.holdout set

and is passed to ``teachers predict --teacher <teacher>`` like a single run.

Folds follow speakers, never clips (like Speech Commands' own split rule): a held-out
speaker's other recordings would otherwise teach the run to recognise the voice.
Generated silence examples have no speaker; their seed picks the fold.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from scipy.special import log_softmax

from distill.core.errors import DistillError
from distill.core.metrics import softmax

_FOLD_DIR = re.compile(r"^fold(\d+)$")


@dataclass(frozen=True)
class HoldoutConfig:
    """Leave the training speakers of fold ``fold`` (of ``folds``) out of a run."""

    folds: int
    fold: int

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise DistillError(f"cross-fitting needs at least 2 folds, got {self.folds}")
        if not 0 <= self.fold < self.folds:
            raise DistillError(f"fold must be in 0..{self.folds - 1}, got {self.fold}")


def speaker_fold(speaker: str, folds: int) -> int:
    """Stable fold of a speaker: salted SHA-1, so folds are independent of the split buckets."""
    digest = hashlib.sha1(f"distill-fold:{speaker}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") % folds


def example_folds(dataset, examples, folds: int) -> np.ndarray:
    """Fold of every example of an ExampleSet (clips by speaker, silence by seed)."""
    speakers = dataset.index.speakers
    lookup: dict[str, int] = {}
    out = np.empty(len(examples), np.int64)
    for i, (row, seed) in enumerate(zip(examples.rows.tolist(), examples.seeds.tolist())):
        if row < 0:
            out[i] = seed % folds
        else:
            speaker = speakers[row]
            if speaker not in lookup:
                lookup[speaker] = speaker_fold(speaker, folds)
            out[i] = lookup[speaker]
    return out


def without_fold(dataset, examples, holdout: HoldoutConfig | None):
    """The examples a run with ``holdout`` trains on (all of them without one)."""
    if holdout is None:
        return examples
    return examples.subset(np.flatnonzero(example_folds(dataset, examples, holdout.folds) != holdout.fold))


def check_folds_populated(dataset, folds: int) -> None:
    """Refuse a fold count that leaves some fold without training speakers (its run would hold nothing out)."""
    training = dataset.index.positions("training")
    speakers = sorted({dataset.index.speakers[r] for r in training.tolist()})
    counts = np.bincount([speaker_fold(s, folds) for s in speakers], minlength=folds)
    if (counts == 0).any():
        raise DistillError(
            f"{dataset.root}: --folds {folds} leaves fold(s) {np.flatnonzero(counts == 0).tolist()} without training speakers "
            f"({len(speakers)} speakers in all); use fewer folds"
        )


def fold_runs(path: Path) -> list[Path] | None:
    """The run folders of a fold group in fold order, or None when ``path`` is not a fold group."""
    path = Path(path)
    if (path / "config.json").exists() or not path.is_dir():
        return None
    found = {int(m.group(1)): p for p in path.iterdir() if p.is_dir() and (m := _FOLD_DIR.match(p.name))}
    if not found:
        return None
    expected = list(range(max(found) + 1))
    if sorted(found) != expected:
        raise DistillError(f"{path}: fold folders {sorted(found)} are not 0..{max(found)}; train the missing folds (`distill teachers train --folds K --resume`)")
    return [found[k] for k in expected]


@dataclass
class FoldGroup:
    """K runs of one teacher, each holding one fold of training speakers out."""

    data: str
    predictors: list[Callable[[np.ndarray], np.ndarray]]
    data_content: str | None = None  # the content fingerprint of the tree the folds were trained on (None: not recorded)

    @property
    def folds(self) -> int:
        return len(self.predictors)

    def held_out_predictor(self, folds_of_examples: np.ndarray) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        """``(audio, positions) -> log-probabilities`` from the run that held each example's fold out."""

        def predict(audio: np.ndarray, positions: np.ndarray) -> np.ndarray:
            fold = folds_of_examples[positions]
            out = None  # (N, K): K is the runs' logit width (12 for the Kaggle words)
            for k, run_predict in enumerate(self.predictors):
                chosen = np.flatnonzero(fold == k)
                if len(chosen):
                    part = log_softmax(run_predict(audio[chosen]), axis=-1)
                    if out is None:
                        out = np.empty((len(audio), part.shape[-1]), np.float32)
                    out[chosen] = part
            return out if out is not None else np.empty((len(audio), 12), np.float32)

        return predict

    def mean_predictor(self) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        """``(audio, positions) -> log`` of the K runs' mean probability (clips none of them trained on)."""

        def predict(audio: np.ndarray, positions: np.ndarray) -> np.ndarray:
            probs = np.mean([softmax(p(audio)) for p in self.predictors], axis=0)
            return np.log(np.maximum(probs, 1e-30)).astype(np.float32)

        return predict
