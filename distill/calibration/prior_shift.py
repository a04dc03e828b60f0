"""Prior-shift calibration: one vector of 12 logit offsets for the test set's class mix.

The student is trained (and validated) on the tutorial mix, where silence, unknown
and each target word are about 1/12 of the clips; the Kaggle test set is about
53% unknown and 9% silence. A classifier whose posteriors are calibrated for the
training prior ``pi_train`` becomes Bayes-optimal for a test prior ``pi_test`` by
adding ``log(pi_test / pi_train)`` to its logits (label shift: ``p(x | y)`` is
unchanged, only ``p(y)`` moves). ``PriorShiftCalibrator.fit`` does three steps:

1. Recalibrate on the labelled validation split (default ``calibration="bcts"``:
   a temperature and one bias per class, fitted by log loss; Alexandari, Kundaje &
   Shrikumar 2020, "Maximum likelihood with bias-corrected calibration is
   hard-to-beat at label shift adaptation"). EM trusts the posteriors, so an over-
   or under-confident or class-biased student gives it a wrong prior; see the
   notes in ``tests/test_calibrate.py`` for what this buys on synthetic data.
2. ``em_prior_shift`` estimates ``pi_test`` on the *unlabelled* test logits with
   the EM procedure of Saerens, Latinne & Decaestecker (2002, "Adjusting the
   outputs of a classifier to new a priori probabilities: a simple procedure").
3. Tune extra offsets for a few classes (silence and unknown by default) that
   maximise the *expected* accuracy under ``pi_test`` on the validation split,
   each clip weighted by ``pi_test[y] / pi_val[y]`` to simulate the test mix,
   cross-validated, with a one-standard-error rule so noise does not move them.

The result, ``offsets_``, is ONE vector of 12 numbers in ``CLASSES`` order and in
the units of the raw logits: the exporter adds it to the logits before the softmax,
so the frozen graph's argmax is the calibrated decision (a positive temperature
never changes an argmax, so it need not be baked). Pure NumPy and SciPy (plus
scikit-learn's estimator base and fold splitter); no TensorFlow.
"""

from __future__ import annotations

import itertools
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import joblib
import numpy as np
import sklearn
from scipy.optimize import minimize
from scipy.special import log_softmax, logsumexp
from sklearn.base import BaseEstimator
from sklearn.model_selection import StratifiedKFold
from sklearn.utils.validation import check_is_fitted

from distill.core.errors import DistillError
from distill.core.io import atomic_path
from distill.core.labels import CLASSES, NUM_CLASSES
from distill.core.metrics import softmax

__all__ = ["PriorShiftCalibrator", "em_prior_shift", "weighted_accuracy", "DEFAULT_OFFSET_GRID"]

#: Default grid for the tuned offsets: -3 .. 3 in steps of 0.25 (25 values, 0 included).
DEFAULT_OFFSET_GRID: tuple[float, ...] = tuple(float(v) for v in np.linspace(-3.0, 3.0, 25))

#: An EM prior below this is floored (then the prior renormalised) so no offset is -inf.
PRIOR_FLOOR = 1e-6

#: Above this many grid points the tuner switches from an exhaustive grid to coordinate ascent.
MAX_EXHAUSTIVE_COMBINATIONS = 2_000

_FILE_FORMAT = "distill.calibrator"
_FILE_VERSION = 1
_TINY = np.finfo(np.float64).tiny
_EM_FLOOR = 1e-200


# ----------------------------------------------------------------------------- EM


def em_prior_shift(
    probs: np.ndarray, train_prior: np.ndarray, *, max_iter: int = 200, tol: float = 1e-8, prior_strength: float = 0.0,
    prior_center: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Estimate the class prior of an unlabelled set by EM (Saerens et al. 2002).

    ``probs`` (m, K) are the classifier's posteriors on the unlabelled set, calibrated
    for ``train_prior`` (K,). Each iteration re-weights them by ``prior / train_prior``,
    renormalises, and sets ``prior`` to their mean; it stops when no class's prior
    moves by more than ``tol`` or after ``max_iter`` iterations.

    Returns ``(test_prior, adjusted_posteriors, iterations)``; the adjusted posteriors
    equal ``softmax(log(probs) + log(test_prior / train_prior))``. Vectorised (two
    matrix-vector products per iteration) and numerically safe: posteriors of exactly
    0 or 1 are fine, each row is rescaled so its largest entry is 1, a prior that EM
    drives towards 0 is floored at 1e-200 inside the iteration, and the adjusted
    posteriors are normalised in log space. ``iterations == max_iter`` means it did
    not converge to ``tol``.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] == 0 or probs.shape[1] < 2:
        raise ValueError(
            f"probs must have shape (n_samples, n_classes) with n_samples >= 1 and n_classes >= 2; got {probs.shape}"
        )
    if not np.all(np.isfinite(probs)) or np.any(probs < 0):
        raise ValueError("probs must be finite and non-negative")
    row_sums = probs.sum(axis=1, keepdims=True)
    if np.any(row_sums <= 0):
        raise ValueError("every row of probs must have a positive sum")
    log_probs = np.log(np.maximum(probs / row_sums, _TINY))
    train_prior = _check_prior(train_prior, probs.shape[1], "train_prior")
    center = None if prior_center is None else _check_prior(prior_center, probs.shape[1], "prior_center")
    return _em_log(log_probs, train_prior, max_iter=max_iter, tol=tol, prior_strength=prior_strength, prior_center=center)


