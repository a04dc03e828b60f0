"""scripts/bench_teachers.py times float32 and mixed precision side by side and prints one JSON object."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_teachers.py"


@pytest.mark.slow  # 4 s: every architecture built twice and timed
def test_bench_times_both_precisions_in_alternating_rounds(monkeypatch, capsys):
    import keras

    # in this process (TensorFlow is already imported): one teacher and one student at toy size
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--arch", "wavecnn", "--arch", "dscnn", "--size", "toy", "--batch-size", "4", "--steps", "1",
                                      "--rounds", "2", "--predict-clips", "4"])
    runpy.run_path(str(SCRIPT), run_name="__main__")
    report = json.loads(capsys.readouterr().out)
    assert report["mixed_policy"] == "mixed_bfloat16" and (report["rounds"], report["steps"]) == (2, 1)
    assert {arch: row["family"] for arch, row in report["results"].items()} == {"wavecnn": "teacher", "dscnn": "student"}
    for row in report["results"].values():
        assert row["float32_examples_per_s"] > 0 and row["mixed_examples_per_s"] > 0 and len(row["round_ratios"]) == 2
        assert row["mixed_over_float32"] == pytest.approx(row["mixed_examples_per_s"] / row["float32_examples_per_s"], rel=0.01)
        assert row["params"] > 0 and row["predict_clips_per_s"] > 0
    assert keras.config.dtype_policy().name == "float32"  # the mixed builds left the policy as they found it


def test_bench_refuses_an_unknown_architecture(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--arch", "nope", "--size", "toy"])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    assert done.value.code == 2 and "unknown --arch nope" in capsys.readouterr().err
