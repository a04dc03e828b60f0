"""Calibrating a student run for the unlabeled test folder's class mix (``distill calibrate``).

Computes the student's logits on its validation examples and on the
unlabeled folder, fits a :class:`~distill.calibration.prior_shift.PriorShiftCalibrator`
with the student's real training prior, and writes::

    calibrator.joblib   the fitted estimator (trusted input only: joblib is pickle)
    calibration.json    its summary: K logit offsets in class order (12 for the Kaggle words), priors, CV scores
    config.json         what was calibrated against what
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distill.calibration.prior_shift import PriorShiftCalibrator
from distill.core.config import save_config
from distill.core.errors import DistillError
from distill.core.io import check_output, write_json
from distill.core.labels import CLASSES, NUM_CLASSES, TARGET_WORDS
from distill.data.cache import open_dataset
from distill.data.examples import make_examples, materialize
from distill.data.unlabeled import open_unlabeled


@dataclass(frozen=True)
class CalibrationConfig:
    run: str
    unlabeled: str
    tune_classes: tuple[str, ...] = ("silence", "unknown")
    cv: int = 5
    seed: int = 0
    prior_strength: float = 500.0
    expected_mix: dict[str, float] | None = None
    words: tuple[str, ...] = TARGET_WORDS  # the student's word list: K = len(words) + 2 offsets


@dataclass(frozen=True)
class CalibrationResult:
    out: Path
    summary: dict
    validation_accuracy_before: float
    validation_accuracy_after_expected: float


def _predict_all(predict, count: int, load, batch: int = 512, num_classes: int = NUM_CLASSES) -> np.ndarray:
    return np.concatenate([predict(load(np.arange(i, min(i + batch, count)))) for i in range(0, count, batch)]) if count else np.zeros((0, num_classes))


def expected_prior(expected_mix: dict[str, float], train_prior: np.ndarray, classes: tuple[str, ...] = CLASSES) -> np.ndarray:
    """A full K-class prior from the shares of some classes; the rest keep their training proportions."""
    unknown = sorted(set(expected_mix) - set(classes))
    if unknown:
        raise DistillError(f"--expected-mix: unknown class {unknown[0]!r}; classes are {', '.join(classes)}")
    shares = np.array([expected_mix.get(c, np.nan) for c in classes], dtype=np.float64)
    given = ~np.isnan(shares)
    if np.any(shares[given] <= 0) or np.any(shares[given] >= 1):
        raise DistillError(f"--expected-mix: every share must be between 0 and 1 (exclusive), got {expected_mix}")
    rest = 1.0 - shares[given].sum()
    if (given.all() and abs(rest) > 1e-6) or (not given.all() and rest <= 0):
        raise DistillError(f"--expected-mix: shares sum to {1 - rest:.3f}; they must leave room for the other classes (or sum to 1 when all {len(classes)} are given)")
    if not given.all():
        shares[~given] = rest * train_prior[~given] / train_prior[~given].sum()
    return shares / shares.sum()


def calibrate_student(*, run: Path, unlabeled: Path, out: Path, tune_classes: tuple[str, ...] = ("silence", "unknown"), cv: int = 5,
                      seed: int = 0, prior_strength: float = 500.0, expected_mix: dict[str, float] | None = None,
                      cache_dir: Path | None = None, progress: bool = True) -> CalibrationResult:
    """Fit the calibrator for ``unlabeled`` and write it to ``out``.

    ``expected_mix`` (class -> share, e.g. ``{"unknown": 0.53, "silence": 0.09}``) centres the
    MAP-EM prior on a class mix known from elsewhere; the unlabeled folder then only moves the
    estimate as far as its size earns (``prior_strength`` pseudo-clips against its clip count).
    """
    from distill.training.fit import evaluation_examples, load_run, make_predictor

    if expected_mix and prior_strength <= 0:
        raise DistillError("--expected-mix centres the MAP-EM prior, which --prior-strength 0 switches off; give a strength > 0")
    check_output(out, kind="folder", inputs=(run, unlabeled))  # before any work: a file there, a read-only folder, an input
    config, model = load_run(Path(run))
    dataset = open_dataset(Path(config.data), cache_dir=cache_dir or (Path(config.cache_dir) if config.cache_dir else None), progress=progress)
    predict = make_predictor(model)
    validation = evaluation_examples(dataset, config, "validation")
    labels = config.labels
    val_logits = _predict_all(predict, len(validation), lambda pos: materialize(dataset, validation, pos), num_classes=labels.num_classes)
    folder = open_unlabeled(Path(unlabeled), cache_dir=cache_dir, progress=progress)
    test_logits = _predict_all(predict, len(folder.names), folder.waveforms, num_classes=labels.num_classes)
    # the prior the student was trained under: the class mix of its training epochs
    train_labels = make_examples(dataset, split="training", mix=config.mix, seed=config.seed, labels=labels).labels
    train_prior = np.bincount(train_labels, minlength=labels.num_classes).astype(np.float64)
    train_prior = np.maximum(train_prior, 1.0) / np.maximum(train_prior, 1.0).sum()
    center = expected_prior(expected_mix, train_prior, labels.classes) if expected_mix else None
    calibrator = PriorShiftCalibrator(train_prior=train_prior, tune_classes=tuple(tune_classes), cv=cv, random_state=seed, prior_strength=prior_strength,
                                      prior_center=center, classes=None if labels.classes == CLASSES else labels.classes)
    calibrator.fit(val_logits, validation.labels, X_unlabeled=test_logits)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    calibrator.save(out / "calibrator.joblib")
    summary = calibrator.summary()
    write_json(out / "calibration.json", summary)
    save_config(CalibrationConfig(run=str(Path(run).resolve()), unlabeled=str(Path(unlabeled).resolve()), tune_classes=tuple(tune_classes), cv=cv, seed=seed, prior_strength=prior_strength,
                                  expected_mix=dict(expected_mix) if expected_mix else None, words=labels.words), out / "config.json")
    before = float((val_logits.argmax(1) == validation.labels).mean())
    after = float(calibrator.expected_accuracy(val_logits, validation.labels))
    return CalibrationResult(out=out, summary=summary, validation_accuracy_before=before, validation_accuracy_after_expected=after)
