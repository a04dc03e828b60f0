"""Prior-shift calibration on synthetic logits with a known answer (pure NumPy, no TensorFlow).

The synthetic world: 12 classes, each a Gaussian in 3-D (unknown broader than the
rest, as real "unknown" is a mix of many words); the logits are the Bayes-optimal
log posteriors under the tutorial training mix (1/12 each). The labelled
validation split is drawn with that mix; the "test" set with the Kaggle mix
(53% unknown, 9% silence, 3.8% per target word). Because the world is known, the
Bayes-optimal accuracy on the test set is known too ("oracle").

Measured on this world (seed 0, 3,000 validation / 12,000 test clips; see the
report for a wider sweep): EM's prior is within ~0.01 per class of the truth, and
calibration lifts test accuracy from ~0.67 to ~0.79, the oracle's level.
"""

from __future__ import annotations

import json
import warnings

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from distill.calibration.prior_shift import DEFAULT_OFFSET_GRID, PriorShiftCalibrator, em_prior_shift, weighted_accuracy
from distill.core.errors import DistillError
from distill.core.labels import CLASSES, NUM_CLASSES, SILENCE_INDEX, UNKNOWN_INDEX
from distill.core.metrics import softmax

K = NUM_CLASSES
TRAIN_PRIOR = np.full(K, 1.0 / K)
KAGGLE_PRIOR = np.r_[0.09, 0.53, np.full(10, 0.038)]
KAGGLE_PRIOR = KAGGLE_PRIOR / KAGGLE_PRIOR.sum()


