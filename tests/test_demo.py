"""The demo runs end to end on a tiny synthesized tree and writes its summary."""

from __future__ import annotations

import json

from distill.demo import DemoConfig, run_demo


def test_demo_synthesizes_and_indexes(tmp_path):
    lines = []
    result = run_demo(out=tmp_path / "demo", config=DemoConfig(speakers=6, test_clips=24, jobs=2), progress=False, log=lines.append)
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert [s["stage"] for s in summary["stages"]] == ["synth", "index"] == [line[3:] for line in lines]
    assert summary["stages"][1]["clips"] == 6 * 30 and summary["stages"][1]["bad_files"] == 0
    assert len(list((tmp_path / "demo" / "kaggle_test").glob("clip_*.wav"))) == 24
    assert "yes" in result.stats_table
