"""The drivers in scripts/ run against the library as it is (they hold no logic of their own)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


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


def _bench_real():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_real", SCRIPTS / "bench_real.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def test_bench_refuses_a_finished_student_of_another_preset(tmp_path):
    from distill.core.config import save_config
    from distill.core.errors import DistillError
    from distill.training.fit import DistillConfig, RunConfig, ScheduleConfig

    bench = _bench_real()
    run = tmp_path / "student_distilled"
    run.mkdir()
    save_config(RunConfig(family="student", arch="tcresnet", data="/x/data", size="14-w1.5", schedule=ScheduleConfig(epochs=80),
                          distill=DistillConfig(soft_labels="/x/soft_labels")), run / "config.json")
    bench.check_reusable(run, arch="tcresnet", size="14-w1.5", epochs=80, feature_masks=False, soft_labels=Path("/x/soft_labels"))
    with pytest.raises(DistillError, match=r"size: 14-w1.5 there, 14-w2 asked.*epochs: 80 there, 160 asked.*feature_masks: False there, True asked"):
        bench.check_reusable(run, arch="tcresnet", size="14-w2", epochs=160, feature_masks=True, soft_labels=Path("/x/soft_labels"))
    with pytest.raises(DistillError, match="teachers: True there, False asked"):
        bench.check_reusable(run, arch="tcresnet", size="14-w1.5", epochs=80, feature_masks=False, soft_labels=None)
    with pytest.raises(DistillError, match="keep: best there, last asked"):
        bench.check_reusable(run, arch="tcresnet", size="14-w1.5", epochs=80, feature_masks=False, soft_labels=Path("/x/soft_labels"), keep="last")
    with pytest.raises(DistillError, match="view_masks: False there, True asked"):
        bench.check_reusable(run, arch="tcresnet", size="14-w1.5", epochs=80, feature_masks=False, soft_labels=Path("/x/soft_labels"), view_masks=True)
    (run / "config.json").write_text(json.dumps({"kind": "ExportConfig", "config": {}}))
    with pytest.raises(DistillError, match="holds a ExportConfig config, expected RunConfig"):
        bench.check_reusable(run, arch="tcresnet", size="14-w1.5", epochs=80, feature_masks=False, soft_labels=Path("/x/soft_labels"))


def test_bench_plans_the_flipped_mask_pair_only_for_feature_mask_presets(tmp_path):
    bench = _bench_real()
    soft, pseudo = tmp_path / "soft_labels", tmp_path / "pseudo.csv"
    feature = bench.student_plan(bench.PRESETS["cpu-hybrid"], soft=soft, pseudo=pseudo)
    assert list(feature) == ["student_distilled", "student_no_teachers", "student_clean_views", "student_pseudo",
                             "student_unmasked", "student_no_teachers_unmasked"]
    assert feature["student_unmasked"] == dict(soft_labels=soft, feature_masks=False)
    # view-mask presets: the views were labelled masked, so no unmasked pair, and no feature masks on top
    view = bench.student_plan(bench.PRESETS["cpu-hybrid-vm"], soft=soft, pseudo=None)
    assert list(view) == ["student_distilled", "student_no_teachers", "student_clean_views"]
    assert not any(spec["feature_masks"] for spec in view.values())


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


def test_best_vs_last_agree_on_a_one_epoch_run(teacher_runs):
    # after one epoch the best checkpoint is the last one, so both rows must match
    result = subprocess.run([sys.executable, str(SCRIPTS / "best_vs_last.py"), *map(str, teacher_runs)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [Path(r["run"]).name for r in rows] == ["resnet", "wavecnn"]
    for row in rows:
        assert row["best_epoch"] == 1
        assert (row["last_validation"], row["last_test"]) == (row["best_validation"], row["best_test"])


def test_bench_counts_a_fold_group_done_only_when_every_fold_is(tmp_path):
    bench = _bench_real()
    group = tmp_path / "resnet-cf"
    for k in (0, 1):
        (group / f"fold{k}").mkdir(parents=True)
    (group / "fold0" / "metrics.json").write_text("{}")
    assert not bench.done(group)
    (group / "fold1" / "metrics.json").write_text("{}")
    assert bench.done(group)
    assert not bench.done(tmp_path / "resnet")  # not trained at all


def test_bench_report_gives_every_teacher_row_its_footprint(tmp_path):
    import argparse

    from distill.compliance.footprint import run_footprint
    from distill.core.config import save_config
    from distill.training.fit import RunConfig

    bench = _bench_real()
    out = tmp_path / "bench"
    scores = {"validation": {"accuracy": 0.9}, "test": {"accuracy": 0.8}}
    # a recurrent teacher (whose loop once kept the row blank) and a fold group, whose folds share one footprint
    teachers = {out / "teachers" / "crnn": [out / "teachers" / "crnn"],
                out / "teachers" / "resnet-cf": [out / "teachers" / "resnet-cf" / f"fold{k}" for k in (0, 1)]}
    for group, runs in teachers.items():
        for run in runs:
            run.mkdir(parents=True)
            save_config(RunConfig(family="teacher", arch=group.name.removesuffix("-cf"), data="/x", size="toy"), run / "config.json")
            (run / "metrics.json").write_text(json.dumps({"size": "toy", "params": 10, **scores}))
    (out / "teacher_report").mkdir()
    (out / "teacher_report" / "report.json").write_text(json.dumps(
        {"rows": [{"model": "ensemble", "split": "validation", "accuracy": 0.95}, {"model": "ensemble", "split": "testing", "accuracy": 0.85}],
         "agreement": {}}))
    args = argparse.Namespace(data=tmp_path / "data", preset="smoke", kaggle_labels=None)
    bench.write_report(out, bench.PRESETS["smoke"], list(teachers), {}, {}, args)

    rows = json.loads((out / "report.json").read_text())["rows"]
    crnn, resnet = run_footprint(out / "teachers" / "crnn"), run_footprint(out / "teachers" / "resnet-cf")
    assert [r["macs"] for r in rows[:3]] == [crnn.macs, resnet.macs, resnet.macs]
    assert all(r["pi3_ms"] > 0 and r["float32_bytes"] > 0 for r in rows[:3])
    ensemble = rows[3]
    assert ensemble["model"] == "teacher ensemble" and ensemble["macs"] == crnn.macs + 2 * resnet.macs and ensemble.get("pi3_ms") is None
    assert f"{crnn.float32_bytes:,} (float32)" in (out / "report.md").read_text()
