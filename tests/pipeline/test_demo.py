"""The demo: data-only in seconds, and the whole pipeline at toy sizes."""

from __future__ import annotations

import json

from distill.pipeline.demo import DemoConfig, format_table, run_demo


def test_demo_synthesizes_and_indexes(tmp_path):
    lines = []
    result = run_demo(out=tmp_path / "demo", config=DemoConfig(speakers=6, takes=1, test_clips=24, full=False), progress=False, log=lines.append)
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert [s["stage"] for s in summary["stages"]] == ["synth", "index"] == [line[3:] for line in lines]
    assert summary["stages"][1]["clips"] == 6 * 30 and summary["stages"][1]["bad_files"] == 0
    assert len(list((tmp_path / "demo" / "kaggle_test").glob("clip_*.wav"))) == 24
    assert "yes" in result.stats_table


def test_whole_pipeline_at_toy_sizes(tmp_path):
    config = DemoConfig(speakers=6, takes=1, test_clips=30, teachers=("resnet", "wavecnn"), teacher_size="toy", teacher_epochs=1,
                        student="dscnn", student_size="toy", student_epochs=1, views=2, batch_size=16)
    result = run_demo(out=tmp_path / "demo", config=config, progress=False, log=lambda _: None)
    stages = [s["stage"] for s in result.stages]
    assert stages[:9] == ["synth", "index", "teachers train", "teachers predict", "pseudo select", "student fit", "student fit --no-teachers", "calibrate", "export --check-pi"]
    assert all(s["status"] == "ok" for s in result.stages)
    assert result.stages[8]["checks_passed"] is True
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert set(summary["scores"]) == {"student, calibrated", "student, uncalibrated", "student without teachers"}
    assert (tmp_path / "demo" / "summary.html").exists() and (tmp_path / "demo" / "submission_confusion.png").exists()
    assert "calibrated" in format_table(result.table)
