"""scripts/bench_submit.py times the old and the new submission stream side by side and prints one JSON object."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_submit.py"


def test_bench_compares_old_and_new_in_alternating_rounds(monkeypatch, capsys):
    pytest.importorskip("tensorflow")
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--clips", "10", "--arch", "dscnn", "--size", "toy", "--batch-size", "4",
                                      "--chunk", "2", "--rounds", "2", "--methods", "vectorized", "--repeat", "1"])
    runpy.run_path(str(SCRIPT), run_name="__main__")
    report = json.loads(capsys.readouterr().out)
    side = report["side_by_side"]
    assert side["identical_csv"] is True and side["rounds"] == 2 and len(side["round_ratios_clips_per_s"]) == 2
    for which in ("old", "new"):
        assert side[which]["clips_per_s_median"] > 0 and side[which]["clips_per_cpu_s_median"] > 0
    assert side["new_over_old_clips_per_s"] > 0 and side["new_over_old_clips_per_cpu_s"] > 0
    assert all(side["outside_graph"][w]["cpu_us_per_clip"] > 0 for w in ("old", "new"))
    assert report["predict_only"]["vectorized"]["max_abs_diff_vs_single_clip"] <= 1e-5
    assert report["write_submission"]["clips_per_s_streaming_best"] > 0 and report["clips"] == 10


def test_bench_refuses_an_unknown_architecture(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--arch", "nope"])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    assert done.value.code == 2 and "unknown --arch nope" in capsys.readouterr().err


def test_bench_streams_the_litert_float_and_int8_models_beside_the_graph(monkeypatch, capsys):
    pytest.importorskip("tensorflow")
    pytest.importorskip("ai_edge_litert")
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--clips", "10", "--arch", "dscnn", "--size", "toy", "--batch-size", "4",
                                      "--rounds", "2", "--methods", "", "--repeat", "1", "--litert", "--representative", "6"])
    runpy.run_path(str(SCRIPT), run_name="__main__")
    litert = json.loads(capsys.readouterr().out)["litert"]
    formats = litert["formats"]
    assert set(formats) == {"pb", "float", "int8"} and litert["representative"] == 6
    assert formats["pb"]["labels_equal_to_pb"] == 1.0 and formats["pb"]["over_pb_clips_per_s"] == 1.0
    assert formats["float"]["labels_equal_to_pb"] >= 0.9  # the same network in float32: at most a near-tie may flip
    assert 0.0 <= formats["int8"]["labels_equal_to_pb"] <= 1.0 and formats["int8"]["bytes"] > 0  # a toy's int8 file is not smaller: quantization parameters
    assert all(f["clips_per_s_median"] > 0 and f["clips_per_cpu_s_median"] > 0 for f in formats.values())