def _em_log(log_probs: np.ndarray, train_prior: np.ndarray, *, max_iter: int, tol: float,
            prior_strength: float = 0.0, prior_center: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """EM on log posteriors (rows need not be normalised).

    ``prior_strength`` > 0 makes it MAP-EM under a Dirichlet prior centred on
    ``prior_center`` (default ``train_prior``) worth that many pseudo-clips: the M step
    becomes ``(sum of posteriors + strength * center) / (m + strength)``. On a
    158,538-clip test set a strength of a few hundred changes nothing; on a
    folder of 24 clips it keeps EM from estimating whole classes at 0%, and a center
    at a mix known from elsewhere (a published class count) lets that small folder
    start from the right place instead of the training mix.

    With ``r = prior / train_prior`` and ``P`` the posteriors, the E and M steps
    collapse to ``prior_new = r * P.T @ (1 / (P @ r)) / m``: two matrix-vector
    products per iteration. ``P`` is formed from the log posteriors row-max first,
    so each row's largest entry is 1, and the prior is floored at ``_EM_FLOOR`` inside
    the iteration, so ``P @ r`` neither underflows to 0 nor its inverse overflows; the
    returned posteriors are renormalised in log space.
    """
    if int(max_iter) < 1:
        raise ValueError(f"max_iter must be >= 1; got {max_iter}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0; got {tol}")
    if not prior_strength >= 0:
        raise ValueError(f"prior_strength must be >= 0; got {prior_strength}")
    center = train_prior if prior_center is None else prior_center
    log_train = np.log(train_prior)
    P = np.exp(log_probs - log_probs.max(axis=1, keepdims=True))
    m = P.shape[0]
    prior = train_prior.copy()
    iterations = 0
    for iterations in range(1, int(max_iter) + 1):
        ratio = np.maximum(prior, _EM_FLOOR) / train_prior
        new_prior = (ratio * (P.T @ (1.0 / (P @ ratio))) + prior_strength * center) / (m + prior_strength)
        new_prior /= new_prior.sum()
        change = float(np.max(np.abs(new_prior - prior)))
        prior = new_prior
        if change < tol:
            break
    adjusted = log_probs + (np.log(np.maximum(prior, _EM_FLOOR)) - log_train)
    adjusted = np.exp(adjusted - logsumexp(adjusted, axis=1, keepdims=True))
    return prior, adjusted, iterations


# ----------------------------------------------------------------------------- weighted accuracy


def weighted_accuracy(scores: np.ndarray, y: np.ndarray, prior: np.ndarray) -> float:
    """Accuracy of ``argmax(scores)`` on a set whose class mix is ``prior`` (importance weighting).

    Each example of class k weighs ``prior[k] / (share of class k in y)``, so this is
    ``sum_k prior[k] * recall_k`` over the classes present in ``y``, divided by the
    prior mass of those classes (a class with no example cannot be scored).
    """
    scores = np.asarray(scores, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    prior = np.asarray(prior, dtype=np.float64)
    if scores.ndim != 2 or y.shape != (scores.shape[0],) or prior.shape != (scores.shape[1],):
        raise ValueError(
            f"expected scores (n, K), y (n,) and prior (K,); got {scores.shape}, {y.shape} and {prior.shape}"
        )
    if y.size and (y.min() < 0 or y.max() >= scores.shape[1]):
        raise ValueError(f"y must hold class indices in 0..{scores.shape[1] - 1}")
    correct = (scores.argmax(axis=1) == y).astype(np.float64)
    return float(_weights(y, prior, scores.shape[1]) @ correct)


def _weights(y: np.ndarray, prior: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-example importance weights (sum 1): ``prior[y] / count[y]``, renormalised over present classes."""
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    present = counts > 0
    mass = float(prior[present].sum())
    if mass <= 0:
        raise ValueError("the prior gives zero mass to every class present in y; expected accuracy is undefined")
    per_class = np.zeros(num_classes)
    per_class[present] = prior[present] / counts[present] / mass
    return per_class[y]


# ----------------------------------------------------------------------------- estimator


class PriorShiftCalibrator(BaseEstimator):
    """Logit offsets that adapt a classifier to an unlabelled test set's class mix.

    Parameters (stored unchanged, as scikit-learn's estimator conventions require)
    ----------
    train_prior : array (12,) or None
        The class prior the model was trained with. None: the empirical prior of the
        validation labels ``y`` (right when the validation split has the training mix,
        as the tutorial's split does). It is the reference prior of EM and of
        ``prior_offsets_``; with ``calibration="bcts"`` the decision does not depend on it
        (the fitted biases re-express the posteriors for it).
    em_max_iter, em_tol : EM stopping rule (see ``em_prior_shift``).
    tune_classes : class names or indices whose offsets are tuned on top of the prior shift.
    offset_grid : candidate extra offsets per tuned class, in raw-logit units; None:
        ``DEFAULT_OFFSET_GRID`` (-3 .. 3, step 0.25). 0 is always added.
    cv : folds for the cross-validated tuning (StratifiedKFold, shuffled with
        ``random_state``); fewer when a class has fewer validation clips (noted in
        ``fit_warnings_``); None or 1: no cross-validation (chosen on all of ``y``).
    random_state : seed of the fold split.
    tune : False: no tuned offsets (recalibration and prior shift only).
    tie_se : a candidate whose expected accuracy is below the best's by at most this
        many paired standard errors counts as tied with it; among tied candidates the
        smallest offsets win (a one-standard-error rule: a gain the validation split
        cannot tell from noise does not move the offsets). 0: exact ties only.
    calibration : "bcts" (temperature + per-class bias), "temperature", or None (use the
        posteriors as they are: then ``offsets_ = log(test_prior_ / train_prior_) +
        tuned_offsets_`` exactly). Fitted on (X, y) by log loss before EM.
    prior_strength : pseudo-clips of a Dirichlet prior on the test prior (MAP-EM); 0 = plain EM.
    prior_center : array (12,) or None
        Where that Dirichlet prior is centred; None: ``train_prior``. Pass a class mix known
        from elsewhere (the Kaggle test set's published 53% unknown, 9% silence) when the
        unlabelled folder is too small to estimate it.

    Fitted attributes (all offsets are (12,) in ``CLASSES`` order, in raw-logit units)
    -----------------
    classes_ : the class names (``classes``, default ``CLASSES``); ``predict`` returns indices into it.
    With ``classes`` (silence, unknown and another word list) every 12 above is K = len(classes).
    n_features_in_ : 12.
    train_prior_, val_prior_ (empirical prior of ``y``), test_prior_ (EM estimate,
    floored at ``PRIOR_FLOOR``), em_iterations_, em_converged_.
    calibration_mode_, temperature_ (1.0 without calibration).
    calibration_offsets_ : ``temperature_ * bias`` (0 unless "bcts").
    prior_offsets_ : ``temperature_ * log(test_prior_ / train_prior_)``.
    tuned_offsets_ : extra deltas (0 for untuned classes).
    offsets_ : ``calibration_offsets_ + prior_offsets_ + tuned_offsets_``; the vector to bake.
    tuned_indices_, n_splits_, cv_scores_, fit_warnings_ (list of str, also issued as warnings).

    How the tuned offsets are chosen
    --------------------------------
    The objective is the expected accuracy under ``test_prior_`` of
    ``argmax(X + calibration_offsets_ + prior_offsets_ + delta)`` on the validation clips
    (importance-weighted, see ``weighted_accuracy``), over every grid point ``delta``. The final
    ``delta`` maximises the *mean held-out curve* (the rule of scikit-learn's
    GridSearchCV) subject to the ``tie_se`` rule. We prefer this to the mean of per-fold
    optima because the silence and unknown offsets interact: averaging optima of a
    2-D step-shaped surface can land off its ridge, at a point no fold scored well.
    Separately, for an honest estimate of what tuning buys, each fold's ``delta`` is
    chosen (same rule) on the other k-1 folds and scored on that fold.

    Beyond ``MAX_EXHAUSTIVE_COMBINATIONS`` grid points (3 or more tuned classes on the
    default grid) the search is coordinate ascent from 0 with exact ties only.

    ``cv_scores_`` (expected accuracies under ``test_prior_``): ``before`` / ``after`` per
    held-out fold (without / with that fold's delta) and their means ``before_mean`` /
    ``after_mean``, ``gain`` = after_mean - before_mean (the honest estimate of what tuning
    buys; <= 0 says the tuned offsets are noise: consider ``tune=False``); ``fold_offsets``;
    on all validation clips: ``raw`` (no offsets), ``calibrated_prior`` (without tuning)
    and ``final_in_sample`` (with ``offsets_``; optimistic); ``n_splits``.
    """

    def __init__(
        self,
        *,
        train_prior: np.ndarray | Sequence[float] | None = None,
        em_max_iter: int = 200,
        em_tol: float = 1e-8,
        tune_classes: Sequence[str | int] = ("silence", "unknown"),
        offset_grid: Sequence[float] | None = None,
        cv: int | None = 5,
        random_state: int | None = 0,
        tune: bool = True,
        tie_se: float = 0.5,
        calibration: str | None = "bcts",
        prior_strength: float = 0.0,
        prior_center: np.ndarray | Sequence[float] | None = None,
        classes: Sequence[str] | None = None,
    ):
        self.classes = classes  # the class names in logit order (None: the Kaggle twelve, CLASSES); K = len(classes)
        self.train_prior = train_prior
        self.prior_strength = prior_strength
        self.prior_center = prior_center
        self.em_max_iter = em_max_iter
        self.em_tol = em_tol
        self.tune_classes = tune_classes
        self.offset_grid = offset_grid
        self.cv = cv
        self.random_state = random_state
        self.tune = tune
        self.tie_se = tie_se
        self.calibration = calibration

    def _names(self) -> tuple[str, ...]:
        classes = getattr(self, "classes", None)  # calibrators pickled before word lists have none: the Kaggle twelve
        return CLASSES if classes is None else tuple(classes)

    # -- fitting ---------------------------------------------------------------

    def fit(self, X: np.ndarray, y: np.ndarray, *, X_unlabeled: np.ndarray) -> "PriorShiftCalibrator":
        """X: (n, 12) validation logits; y: (n,) class indices; X_unlabeled: (m, 12) test-set logits."""
        names = self._names()
        K = len(names)
        X = _check_logits(X, "X", K)
        y = _check_labels(y, X.shape[0], K)
        X_unlabeled = _check_logits(X_unlabeled, "X_unlabeled", K)
        mode = self.calibration
        if mode not in _CALIBRATIONS:
            raise ValueError(f"calibration must be one of {list(_CALIBRATIONS)}; got {mode!r}")
        tuned_indices = _tuned_indices(self.tune_classes, names) if self.tune else np.zeros(0, dtype=np.int64)
        grid = _offset_grid(self.offset_grid)
        tie_se = float(self.tie_se)
        if not (np.isfinite(tie_se) and tie_se >= 0):
            raise ValueError(f"tie_se must be a finite number >= 0; got {self.tie_se!r}")
        if self.cv is not None and (isinstance(self.cv, bool) or not isinstance(self.cv, (int, np.integer))):
            raise ValueError(f"cv must be an int (number of folds) or None; got {self.cv!r}")
        notes: list[str] = []

        val_prior = np.bincount(y, minlength=K) / y.size
        if self.train_prior is None:
            if np.any(val_prior == 0):
                missing = [names[k] for k in np.flatnonzero(val_prior == 0)]
                raise ValueError(
                    f"train_prior=None uses the prior of y, but y has no example of {missing}: "
                    "pass train_prior (12,) explicitly"
                )
            train_prior = val_prior.copy()
        else:
            train_prior = _check_prior(self.train_prior, K, "train_prior", names=names)

        if np.any(val_prior == 0):
            missing = [names[k] for k in np.flatnonzero(val_prior == 0)]
            notes.append(f"no validation clips of {missing}: their calibration bias stays 0 and tuning cannot score them")
        # On the validation clips the model's posteriors, calibrated for train_prior, shift by
        # log(val_prior / train_prior); the fitted bias is what that known shift leaves over.
        val_shift = np.log(np.maximum(val_prior, _TINY)) - np.log(train_prior)
        scale, bias = _fit_calibration(X, y, val_shift, mode, notes)
        temperature = 1.0 / scale

        test_prior, _, iterations = _em_log(
            log_softmax(scale * X_unlabeled + bias, axis=1), train_prior, max_iter=self.em_max_iter, tol=self.em_tol,
            prior_strength=float(self.prior_strength),
            prior_center=None if self.prior_center is None else _check_prior(self.prior_center, K, "prior_center", names=names),
        )
        converged = iterations < int(self.em_max_iter)
        if not converged:
            notes.append(f"EM stopped after em_max_iter={self.em_max_iter} iterations without reaching em_tol={self.em_tol}")
        if np.any(test_prior < PRIOR_FLOOR):
            floored = [names[k] for k in np.flatnonzero(test_prior < PRIOR_FLOOR)]
            notes.append(f"EM prior of {floored} is below {PRIOR_FLOOR:g}; floored so their offsets stay finite")
            test_prior = np.maximum(test_prior, PRIOR_FLOOR)
            test_prior /= test_prior.sum()

        # Everything below is in raw-logit units: argmax(scale*X + bias + log ratio + ...) equals
        # argmax(X + temperature*(bias + log ratio) + ...) because temperature > 0.
        calibration_offsets = temperature * (bias - bias.mean())
        prior_offsets = temperature * (np.log(test_prior) - np.log(train_prior))
        Z = X + calibration_offsets + prior_offsets
        splits, n_splits = self._splits(y, notes)
        tuned, cv_scores = _tune(
            Z, y, test_prior, tuned_indices, grid, splits, tie_se=tie_se, names=names
        )
        tuned_offsets = np.zeros(K)
        tuned_offsets[tuned_indices] = tuned
        cv_scores["n_splits"] = n_splits
        cv_scores["raw"] = weighted_accuracy(X, y, test_prior)
        cv_scores["calibrated_prior"] = weighted_accuracy(Z, y, test_prior)
        cv_scores["final_in_sample"] = weighted_accuracy(Z + tuned_offsets, y, test_prior)

        for note in notes:
            warnings.warn(note, UserWarning, stacklevel=2)

        self.classes_ = np.asarray(names)
        self.n_features_in_ = K
        self.train_prior_ = train_prior
        self.val_prior_ = val_prior
        self.test_prior_ = test_prior
        self.calibration_mode_ = mode
        self.temperature_ = float(temperature)
        self.calibration_offsets_ = calibration_offsets
        self.em_iterations_ = int(iterations)
        self.em_converged_ = bool(converged)
        self.prior_offsets_ = prior_offsets
        self.tuned_indices_ = tuned_indices
        self.tuned_offsets_ = tuned_offsets
        self.offsets_ = calibration_offsets + prior_offsets + tuned_offsets
        self.n_splits_ = n_splits
        self.cv_scores_ = cv_scores
        self.fit_warnings_ = notes
        return self

    def _splits(self, y: np.ndarray, notes: list[str]) -> tuple[list[tuple[np.ndarray, np.ndarray]], int]:
        """Stratified folds; fewer than ``cv`` when the rarest present class has fewer clips."""
        if self.cv is None or int(self.cv) <= 1:
            return [], 0
        requested = int(self.cv)
        counts = np.bincount(y, minlength=len(self._names()))
        smallest = int(counts[counts > 0].min())
        n_splits = min(requested, smallest)
        if n_splits < requested:
            rare = self._names()[int(np.flatnonzero(counts == smallest)[0])]
            if n_splits < 2:
                notes.append(
                    f"cv={requested} needs >= 2 validation clips per class, but '{rare}' has {smallest}: "
                    "offsets tuned on all clips without cross-validation (cv_scores_ has no folds)"
                )
                return [], 0
            notes.append(f"cv={requested} reduced to {n_splits} folds: class '{rare}' has only {smallest} validation clips")
        folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=self.random_state)
        return list(folds.split(np.zeros((y.size, 1)), y)), n_splits

    # -- prediction ------------------------------------------------------------

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Calibrated logits: ``X + offsets_`` (what the exported graph feeds its softmax)."""
        check_is_fitted(self, "offsets_")
        return _check_logits(X, "X", len(self.offsets_)) + self.offsets_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Posteriors for the test mix: ``softmax((X + offsets_) / temperature_)``."""
        return softmax(self.decision_function(X), temperature=self.temperature_)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class indices (into ``classes_`` / ``CLASSES``) of the calibrated argmax."""
        return self.decision_function(X).argmax(axis=1)

    def expected_accuracy(
        self, X: np.ndarray, y: np.ndarray, *, prior: np.ndarray | None = None, offsets: np.ndarray | None = None
    ) -> float:
        """Importance-weighted accuracy of ``argmax(X + offsets)`` as if ``y``'s mix were ``prior``.

        Defaults: ``prior=test_prior_``, ``offsets=offsets_``; pass ``offsets=np.zeros(12)``
        for the uncalibrated model or ``offsets=est.prior_offsets_`` for the prior shift alone.
        """
        if prior is None or offsets is None:
            check_is_fitted(self, "offsets_")
        K = len(self._names())
        X = _check_logits(X, "X", K)
        y = _check_labels(y, X.shape[0], K)
        prior = self.test_prior_ if prior is None else _check_prior(prior, K, "prior", allow_zero=True, names=self._names())
        offsets = self.offsets_ if offsets is None else _check_vector(offsets, "offsets", K)
        return weighted_accuracy(X + offsets, y, prior)

    # -- persistence and reporting ---------------------------------------------

    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted calibrator with joblib, atomically (temp file then rename)."""
        check_is_fitted(self, "offsets_")
        payload = {
            "format": _FILE_FORMAT,
            "version": _FILE_VERSION,
            "sklearn_version": sklearn.__version__,
            "classes": list(self._names()),
            "calibrator": self,
        }
        with atomic_path(path) as tmp:
            joblib.dump(payload, tmp)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PriorShiftCalibrator":
        """Read a file written by ``save``; a DistillError naming the file if it is not one.

        joblib unpickles: load only files you (or this toolkit) wrote.
        """
        path = Path(path)
        if not path.is_file():
            raise DistillError(f"{path}: no calibrator file found (write one with `distill calibrate`)")
        try:
            payload = joblib.load(path)
        except Exception as err:  # truncated, not a pickle, unknown classes ...
            raise DistillError(f"{path}: not a readable calibrator file ({type(err).__name__}: {err})") from err
        obj = payload.get("calibrator") if isinstance(payload, dict) and payload.get("format") == _FILE_FORMAT else payload
        if not isinstance(obj, cls):
            raise DistillError(f"{path}: expected a {cls.__name__} saved by distill, found {type(obj).__name__}")
        if isinstance(payload, dict):
            if payload.get("version") != _FILE_VERSION:
                raise DistillError(
                    f"{path}: calibrator file version {payload.get('version')} (this distill reads {_FILE_VERSION})"
                )
            names = CLASSES if getattr(obj, "classes", None) is None else tuple(obj.classes)
            if tuple(payload.get("classes", ())) != names:
                raise DistillError(f"{path}: saved with class order {payload.get('classes')}, expected {list(names)}")
        if not hasattr(obj, "offsets_") or np.shape(obj.offsets_) != (len(getattr(obj, "classes", None) or CLASSES),):
            raise DistillError(f"{path}: the saved {cls.__name__} is not fitted")
        return obj

    def summary(self) -> dict[str, Any]:
        """JSON-able report: priors and offsets by class name, the offsets vector, CV scores."""
        check_is_fitted(self, "offsets_")

        def by_name(values: np.ndarray) -> dict[str, float]:
            return {name: float(v) for name, v in zip(self._names(), values)}

        return {
            "classes": list(self._names()),
            "offsets": [float(v) for v in self.offsets_],
            "offsets_by_class": by_name(self.offsets_),
            "calibration": self.calibration_mode_,
            "temperature": self.temperature_,
            "calibration_offsets": by_name(self.calibration_offsets_),
            "prior_offsets": by_name(self.prior_offsets_),
            "tuned_offsets": by_name(self.tuned_offsets_),
            "train_prior": by_name(self.train_prior_),
            "validation_prior": by_name(self.val_prior_),
            "test_prior": by_name(self.test_prior_),
            "em_iterations": self.em_iterations_,
            "em_converged": self.em_converged_,
            "tuned_classes": [self._names()[k] for k in self.tuned_indices_],
            "cv_scores": _jsonable(self.cv_scores_),
            "warnings": list(self.fit_warnings_),
            "params": _jsonable(self.get_params()),
        }


# ----------------------------------------------------------------------------- recalibration

_CALIBRATIONS = ("bcts", "temperature", None)
_SCALE_BOUNDS = (1e-2, 1e2)
#: Standard deviation of the Gaussian prior on each "bcts" bias (None: plain maximum likelihood).
#: 0.5 measured best of None / 1 / 0.5 / 0.25 on the synthetic worlds of tests/test_calibrate.py.
BIAS_PRIOR_SD: float | None = 0.5


def _fit_calibration(
    X: np.ndarray, y: np.ndarray, shift: np.ndarray, mode: str | None, notes: list[str]
) -> tuple[float, np.ndarray]:
    """Fit ``softmax(scale * X + bias + shift)`` to the validation labels by log loss.

    ``shift`` is the known prior shift from the training to the validation mix, so that
    ``scale * X + bias`` is calibrated for the training prior. ``mode``: "temperature"
    fits ``scale`` (= 1 / temperature) only; "bcts" (bias-corrected temperature scaling,
    Alexandari et al. 2020, "Maximum likelihood with bias-corrected calibration is
    hard-to-beat at label shift adaptation") also fits one bias per class, with a
    Gaussian prior of standard deviation ``BIAS_PRIOR_SD`` on each bias (a few hundred
    clips a class pin a confident model's biases down only loosely); None returns (1, 0).
    The loss is convex in (scale, bias); L-BFGS-B with ``scale`` bounded.
    """
    if mode is None:
        return 1.0, np.zeros(X.shape[1])
    n, K = X.shape
    onehot = np.zeros((n, K))
    onehot[np.arange(n), y] = 1.0
    fit_bias = mode == "bcts"
    ridge = 0.0 if BIAS_PRIOR_SD is None else 1.0 / (2.0 * BIAS_PRIOR_SD**2 * n)

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        a = theta[0]
        b = theta[1:] if fit_bias else np.zeros(K)
        L = a * X + b + shift
        lse = logsumexp(L, axis=1)
        value = float(np.mean(lse - L[np.arange(n), y]))
        R = (np.exp(L - lse[:, None]) - onehot) / n
        grad = [np.sum(R * X)]
        if fit_bias:
            value += float(b @ b) * ridge
            return value, np.concatenate([grad, R.sum(axis=0) + 2 * ridge * b])
        return value, np.asarray(grad)

    theta0 = np.zeros(1 + (K if fit_bias else 0))
    theta0[0] = 1.0
    bounds = [_SCALE_BOUNDS] + [(-50.0, 50.0)] * (K if fit_bias else 0)
    result = minimize(loss, theta0, jac=True, method="L-BFGS-B", bounds=bounds)
    scale = float(result.x[0])
    bias = result.x[1:] if fit_bias else np.zeros(K)
    if not result.success:
        notes.append(f"{mode} calibration did not converge ({result.message}); using its last iterate")
    if np.isclose(scale, _SCALE_BOUNDS[0]) or np.isclose(scale, _SCALE_BOUNDS[1]):
        notes.append(
            f"{mode} calibration hit its bound (temperature {1 / scale:g}): the validation logits are "
            "(nearly) separable or uninformative; prefer calibration=None"
        )
    return scale, bias - bias.mean()


# ----------------------------------------------------------------------------- tuning


def _tune(
    Z: np.ndarray,
    y: np.ndarray,
    prior: np.ndarray,
    tuned: np.ndarray,
    grid: np.ndarray,
    splits: list[tuple[np.ndarray, np.ndarray]],
    *,
    tie_se: float,
    names: Sequence[str] = CLASSES,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Choose the extra offsets of the ``tuned`` classes; returns them (in ``tuned`` order) and the CV scores.

    Objective rows (each a weight vector over the validation clips, summing to 1):
    the k held-out folds, the k training parts, and the selection row: the mean of
    the held-out rows (its score is the mean held-out curve) or, without folds, all clips.
    """
    n = y.size
    k = len(splits)
    W = np.zeros((2 * k + 1, n))
    for f, (train_idx, test_idx) in enumerate(splits):
        W[f, test_idx] = _weights(y[test_idx], prior, len(names))
        W[k + f, train_idx] = _weights(y[train_idx], prior, len(names))
    W[2 * k] = W[:k].mean(axis=0) if k else _weights(y, prior, len(names))

    base = W @ (Z.argmax(axis=1) == y).astype(np.float64)
    scores: dict[str, Any] = {"before": [float(v) for v in base[:k]], "tuned_classes": [names[i] for i in tuned]}
    d = tuned.size
    if d == 0:
        scores.update(after=list(scores["before"]), fold_offsets=[[] for _ in range(k)])
        scores.update(before_mean=_mean(scores["before"]), after_mean=_mean(scores["after"]), gain=0.0 if k else None)
        return np.zeros(0), scores

    scorer = _Scorer(Z, y, tuned)
    select_rows = list(range(k, 2 * k + 1))  # each fold's training part, then the selection row
    if grid.size**d <= MAX_EXHAUSTIVE_COMBINATIONS:
        combos = np.array(list(itertools.product(grid, repeat=d)))
        S = scorer.scores(W, combos)
        chosen = _select_within_se(scorer, W[select_rows], S[select_rows], combos, tie_se)
    else:
        chosen = [_coordinate_ascent(scorer, W[r], grid, d) for r in select_rows]
    fold_choice, final = chosen[:k], chosen[k]

    after = [float(scorer.scores(W[f : f + 1], fold_choice[f][None, :])[0, 0]) for f in range(k)]
    scores.update(
        after=after,
        fold_offsets=[[float(v) for v in c] for c in fold_choice],
        before_mean=_mean(scores["before"]),
        after_mean=_mean(after),
    )
    if k:
        scores["gain"] = scores["after_mean"] - scores["before_mean"]
    return np.asarray(final, dtype=np.float64), scores


class _Scorer:
    """Weighted accuracies of ``argmax(Z + delta)`` for many candidate ``delta`` at once.

    The argmax over the untuned classes does not depend on ``delta``, so a candidate
    only compares the shifted tuned logits with that fixed best; ties go to the lower
    class index, as ``np.argmax`` (and TensorFlow's ArgMax) do.
    """

    def __init__(self, Z: np.ndarray, y: np.ndarray, tuned: np.ndarray):
        n = y.size
        self.y = y
        self.order = np.argsort(tuned)
        self.tuned = tuned[self.order]
        others = np.setdiff1d(np.arange(Z.shape[1]), self.tuned)
        if others.size:
            self.other_best = others[Z[:, others].argmax(axis=1)]
            self.other_val = Z[np.arange(n), self.other_best]
        else:
            self.other_best = np.full(n, Z.shape[1])
            self.other_val = np.full(n, -np.inf)
        self.Zt = Z[:, self.tuned]
        self.chunk = max(1, 4_000_000 // max(1, n * self.tuned.size))

    def correct(self, combos: np.ndarray) -> np.ndarray:
        """(n, c) float 0/1: is clip i right under candidate j (combos in the caller's ``tuned`` order)."""
        c = np.asarray(combos, dtype=np.float64)[:, self.order]
        vals = self.Zt[:, None, :] + c[None, :, :]  # (n, c, d)
        arg = vals.argmax(axis=2)
        best_val = np.take_along_axis(vals, arg[:, :, None], axis=2)[:, :, 0]
        best_cls = self.tuned[arg]
        ov, ob = self.other_val[:, None], self.other_best[:, None]
        use_tuned = (best_val > ov) | ((best_val == ov) & (best_cls < ob))
        return (np.where(use_tuned, best_cls, ob) == self.y[:, None]).astype(np.float64)

    def scores(self, W: np.ndarray, combos: np.ndarray) -> np.ndarray:
        """(rows of W, c) weighted accuracies."""
        out = np.empty((W.shape[0], len(combos)))
        for start in range(0, len(combos), self.chunk):
            out[:, start : start + self.chunk] = W @ self.correct(combos[start : start + self.chunk])
        return out


def _select_within_se(scorer: _Scorer, W: np.ndarray, S: np.ndarray, combos: np.ndarray, tie_se: float) -> list[np.ndarray]:
    """For each objective row: the smallest candidate not worse than the row's best by more than
    ``tie_se`` paired standard errors.

    For a candidate with per-clip correctness ``c`` against the best's ``b``, the paired
    difference ``d = c - b`` has weighted mean ``D = S - S_best`` and estimated standard
    error ``sqrt(sum_i w_i^2 (d_i - D)^2)`` (weights summing to 1). With 0/1 values
    ``d^2 = c + b - 2cb``, so two extra weighted sums per candidate give it. Smallest
    means smallest L1 norm, then L2 norm.
    """
    best = [_smallest(combos, np.flatnonzero(row >= row.max() - 1e-12)) for row in S]
    if tie_se <= 0:
        return [combos[i] for i in best]
    B = np.stack([scorer.correct(combos[i][None, :])[:, 0] for i in best])  # (rows, n)
    W2 = W**2
    sums = scorer.scores(np.vstack([W2, W2 * B]), combos)  # (2 rows, c)
    r = W.shape[0]
    A, C = sums[:r], sums[r:]  # sum w^2 c, sum w^2 c b
    wb = (W2 * B).sum(axis=1, keepdims=True)  # sum w^2 b
    w2 = W2.sum(axis=1, keepdims=True)
    D = S - S[np.arange(r), best][:, None]
    sum_d2 = A + wb - 2 * C
    sum_d = A - wb
    var = np.maximum(sum_d2 - 2 * D * sum_d + D**2 * w2, 0.0)
    ok = D >= -tie_se * np.sqrt(var) - 1e-12
    return [combos[_smallest(combos, np.flatnonzero(ok[j]))] for j in range(r)]


def _smallest(combos: np.ndarray, candidates: np.ndarray) -> int:
    """The candidate with the smallest |delta|: L1 norm, then L2 norm, then first."""
    l1 = np.abs(combos[candidates]).sum(axis=1)
    l2 = (combos[candidates] ** 2).sum(axis=1)
    return int(candidates[np.lexsort((l2, l1))[0]])


def _coordinate_ascent(scorer: _Scorer, w: np.ndarray, grid: np.ndarray, d: int, max_sweeps: int = 20) -> np.ndarray:
    """Maximise one objective row one coordinate at a time over ``grid``, from 0 (exact ties -> smaller |delta|)."""
    W = w[None, :]
    current = np.zeros(d)
    current_score = float(scorer.scores(W, current[None, :])[0, 0])
    for _ in range(max_sweeps):
        changed = False
        for j in range(d):
            line = np.repeat(current[None, :], grid.size, axis=0)
            line[:, j] = grid
            s = scorer.scores(W, line)[0]
            i = _smallest(line, np.flatnonzero(s >= s.max() - 1e-12))
            if s[i] > current_score + 1e-12 or (s[i] >= current_score - 1e-12 and abs(line[i, j]) < abs(current[j])):
                current, current_score, changed = line[i].copy(), float(s[i]), True
        if not changed:
            break
    return current


# ----------------------------------------------------------------------------- validation helpers


def _check_logits(X: Any, name: str, num_classes: int = NUM_CLASSES) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != num_classes:
        raise ValueError(
            f"{name} must have shape (n_samples, {num_classes}): one logit per class in CLASSES order; got shape {X.shape}"
        )
    if X.shape[0] == 0:
        raise ValueError(f"{name} has no rows; expected shape (n_samples >= 1, {num_classes})")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name} contains NaN or infinite logits")
    return X


def _check_labels(y: Any, n: int, num_classes: int = NUM_CLASSES) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"y must have shape ({n},) to match X; got shape {y.shape}")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise ValueError("y must hold integer class indices")
    elif y.dtype.kind not in "iub":
        raise ValueError(f"y must hold integer class indices 0..{num_classes - 1}; got dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"y must hold class indices in 0..{num_classes - 1}; got values in {y.min()}..{y.max()}")
    return y


def _check_vector(v: Any, name: str, num_classes: int = NUM_CLASSES) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    if v.shape != (num_classes,):
        raise ValueError(f"{name} must have shape ({num_classes},); got {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} must be finite")
    return v


def _check_prior(prior: Any, num_classes: int, name: str, *, allow_zero: bool = False, names: Sequence[str] | None = None) -> np.ndarray:
    prior = np.asarray(prior, dtype=np.float64)
    if prior.shape != (num_classes,):
        raise ValueError(f"{name} must have shape ({num_classes},); got {prior.shape}")
    if not np.all(np.isfinite(prior)) or np.any(prior < 0):
        raise ValueError(f"{name} must be finite and non-negative")
    if not allow_zero and np.any(prior == 0):
        names = names if names is not None else (CLASSES if num_classes == NUM_CLASSES else None)
        zero = [names[k] if names is not None else k for k in np.flatnonzero(prior == 0)]
        raise ValueError(f"{name} is 0 for {zero}: a class the model was never trained on has no calibrated posterior to shift")
    total = prior.sum()
    if total <= 0:
        raise ValueError(f"{name} sums to 0")
    return prior / total


def _tuned_indices(tune_classes: Sequence[str | int] | None, names: Sequence[str] = CLASSES) -> np.ndarray:
    index = {name: i for i, name in enumerate(names)}
    if tune_classes is None:
        return np.zeros(0, dtype=np.int64)
    if isinstance(tune_classes, (str, int, np.integer)):
        tune_classes = (tune_classes,)
    out = []
    for c in tune_classes:
        if isinstance(c, str):
            if c not in index:
                raise ValueError(f"tune_classes: unknown class {c!r}; expected one of {list(names)}")
            out.append(index[c])
        elif isinstance(c, (int, np.integer)) and 0 <= int(c) < len(names):
            out.append(int(c))
        else:
            raise ValueError(f"tune_classes: {c!r} is neither a class name nor an index 0..{len(names) - 1}")
    if len(set(out)) != len(out):
        raise ValueError(f"tune_classes lists a class twice: {list(tune_classes)}")
    return np.asarray(out, dtype=np.int64)


def _offset_grid(grid: Sequence[float] | None) -> np.ndarray:
    values = np.asarray(DEFAULT_OFFSET_GRID if grid is None else grid, dtype=np.float64)
    if values.ndim != 1 or values.size == 0 or not np.all(np.isfinite(values)):
        raise ValueError(f"offset_grid must be a non-empty 1-D sequence of finite numbers; got shape {values.shape}")
    return np.unique(np.append(values, 0.0))


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value
