"""scripts/bench_side_by_side.py fits a recipe's student alone and several at once and prints one JSON object."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_side_by_side.py"


@pytest.mark.slow  # about 40 s: three toy fits, two of them in worker processes
def test_bench_times_one_fit_alone_and_two_at_once(tiny_tree, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--data", str(tiny_tree), "--recipe", "smoke", "--student", "0", "--epochs", "1", "--jobs", "2",
                                      "--rounds", "1", "--work", str(tmp_path / "work"), "students.0.batch_size=8"])
    runpy.run_path(str(SCRIPT), run_name="__main__")
    report = json.loads(capsys.readouterr().out)
    assert (report["recipe"], report["jobs"], report["rounds"]) == ("smoke", 2, 1)
    [row] = report["results"]
    assert row["student"] == "tcresnet-toy" and row["teachers"] is False and row["epochs"] == 1
    assert row["speedup"] == pytest.approx(2 * row["alone_s"][0] / row["side_by_side_s"][0], rel=0.01)
    for name in ("tcresnet-toy-alone0", "tcresnet-toy-side0", "tcresnet-toy-side1"):
        assert (tmp_path / "work" / name / "metrics.json").is_file(), name


def test_bench_refuses_a_student_the_recipe_does_not_have(tiny_tree, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--data", str(tiny_tree), "--recipe", "smoke", "--student", "3"])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    assert done.value.code == 2 and "students.3: no such entry" in capsys.readouterr().err
