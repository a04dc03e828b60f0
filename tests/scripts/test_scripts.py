"""The drivers in scripts/ run against the library as it is (they hold no logic of their own)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.mark.slow  # several student fits in subprocesses: about 30 s each on 2 cores
def test_sweep_chooses_on_validation_and_resumes(tiny_tree, tiny_soft_labels, tmp_path):
    command = [sys.executable, str(SCRIPTS / "sweep_student.py"), "--data", str(tiny_tree), "--soft-labels", str(tiny_soft_labels),
               "--out", str(tmp_path / "sweep"), "--arch", "dscnn", "--size", "toy", "--epochs", "1", "--alpha", "0.3", "1.0",
               "--temperature", "4", "--twin", "--jobs", "2"]
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
    other_seed = subprocess.run(command + ["--seed", "1"], capture_output=True, text=True, timeout=600)
    assert other_seed.returncode != 0 and "seed: 0 there, 1 asked" in other_seed.stderr


@pytest.mark.slow  # several student fits in subprocesses: about 30 s each on 2 cores
def test_seed_replicates_pairs_each_variant_with_its_twin_and_resumes(tiny_tree, tiny_soft_labels, tmp_path):
    out = tmp_path / "seeds"
    command = [sys.executable, str(SCRIPTS / "seed_replicates.py"), "--data", str(tiny_tree), "--out", str(out),
               "--variant", f"views={tiny_soft_labels}", "--seeds", "0", "1", "--jobs", "2", "--arch", "dscnn", "--size", "toy",
               "--epochs", "1", "--weight-bits", "32"]
    first = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    lines = [json.loads(line) for line in first.stdout.splitlines() if line.startswith("{")]
    rows, summary = lines[:-1], lines[-1]
    assert sorted(r["run"] for r in rows) == ["twin_s0", "twin_s1", "views_s0", "views_s1"]
    by_run = {r["run"]: r for r in rows}
    margins = [by_run[f"views_s{s}"]["test"] - by_run[f"twin_s{s}"]["test"] for s in (0, 1)]
    assert summary["views"]["test_margin_over_twin"]["mean"] == pytest.approx(sum(margins) / 2)
    assert summary["views"]["test_margin_over_twin"]["n"] == 2 and summary["chosen_on_validation"] == "views"
    assert json.loads((out / "summary-views-last.json").read_text()) == summary
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and json.loads(again.stdout.splitlines()[-1]) == summary  # read back, not refitted
    assert {r["checkpoint"] for r in rows} == {"last"}
    # runs that keep "last", asked for "best": re-scored from the stored best checkpoint, not refitted
    # (one epoch, so both checkpoints hold the same weights and the scores must agree)
    best = subprocess.run([*command, "--keep", "best"], capture_output=True, text=True, timeout=600)
    assert best.returncode == 0, best.stderr[-2000:]
    rescored = {r["run"]: r for r in map(json.loads, best.stdout.splitlines()[:-1])}
    assert all(rescored[name]["checkpoint"] == "best" and rescored[name]["test"] == pytest.approx(by_run[name]["test"]) for name in by_run)
    assert json.loads((out / "summary-views-last.json").read_text()) == summary  # the best-checkpoint call wrote its own file
    assert (out / "summary-views-best.json").exists()
    mixed_up = [*command[:command.index("--seeds")], "--seeds", "0", "1", "--jobs", "1", "--arch", "dscnn", "--size", "toy", "--epochs", "2",
                "--weight-bits", "32"]
    refused = subprocess.run(mixed_up, capture_output=True, text=True, timeout=600)
    assert refused.returncode != 0 and "epochs: 1 there, 2 asked" in refused.stderr


@pytest.mark.slow  # 6 s: a subprocess that imports TensorFlow and scores two checkpoints
def test_best_vs_last_agree_on_a_one_epoch_run(teacher_runs):
    # after one epoch the best checkpoint is the last one, so both rows must match
    result = subprocess.run([sys.executable, str(SCRIPTS / "best_vs_last.py"), *map(str, teacher_runs)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [Path(r["run"]).name for r in rows] == ["resnet", "wavecnn"]
    for row in rows:
        assert row["best_epoch"] == 1
        assert (row["last_validation"], row["last_test"]) == (row["best_validation"], row["best_test"])


