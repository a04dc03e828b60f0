"""distill calibrate on a run: offsets saved in class order, usable by export, and the accuracies it
reports are the ones its saved offsets and prior give on the run's validation clips."""

from __future__ import annotations

import json

import numpy as np
import pytest

from distill.calibration.prior_shift import PriorShiftCalibrator, weighted_accuracy
from distill.calibration.student_calibration import calibrate_student
from distill.core.labels import CLASSES
from distill.export.student_export import load_offsets


def _validation_logits(run):
    """The run's validation logits and labels, computed here from its saved checkpoint."""
    from distill.data.examples import materialize
    from distill.training.fit import evaluation_examples, load_run, make_predictor, open_run_dataset

    config, model = load_run(run)
    dataset = open_run_dataset(config, progress=False)
    examples = evaluation_examples(dataset, config, "validation")
    return make_predictor(model)(materialize(dataset, examples)), examples.labels


def test_calibrate_student_writes_offsets(toy_student_run, tiny_unlabeled, tmp_path):
    result = calibrate_student(run=toy_student_run, unlabeled=tiny_unlabeled, out=tmp_path / "cal", cv=2, progress=False)
    summary = json.loads((tmp_path / "cal" / "calibration.json").read_text())
    assert summary["classes"] == list(CLASSES) and len(summary["offsets"]) == 12
    np.testing.assert_allclose(load_offsets(tmp_path / "cal"), summary["offsets"], rtol=1e-6)
    restored = PriorShiftCalibrator.load(tmp_path / "cal" / "calibrator.joblib")
    np.testing.assert_allclose(restored.offsets_, summary["offsets"])
    assert abs(sum(summary["test_prior"].values()) - 1) < 1e-6

    # "before" is the accuracy the training run recorded for the same checkpoint on the same clips ...
    trained = json.loads((toy_student_run / "metrics.json").read_text())
    assert result.validation_accuracy_before == pytest.approx(trained["validation"]["accuracy"], abs=1e-12)
    # ... and both reported accuracies follow from logits recomputed here and the saved offsets and test prior
    logits, labels = _validation_logits(toy_student_run)
    assert len(labels) == trained["validation"]["count"]
    assert result.validation_accuracy_before == pytest.approx(float(np.mean(logits.argmax(1) == labels)), abs=1e-12)
    test_prior = np.array([summary["test_prior"][name] for name in CLASSES])
    expected = weighted_accuracy(logits + np.array(summary["offsets"]), labels, test_prior)
    assert result.validation_accuracy_after_expected == pytest.approx(expected, abs=1e-12)
    np.testing.assert_array_equal(restored.predict(logits), (logits + np.array(summary["offsets"])).argmax(1))
