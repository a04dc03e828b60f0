"""The demo: data-only in seconds, and the whole pipeline at toy sizes."""

from __future__ import annotations

import json

from distill.core.tables import plain_text
from distill.pipeline.demo import DemoConfig, format_table, run_demo, stages_table


def test_demo_synthesizes_and_indexes(tmp_path):
    lines = []
    result = run_demo(out=tmp_path / "demo", config=DemoConfig(speakers=6, takes=1, test_clips=24, full=False), progress=False, log=lines.append)
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert [s["stage"] for s in summary["stages"]] == ["synth", "index"] == [line[3:] for line in lines]
    assert summary["stages"][1]["clips"] == 6 * 30 and summary["stages"][1]["bad_files"] == 0
    assert len(list((tmp_path / "demo" / "kaggle_test").glob("clip_*.wav"))) == 24
    assert "yes" in result.stats_table and result.stats_table == result.stats.to_table()


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


def test_tables_keep_every_number_as_formatted_before():
    rows = [{"model": "teacher resnet", "test": 0.86666, "params": 173852},
            {"model": "student tcresnet/8 (distilled)", "params": 65996, "test": 0.125, "bytes": 272165, "pi3_ms": 18.43, "submission": 0.125},
            {"model": "student, calibrated (the shipped graph)", "params": 65996, "test": None, "bytes": 272165, "pi3_ms": 18.43, "submission": 0.175}]
    assert format_table(rows).splitlines() == [
        "model                                     params   bytes  Pi3 ms    test  submission",
        "teacher resnet                           173,852                  86.67%           -",
        "student tcresnet/8 (distilled)            65,996  272165    18.4  12.50%      12.50%",
        "student, calibrated (the shipped graph)   65,996  272165    18.4       -      17.50%",
    ]
    assert plain_text(stages_table([{"stage": "synth", "seconds": 2.63, "status": "ok"}, {"stage": "teachers train", "seconds": 11.3, "status": "ok"}])) == (
        "stage           seconds  status\n"
        "synth               2.6  ok\n"
        "teachers train     11.3  ok\n")
