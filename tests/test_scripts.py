"""The drivers in scripts/ run against the library as it is (they hold no logic of their own)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def test_sweep_chooses_on_validation_and_resumes(tiny_tree, tiny_soft_labels, tmp_path):
    command = [sys.executable, str(SCRIPTS / "sweep_student.py"), "--data", str(tiny_tree), "--soft-labels", str(tiny_soft_labels),
               "--out", str(tmp_path / "sweep"), "--arch", "dscnn", "--size", "toy", "--epochs", "1", "--alpha", "0.3", "1.0",
               "--temperature", "4", "--twin"]
    first = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    rows = [json.loads(line) for line in first.stdout.splitlines() if line.startswith("{")]
    runs, summary = rows[:-1], rows[-1]
    assert [r["run"] for r in runs] == ["a0.3_t4", "a1_t4", "twin"]
    best = max((r for r in runs if r["teachers"]), key=lambda r: r["validation"])
    assert summary["chosen_on_validation"] == best["run"] and summary["test"] == best["test"]
    assert summary["test_gain_over_twin"] == best["test"] - runs[-1]["test"]
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert [json.loads(line)["test"] for line in again.stdout.splitlines() if line.startswith('{"run"')] == [r["test"] for r in runs]