class World:
    """Class-conditional Gaussians; ``logits`` are Bayes log posteriors under TRAIN_PRIOR."""

    def __init__(self, seed: int = 0, dim: int = 3, spread: float = 3.5):
        rng = np.random.default_rng(seed)
        self.means = rng.normal(size=(K, dim)) * spread
        self.sigma = np.ones(K)
        self.sigma[UNKNOWN_INDEX] = 1.4

    def sample(self, prior: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        y = rng.choice(K, size=n, p=prior)
        x = self.means[y] + rng.normal(size=(n, self.means.shape[1])) * self.sigma[y, None]
        sq = ((x[:, None, :] - self.means[None]) ** 2).sum(axis=-1)
        log_lik = -sq / (2 * self.sigma**2) - self.means.shape[1] * np.log(self.sigma)
        return log_lik + np.log(TRAIN_PRIOR), y


def accuracy(scores: np.ndarray, y: np.ndarray) -> float:
    return float((np.asarray(scores).argmax(axis=1) == y).mean())


@pytest.fixture(scope="module")
def world() -> World:
    return World(seed=0)


@pytest.fixture(scope="module")
def shifted(world):
    """(validation logits, labels, test logits, test labels): validation in the training mix, test in the Kaggle mix."""
    rng = np.random.default_rng(1)
    X_val, y_val = world.sample(TRAIN_PRIOR, 3000, rng)
    X_test, y_test = world.sample(KAGGLE_PRIOR, 12000, rng)
    return X_val, y_val, X_test, y_test


@pytest.fixture(scope="module")
def fitted(shifted) -> PriorShiftCalibrator:
    X_val, y_val, X_test, _ = shifted
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return PriorShiftCalibrator().fit(X_val, y_val, X_unlabeled=X_test)


# ----------------------------------------------------------------------------- EM


def test_em_recovers_a_known_prior(shifted):
    _, _, X_test, y_test = shifted
    prior, adjusted, iterations = em_prior_shift(softmax(X_test), TRAIN_PRIOR)
    true_prior = np.bincount(y_test, minlength=K) / y_test.size
    assert prior.shape == (K,) and prior.sum() == pytest.approx(1.0)
    assert np.abs(prior - true_prior).max() < 0.02
    assert np.abs(prior - true_prior).sum() < 0.06
    assert 1 <= iterations <= 200
    # adjusted posteriors are the prior-shifted softmax, and they are more accurate on the shifted set
    np.testing.assert_allclose(adjusted, softmax(X_test + np.log(prior / TRAIN_PRIOR)), atol=1e-10)
    assert accuracy(adjusted, y_test) > accuracy(X_test, y_test) + 0.05


def test_em_keeps_the_prior_when_nothing_shifted(world):
    rng = np.random.default_rng(2)
    X, y = world.sample(TRAIN_PRIOR, 12000, rng)
    prior, adjusted, _ = em_prior_shift(softmax(X), TRAIN_PRIOR)
    assert np.abs(prior - TRAIN_PRIOR).max() < 0.02
    assert abs(accuracy(adjusted, y) - accuracy(X, y)) < 0.005


def test_em_is_numerically_safe_with_hard_posteriors():
    probs = np.zeros((6, K))
    probs[np.arange(6), [0, 1, 1, 1, 2, 3]] = 1.0  # exact zeros and ones
    probs[5] = softmax(np.r_[800.0, -800.0, np.zeros(K - 2)])
    prior, adjusted, _ = em_prior_shift(probs, TRAIN_PRIOR, max_iter=50)
    assert np.all(np.isfinite(prior)) and np.all(np.isfinite(adjusted))
    np.testing.assert_allclose(adjusted.sum(axis=1), 1.0)
    assert prior[UNKNOWN_INDEX] == pytest.approx(0.5, abs=1e-6)


@pytest.mark.parametrize(
    "probs,train_prior,match",
    [
        (np.full((4, K), 1 / K), np.full(K - 1, 1 / (K - 1)), r"train_prior must have shape \(12,\)"),
        (np.full((4, K), 1 / K), np.r_[0.0, np.full(K - 1, 1 / (K - 1))], "is 0 for"),
        (np.full(K, 1 / K), TRAIN_PRIOR, r"shape \(n_samples, n_classes\)"),
        (-np.full((4, K), 1 / K), TRAIN_PRIOR, "non-negative"),
    ],
)
def test_em_rejects_bad_input(probs, train_prior, match):
    with pytest.raises(ValueError, match=match):
        em_prior_shift(probs, train_prior)


# ----------------------------------------------------------------------------- the calibrator on shifted data


def test_offsets_improve_accuracy_on_the_shifted_test_set(shifted, fitted):
    X_val, y_val, X_test, y_test = shifted
    true_prior = np.bincount(y_test, minlength=K) / y_test.size
    # looser than EM on the true posteriors: the recalibration is fitted on 250 clips a class
    assert np.abs(fitted.test_prior_ - true_prior).max() < 0.03
    raw, calibrated = accuracy(X_test, y_test), accuracy(fitted.decision_function(X_test), y_test)
    oracle = accuracy(X_test + np.log(KAGGLE_PRIOR / TRAIN_PRIOR), y_test)
    assert calibrated > raw + 0.05  # measured: 0.67 -> 0.79
    assert calibrated > oracle - 0.01  # measured: within 0.6 points of the oracle
    np.testing.assert_array_equal(fitted.predict(X_test), fitted.decision_function(X_test).argmax(axis=1))
    # the validation estimate of the test accuracy is close to the real one
    assert fitted.expected_accuracy(X_val, y_val) == pytest.approx(calibrated, abs=0.03)


def test_offsets_are_the_sum_of_their_parts(fitted):
    np.testing.assert_allclose(fitted.offsets_, fitted.calibration_offsets_ + fitted.prior_offsets_ + fitted.tuned_offsets_)
    np.testing.assert_allclose(fitted.prior_offsets_, fitted.temperature_ * np.log(fitted.test_prior_ / fitted.train_prior_))
    untuned = np.setdiff1d(np.arange(K), [SILENCE_INDEX, UNKNOWN_INDEX])
    assert np.all(fitted.tuned_offsets_[untuned] == 0)
    assert list(fitted.classes_) == list(CLASSES) and fitted.n_features_in_ == K


def test_without_recalibration_offsets_are_exactly_the_log_prior_ratio(shifted):
    X_val, y_val, X_test, _ = shifted
    est = PriorShiftCalibrator(calibration=None, tune=False).fit(X_val, y_val, X_unlabeled=X_test)
    assert est.temperature_ == 1.0 and np.all(est.calibration_offsets_ == 0) and np.all(est.tuned_offsets_ == 0)
    np.testing.assert_allclose(est.offsets_, np.log(est.test_prior_ / est.train_prior_))


@pytest.mark.parametrize("distortion", ["overconfident", "class_bias"])
def test_recalibration_repairs_a_miscalibrated_model_before_em(shifted, distortion):
    """EM trusts the posteriors: logits x2, or unknown pushed down by 1, mislead it; BCTS undoes both."""
    X_val, y_val, X_test, y_test = shifted
    if distortion == "overconfident":
        X_val, X_test = 2 * X_val, 2 * X_test
    else:
        bias = np.zeros(K)
        bias[UNKNOWN_INDEX], bias[SILENCE_INDEX] = -1.0, 0.5
        X_val, X_test = X_val + bias, X_test + bias
    true_prior = np.bincount(y_test, minlength=K) / y_test.size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = PriorShiftCalibrator(calibration=None, tune=False).fit(X_val, y_val, X_unlabeled=X_test)
        bcts = PriorShiftCalibrator(tune=False).fit(X_val, y_val, X_unlabeled=X_test)
    assert np.abs(bcts.test_prior_ - true_prior).sum() < 0.08
    assert np.abs(plain.test_prior_ - true_prior).sum() > 2 * np.abs(bcts.test_prior_ - true_prior).sum()
    assert accuracy(bcts.decision_function(X_test), y_test) > accuracy(plain.decision_function(X_test), y_test) + 0.01
    if distortion == "overconfident":
        assert bcts.temperature_ == pytest.approx(2.0, rel=0.1)


def test_calibration_never_hurts_when_priors_are_equal(world):
    """Nothing to correct: the offsets are sampling noise (measured: at most ~0.4 in this hard
    world, 77% accuracy, 250 validation clips a class) and cost at most noise in accuracy."""
    rng = np.random.default_rng(3)
    X_val, y_val = world.sample(TRAIN_PRIOR, 3000, rng)
    X_test, y_test = world.sample(TRAIN_PRIOR, 12000, rng)
    est = PriorShiftCalibrator(train_prior=TRAIN_PRIOR).fit(X_val, y_val, X_unlabeled=X_test)
    assert np.abs(est.offsets_ - est.offsets_.mean()).max() < 0.5
    assert np.abs(est.tuned_offsets_).max() <= 0.5  # at most two grid steps
    assert np.abs(est.test_prior_ - TRAIN_PRIOR).max() < 0.02
    assert accuracy(est.decision_function(X_test), y_test) >= accuracy(X_test, y_test) - 0.005


def squash_unknown(X: np.ndarray) -> np.ndarray:
    """A miscalibration no temperature or bias can undo: the unknown logit squashed towards the best word's."""
    X = X.copy()
    X[:, UNKNOWN_INDEX] = 0.5 * X[:, UNKNOWN_INDEX] + 0.5 * X[:, 2:].max(axis=1) - 1.0
    return X


@pytest.mark.filterwarnings("ignore:EM prior of")  # this distortion misleads EM about some classes
def test_tuning_helps_where_recalibration_cannot(shifted):
    X_val, y_val, X_test, y_test = shifted
    X_val, X_test = squash_unknown(X_val), squash_unknown(X_test)
    est = PriorShiftCalibrator().fit(X_val, y_val, X_unlabeled=X_test)
    untuned = accuracy(X_test + est.calibration_offsets_ + est.prior_offsets_, y_test)
    tuned = accuracy(est.decision_function(X_test), y_test)
    assert est.tuned_offsets_[UNKNOWN_INDEX] != 0
    assert tuned > untuned + 0.01
    assert est.cv_scores_["after_mean"] > est.cv_scores_["before_mean"]
    # a tie tolerance wider than any gain keeps every offset at 0
    wide = PriorShiftCalibrator(tie_se=1e6).fit(X_val, y_val, X_unlabeled=X_test)
    assert np.all(wide.tuned_offsets_ == 0)


@pytest.mark.filterwarnings("ignore:EM prior of")
def test_tuned_offsets_maximise_the_expected_accuracy_on_the_grid(shifted):
    """The vectorised scorer agrees with a brute-force loop over ``expected_accuracy``."""
    X_val, y_val, X_test, _ = shifted
    X_val, X_test = squash_unknown(X_val), squash_unknown(X_test)
    grid = (-2.0, -1.0, -0.5, 0.5, 1.0, 2.0)
    est = PriorShiftCalibrator(cv=None, tie_se=0.0, offset_grid=grid).fit(X_val, y_val, X_unlabeled=X_test)
    base = est.calibration_offsets_ + est.prior_offsets_
    best = est.expected_accuracy(X_val, y_val)
    assert best == pytest.approx(est.cv_scores_["final_in_sample"])
    for ds in (0.0, *grid):
        for du in (0.0, *grid):
            delta = np.zeros(K)
            delta[SILENCE_INDEX], delta[UNKNOWN_INDEX] = ds, du
            assert est.expected_accuracy(X_val, y_val, offsets=base + delta) <= best + 1e-12


def test_ties_prefer_no_change():
    """Perfectly separated logits: every small offset scores 100%, so the tuned offsets stay exactly 0."""
    rng = np.random.default_rng(5)
    y = np.repeat(np.arange(K), 20)
    X = rng.normal(size=(y.size, K))
    X[np.arange(y.size), y] += 20.0
    est = PriorShiftCalibrator(calibration=None, tie_se=0.0, offset_grid=(-1.0, -0.5, 0.5, 1.0)).fit(X, y, X_unlabeled=X)
    assert np.all(est.tuned_offsets_ == 0)
    assert est.cv_scores_["after_mean"] == est.cv_scores_["before_mean"] == 1.0


def test_untuned_and_many_tuned_classes(shifted):
    X_val, y_val, X_test, y_test = shifted
    off = PriorShiftCalibrator(tune=False).fit(X_val, y_val, X_unlabeled=X_test)
    assert np.all(off.tuned_offsets_ == 0) and off.cv_scores_["before"] == off.cv_scores_["after"]
    # three classes on the default grid is past the exhaustive limit: coordinate ascent
    three = PriorShiftCalibrator(tune_classes=(0, 1, "no")).fit(X_val, y_val, X_unlabeled=X_test)
    assert np.all(three.tuned_offsets_[4:] == 0) and three.tuned_offsets_[2] == 0
    assert set(three.tuned_offsets_[[0, 1, 3]]) <= set(DEFAULT_OFFSET_GRID)
    assert accuracy(three.decision_function(X_test), y_test) > accuracy(off.decision_function(X_test), y_test) - 0.01


def test_cv_scores_report(fitted):
    scores = fitted.cv_scores_
    assert fitted.n_splits_ == scores["n_splits"] == 5
    assert len(scores["before"]) == len(scores["after"]) == len(scores["fold_offsets"]) == 5
    assert scores["before_mean"] == pytest.approx(np.mean(scores["before"]))
    assert scores["raw"] < scores["calibrated_prior"]  # the prior shift is worth it on the validation estimate too
    for key in ("raw", "calibrated_prior", "final_in_sample", "before_mean", "after_mean"):
        assert 0.0 <= scores[key] <= 1.0


def test_too_few_clips_per_class_reduce_the_folds(shifted):
    X_val, y_val, X_test, y_test = shifted
    keep = np.flatnonzero(y_val != 5)
    keep = np.r_[keep, np.flatnonzero(y_val == 5)[:3]]  # "down" keeps 3 clips
    # a thinned validation split is not in the training mix: say what the model was trained with
    with pytest.warns(UserWarning, match="reduced to 3 folds"):
        est = PriorShiftCalibrator(train_prior=TRAIN_PRIOR).fit(X_val[keep], y_val[keep], X_unlabeled=X_test)
    assert est.n_splits_ == 3 and any("reduced to 3 folds" in w for w in est.fit_warnings_)
    assert np.abs(est.test_prior_ - np.bincount(y_test, minlength=K) / y_test.size).max() < 0.03
    keep = np.r_[np.flatnonzero(y_val != 5), np.flatnonzero(y_val == 5)[:1]]
    with pytest.warns(UserWarning, match="without cross-validation"):
        est = PriorShiftCalibrator(train_prior=TRAIN_PRIOR).fit(X_val[keep], y_val[keep], X_unlabeled=X_test)
    assert est.n_splits_ == 0 and est.cv_scores_["before"] == []


def test_a_class_missing_from_validation(shifted):
    X_val, y_val, X_test, y_test = shifted
    keep = y_val != 7
    with pytest.raises(ValueError, match="no example of"):
        PriorShiftCalibrator().fit(X_val[keep], y_val[keep], X_unlabeled=X_test)
    with pytest.warns(UserWarning, match=r"no validation clips of \['right'\]"):
        est = PriorShiftCalibrator(train_prior=TRAIN_PRIOR).fit(X_val[keep], y_val[keep], X_unlabeled=X_test)
    assert np.all(np.isfinite(est.offsets_))
    assert np.abs(est.test_prior_ - np.bincount(y_test, minlength=K) / y_test.size).max() < 0.03


# ----------------------------------------------------------------------------- expected accuracy


def test_expected_accuracy_matches_an_actually_resampled_set(shifted, fitted):
    X_val, y_val, _, _ = shifted
    rng = np.random.default_rng(6)
    counts = np.round(KAGGLE_PRIOR * 300_000).astype(int)
    idx = np.concatenate([rng.choice(np.flatnonzero(y_val == k), size=c) for k, c in enumerate(counts)])
    for offsets in (np.zeros(K), fitted.offsets_):
        expected = fitted.expected_accuracy(X_val, y_val, prior=KAGGLE_PRIOR, offsets=offsets)
        assert expected == pytest.approx(accuracy(X_val[idx] + offsets, y_val[idx]), abs=0.005)
    # with the validation split's own mix it is the plain accuracy
    own = np.bincount(y_val, minlength=K) / y_val.size
    assert weighted_accuracy(X_val, y_val, own) == pytest.approx(accuracy(X_val, y_val))
    # both given: no fit needed
    unfitted = PriorShiftCalibrator()
    assert unfitted.expected_accuracy(X_val, y_val, prior=own, offsets=np.zeros(K)) == pytest.approx(accuracy(X_val, y_val))


# ----------------------------------------------------------------------------- scikit-learn contract


@pytest.mark.filterwarnings("ignore:EM stopped")
def test_sklearn_contract(shifted):
    X_val, y_val, X_test, _ = shifted
    params = dict(
        train_prior=TRAIN_PRIOR, em_max_iter=50, em_tol=1e-6, tune_classes=("unknown",), offset_grid=(-1.0, 1.0),
        cv=3, random_state=7, tune=True, tie_se=0.0, calibration="temperature",
    )
    est = PriorShiftCalibrator(**params)
    got = est.get_params()
    for name, value in params.items():
        assert got[name] is value
    assert PriorShiftCalibrator().get_params()["offset_grid"] is None and len(DEFAULT_OFFSET_GRID) == 25
    copy = clone(est)
    assert copy is not est and copy.get_params()["cv"] == 3 and not hasattr(copy, "offsets_")
    with pytest.raises(NotFittedError):
        est.predict(X_test)
    with pytest.raises(NotFittedError):
        est.summary()
    with pytest.raises(NotFittedError):
        est.decision_function(X_test)
    assert est.fit(X_val, y_val, X_unlabeled=X_test) is est
    assert est.get_params()["train_prior"] is TRAIN_PRIOR  # fit leaves the params alone
    assert est.set_params(cv=2) is est and est.cv == 2


def test_predict_proba_is_a_distribution_with_the_same_argmax(shifted, fitted):
    _, _, X_test, _ = shifted
    proba = fitted.predict_proba(X_test[:100])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(proba.argmax(axis=1), fitted.predict(X_test[:100]))


def test_summary_is_json(fitted):
    summary = json.loads(json.dumps(fitted.summary()))
    assert summary["classes"] == list(CLASSES)
    assert summary["offsets"] == pytest.approx(list(fitted.offsets_))
    assert summary["offsets_by_class"]["unknown"] == pytest.approx(fitted.offsets_[UNKNOWN_INDEX])
    assert summary["test_prior"]["silence"] == pytest.approx(fitted.test_prior_[SILENCE_INDEX])
    assert set(summary["cv_scores"]) >= {"before", "after", "before_mean", "after_mean", "n_splits"}


# ----------------------------------------------------------------------------- persistence


def test_save_load_round_trip(tmp_path, shifted, fitted):
    _, _, X_test, _ = shifted
    path = fitted.save(tmp_path / "calibrator.joblib")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calibrator.joblib"]  # no temp file left behind
    loaded = PriorShiftCalibrator.load(path)
    np.testing.assert_array_equal(loaded.offsets_, fitted.offsets_)
    np.testing.assert_array_equal(loaded.predict(X_test), fitted.predict(X_test))
    assert loaded.get_params()["tune_classes"] == fitted.get_params()["tune_classes"]


def test_load_rejects_other_files(tmp_path):
    joblib.dump({"offsets": np.zeros(K)}, tmp_path / "other.joblib")
    with pytest.raises(DistillError, match=r"other\.joblib.*expected a PriorShiftCalibrator"):
        PriorShiftCalibrator.load(tmp_path / "other.joblib")
    (tmp_path / "junk.joblib").write_bytes(b"not a pickle")
    with pytest.raises(DistillError, match=r"junk\.joblib"):
        PriorShiftCalibrator.load(tmp_path / "junk.joblib")
    with pytest.raises(DistillError, match=r"missing\.joblib"):
        PriorShiftCalibrator.load(tmp_path / "missing.joblib")
    with pytest.raises(NotFittedError):
        PriorShiftCalibrator().save(tmp_path / "unfitted.joblib")


# ----------------------------------------------------------------------------- bad input


def _good(n: int = 120):
    rng = np.random.default_rng(8)
    y = np.arange(n) % K
    return rng.normal(size=(n, K)), y, rng.normal(size=(50, K))


@pytest.mark.parametrize(
    "change,match",
    [
        (lambda X, y, U: (X[:, :11], y, U), r"X must have shape \(n_samples, 12\)"),
        (lambda X, y, U: (X[:, 0], y, U), r"X must have shape \(n_samples, 12\)"),
        (lambda X, y, U: (X, y[:-1], U), r"y must have shape \(120,\)"),
        (lambda X, y, U: (X, y[:, None], U), r"y must have shape \(120,\)"),
        (lambda X, y, U: (X, y, np.hstack([U, U[:, :1]])), r"X_unlabeled must have shape \(n_samples, 12\)"),
        (lambda X, y, U: (X, np.where(y == 0, 12, y), U), r"class indices in 0\.\.11"),
        (lambda X, y, U: (X, y - 1, U), r"class indices in 0\.\.11"),
        (lambda X, y, U: (X, y + 0.5, U), "integer class indices"),
        (lambda X, y, U: (np.where(X > 2, np.nan, X), y, U), "NaN or infinite"),
    ],
)
def test_fit_rejects_bad_shapes_and_labels(change, match):
    X, y, U = change(*_good())
    with pytest.raises(ValueError, match=match):
        PriorShiftCalibrator().fit(X, y, X_unlabeled=U)


@pytest.mark.parametrize(
    "params,match",
    [
        (dict(train_prior=np.full(11, 1 / 11)), r"train_prior must have shape \(12,\)"),
        (dict(train_prior=np.r_[0.0, np.full(K - 1, 1 / (K - 1))]), r"train_prior is 0 for \['silence'\]"),
        (dict(tune_classes=("silence", "marvin")), "unknown class 'marvin'"),
        (dict(tune_classes=("silence", 0)), "lists a class twice"),
        (dict(offset_grid=()), "offset_grid must be a non-empty"),
        (dict(calibration="platt"), "calibration must be one of"),
    ],
)
def test_fit_rejects_bad_params(params, match):
    X, y, U = _good()
    with pytest.raises(ValueError, match=match):
        PriorShiftCalibrator(**params).fit(X, y, X_unlabeled=U)


def test_predict_rejects_bad_shapes(fitted):
    with pytest.raises(ValueError, match=r"shape \(n_samples, 12\)"):
        fitted.predict(np.zeros((3, 11)))
    with pytest.raises(ValueError, match=r"offsets must have shape \(12,\)"):
        fitted.expected_accuracy(np.zeros((3, K)), np.zeros(3, dtype=int), offsets=np.zeros(3))


def test_map_em_shrinks_a_small_folder_toward_the_training_prior():
    from distill.calibration.prior_shift import em_prior_shift

    rng = np.random.default_rng(7)
    train = np.full(12, 1 / 12)
    probs = rng.dirichlet(np.full(12, 0.2), size=24)  # 24 confident clips: plain EM zeroes whole classes
    plain, _, _ = em_prior_shift(probs, train)
    shrunk, _, _ = em_prior_shift(probs, train, prior_strength=500.0)
    assert plain.min() < 1e-3 and shrunk.min() > 0.05
    assert np.abs(shrunk - train).max() < np.abs(plain - train).max()
    # a fixed point of the MAP update: (sum of adjusted posteriors + strength * train) / (m + strength)
    ratio = shrunk / train
    adjusted = probs * ratio
    adjusted /= adjusted.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(shrunk, (adjusted.sum(0) + 500.0 * train) / (24 + 500.0), atol=1e-6)
    large = rng.dirichlet(np.full(12, 0.2), size=20000)
    np.testing.assert_allclose(em_prior_shift(large, train, prior_strength=500.0)[0], em_prior_shift(large, train)[0], atol=0.01)


def test_map_em_centred_on_a_known_mix_moves_a_small_folder_there():
    from distill.calibration.prior_shift import em_prior_shift

    rng = np.random.default_rng(8)
    train = np.full(12, 1 / 12)
    known = np.array([0.09, 0.53] + [0.038] * 10)
    known /= known.sum()
    probs = rng.dirichlet(np.full(12, 0.2), size=24)
    centred, _, _ = em_prior_shift(probs, train, prior_strength=500.0, prior_center=known)
    at_train, _, _ = em_prior_shift(probs, train, prior_strength=500.0)
    assert np.abs(centred - known).max() < 0.03 < np.abs(at_train - known).max()
    # the fixed point now pulls toward the centre, not the training prior
    adjusted = probs * (centred / train)
    adjusted /= adjusted.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(centred, (adjusted.sum(0) + 500.0 * known) / (24 + 500.0), atol=1e-6)
    # a folder the size of the real test set still speaks for itself
    large = rng.dirichlet(np.full(12, 0.2), size=158_538)
    np.testing.assert_allclose(em_prior_shift(large, train, prior_strength=500.0, prior_center=known)[0], em_prior_shift(large, train)[0], atol=0.01)
    with pytest.raises(ValueError, match="prior_center"):
        em_prior_shift(probs, train, prior_strength=500.0, prior_center=np.ones(11))


def test_calibrator_records_its_prior_center():
    rng = np.random.default_rng(9)
    y = np.repeat(np.arange(K), 20)
    X = np.eye(K)[y] * 4 + rng.normal(0, 1, (len(y), K))
    X_unl = rng.normal(0, 1, (24, K))
    known = np.array([0.09, 0.53] + [0.038] * 10)
    known /= known.sum()
    cal = PriorShiftCalibrator(prior_strength=500.0, prior_center=known, tune=False).fit(X, y, X_unlabeled=X_unl)
    assert cal.test_prior_[1] > 0.4 and cal.summary()["params"]["prior_center"] is not None
    plain = PriorShiftCalibrator(prior_strength=500.0, tune=False).fit(X, y, X_unlabeled=X_unl)
    assert plain.test_prior_[1] < 0.2


def test_expected_prior_fills_the_other_classes_in_training_proportion():
    from distill.calibration.student_calibration import expected_prior
    from distill.core.errors import DistillError

    train = np.array([0.1, 0.1] + [0.08] * 10)
    prior = expected_prior({"unknown": 0.53, "silence": 0.09}, train)
    assert prior[1] == pytest.approx(0.53) and prior[0] == pytest.approx(0.09)
    np.testing.assert_allclose(prior[2:], 0.038)
    with pytest.raises(DistillError, match="unknown class 'noise'"):
        expected_prior({"noise": 0.1}, train)
    with pytest.raises(DistillError, match="between 0 and 1"):
        expected_prior({"unknown": 1.2}, train)
    with pytest.raises(DistillError, match="sum to"):
        expected_prior({"unknown": 0.6, "silence": 0.5}, train)
