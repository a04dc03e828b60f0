"""distill calibrate on a run: offsets saved in class order, usable by export."""

from __future__ import annotations

import json

import numpy as np

from distill.calibration.prior_shift import PriorShiftCalibrator
from distill.calibration.student_calibration import calibrate_student
from distill.export.student_export import load_offsets


def test_calibrate_student_writes_offsets(toy_student_run, tiny_unlabeled, tmp_path):
    result = calibrate_student(run=toy_student_run, unlabeled=tiny_unlabeled, out=tmp_path / "cal", cv=2, progress=False)
    summary = json.loads((tmp_path / "cal" / "calibration.json").read_text())
    assert summary["classes"][0] == "silence" and len(summary["offsets"]) == 12
    np.testing.assert_allclose(load_offsets(tmp_path / "cal"), summary["offsets"], rtol=1e-6)
    restored = PriorShiftCalibrator.load(tmp_path / "cal" / "calibrator.joblib")
    np.testing.assert_allclose(restored.offsets_, summary["offsets"])
    assert abs(sum(summary["test_prior"].values()) - 1) < 1e-6
    assert 0 <= result.validation_accuracy_before <= 1
