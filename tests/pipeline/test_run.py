"""``distill run``: every stage of the smoke recipe, skipped when complete, refused on another recipe, exact after a kill,
and a smoke-sized ladder that reuses the smoke run's teachers and soft labels."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from distill.core.errors import DistillError
from distill.pipeline.recipe import load_recipe
from distill.pipeline.run import _done, plan_students, run_recipe

# toy batches for the tiny tree; six student epochs leave a window to kill the student stage in
OVERRIDES = ["teachers.batch_size=8", "students.0.batch_size=8", "students.0.epochs=6"]


def _comparable(report: dict) -> dict:
    return {k: v for k, v in report.items() if k != "timings_s"}


@pytest.fixture(scope="module")
def smoke_run(tiny_tree, tiny_unlabeled, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "smoke"
    # the clips' words, as tests/conftest.py copies them: bed and cat are unknown words, the last three are yes
    names = sorted(p.name for p in tiny_unlabeled.glob("clip_*.wav"))
    labels = out.parent / "labels.csv"
    labels.write_text("fname,label\n" + "".join(f"{n},{'yes' if i >= len(names) - 3 else 'unknown'}\n" for i, n in enumerate(names)))
    start = time.perf_counter()
    result = run_recipe(recipe=load_recipe("smoke", OVERRIDES), data=tiny_tree, out=out, kaggle_test=tiny_unlabeled, kaggle_labels=labels,
                        progress=False, log=lambda m: None)
    return result, time.perf_counter() - start


def test_report_has_every_teacher_the_ensemble_the_students_and_the_export(smoke_run):
    result, _ = smoke_run
    rows = result.report["rows"]
    models = [r["model"] for r in rows]
    for teacher in ("resnet/toy", "wavecnn/toy", "resnet-cf fold0/toy", "resnet-cf fold1/toy", "wavecnn-cf fold0/toy", "wavecnn-cf fold1/toy"):
        assert f"teacher {teacher}" in models
    assert "teacher ensemble" in models
    assert {"student tcresnet-toy/distilled", "student tcresnet-toy/twin", "student tcresnet-toy/clean_views"} <= set(models)
    shipped = next(r for r in rows if r["model"] == "exported graph, shipped (TF 1.4)")
    assert shipped["checks_passed"] is True and shipped["graph_bytes"] > 0
    margin = result.report["distilled_minus_twin"]["tcresnet-toy"]
    by_model = {r["model"]: r for r in rows}
    assert margin["test"] == pytest.approx(by_model["student tcresnet-toy/distilled"]["test"] - by_model["student tcresnet-toy/twin"]["test"])
    for name in ("recipe.toml", "report.md", "report.json", "confusion.png", "recall.png", "timings.json", "submission.csv", "export/model.pb"):
        assert (result.out / name).is_file(), name
    assert load_recipe(result.out / "recipe.toml") == load_recipe("smoke", OVERRIDES)
    agreement = result.report["submission_agreement_with_labels"]
    rows = (result.out / "submission.csv").read_text().splitlines()[1:]
    expected = dict(line.split(",") for line in (result.out.parent / "labels.csv").read_text().splitlines()[1:])
    assert agreement["count"] == len(rows) and agreement["accuracy"] == sum(expected[f] == label for f, label in (r.split(",") for r in rows)) / len(rows)
    assert f"Submission agreement with the given labels: {100 * agreement['accuracy']:.2f}% of {len(rows)} clips." in (result.out / "report.md").read_text()
    config = json.loads((result.out / "students" / "tcresnet-toy" / "distilled" / "config.json").read_text())["config"]
    assert config["recipe"] == {"name": "smoke", "overrides": OVERRIDES}


def test_rerun_trains_nothing_and_takes_a_tenth_of_the_time(smoke_run, tiny_tree, tiny_unlabeled):
    first, first_seconds = smoke_run
    lines: list[str] = []
    start = time.perf_counter()
    again = run_recipe(recipe=load_recipe("smoke", OVERRIDES), data=tiny_tree, out=first.out, kaggle_test=tiny_unlabeled,
                       kaggle_labels=first.out.parent / "labels.csv", progress=False, log=lines.append)
    seconds = time.perf_counter() - start
    stages = [line for line in lines if not line.startswith("report:")]
    assert stages and all(line.endswith("complete, skipped") for line in stages), stages
    assert seconds < first_seconds / 10, (seconds, first_seconds)
    assert _comparable(again.report) == _comparable(first.report)


def test_a_student_run_replaced_by_another_is_exported_and_scored_in_tf14_again(smoke_run, tiny_tree, tiny_unlabeled, tmp_path):
    first, _ = smoke_run
    out = tmp_path / "replaced"
    shutil.copytree(first.out, out)
    # as if the student had been refit at another seed into the same folder: its export and TF 1.4 scores are of the old run
    config_path = out / "students" / "tcresnet-toy" / "distilled" / "config.json"
    saved = json.loads(config_path.read_text())
    saved["config"]["seed"] += 1
    config_path.write_text(json.dumps(saved))
    lines: list[str] = []
    run_recipe(recipe=load_recipe("smoke", OVERRIDES), data=tiny_tree, out=out, kaggle_test=tiny_unlabeled,
               kaggle_labels=first.out.parent / "labels.csv", progress=False, log=lines.append)
    assert "student tcresnet-toy/distilled: complete, skipped" in lines and "export export: running" in lines, lines
    assert "tf14 evaluation: running" in lines, lines
    assert json.loads((out / "export" / "manifest.json").read_text())["run_config"] == saved["config"]
    graph = hashlib.sha256((out / "export" / "model.pb").read_bytes()).hexdigest()
    assert json.loads((out / "tf14_eval.json").read_text())["export/testing"]["graph_sha256"] == graph


def test_another_recipe_in_the_same_folder_is_refused_by_key(smoke_run, tiny_tree):
    first, _ = smoke_run
    with pytest.raises(DistillError, match=r"another recipe \(teachers\.epochs: 1 there, 2 asked; predict\.views: 2 there, 3 asked\)"):
        run_recipe(recipe=load_recipe("smoke", OVERRIDES + ["teachers.epochs=2", "predict.views=3"]), data=tiny_tree, out=first.out, progress=False)


def test_bad_recipe_or_override_exits_2_naming_the_key(tiny_tree, tmp_path, monkeypatch, capsys):
    from distill.cli import main

    for args, key in ((["smoke", "teachers.epochs=-1"], "teachers.epochs: must be >= 1"), (["smoke", "students.0.arch=nope"], "students.0.arch: unknown student"),
                      (["smoke", "teachers.epoch=1"], "teachers.epoch: unknown key"), (["smoke", "predict.views=many"], "predict.views: expected an integer"),
                      ([str(tmp_path / "missing.toml")], "missing.toml: no such recipe file")):
        monkeypatch.setattr(sys, "argv", ["distill", "run", *args, "--data", str(tiny_tree), "--out", str(tmp_path / "out")])
        with pytest.raises(SystemExit) as exit_:
            main()
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and key in err and len(err.strip().splitlines()) == 1, err
        assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_a_run_killed_in_the_student_stage_resumes_to_the_same_numbers(smoke_run, tiny_tree, tiny_unlabeled, tmp_path):
    first, _ = smoke_run
    out = tmp_path / "killed"
    # the teachers' stages as the first run left them (the rerun test shows they are skipped); everything from the students on is redone
    shutil.copytree(first.out, out, ignore=shutil.ignore_patterns("students", "calibration", "export", "tf14_eval.json", "submission.csv*", "report.*", "*.png"))
    # without the --check-pi lines (the smoke run checks its export) and the ablation: neither changes a number compared here
    fast = ["export.check_pi=false", "ablations.clean_views=false"]
    cmd = [sys.executable, "-m", "distill", "run", "smoke", *OVERRIDES, *fast, "--data", str(tiny_tree), "--out", str(out), "--kaggle-test", str(tiny_unlabeled), "--quiet"]
    student = out / "students" / "tcresnet-toy" / "distilled"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.time() + 240
        while not (student / "checkpoints" / "last.npz").exists():  # the first epoch's checkpoint: mid-fit
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "the student stage never started"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert not (student / "metrics.json").exists(), "the kill came after the student finished"
    resumed = subprocess.run(cmd, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    main_rows = [(r["model"], r["validation"], r["test"]) for r in first.report["rows"] if "clean_views" not in r["model"]]
    assert [(r["model"], r["validation"], r["test"]) for r in report["rows"]] == main_rows
    assert (out / "submission.csv").read_bytes() == (first.out / "submission.csv").read_bytes()
    assert (student / "checkpoints" / "last.npz").read_bytes() == (first.out / "students" / "tcresnet-toy" / "distilled" / "checkpoints" / "last.npz").read_bytes()


def test_plan_pairs_every_student_with_its_twin_then_the_first_students_ablations():
    assert [p.name for p in plan_students(load_recipe("default"), with_pseudo=True)] == ["tcresnet-14-w2/distilled", "tcresnet-14-w2/twin"]
    recipe = load_recipe("default", ["students.0.size=14", "ablations.clean_views=true", "ablations.pseudo=true", "ablations.flipped_masks=true"])
    names = [p.name for p in plan_students(recipe, with_pseudo=True)]
    assert names == ["tcresnet-14/distilled", "tcresnet-14/twin", "tcresnet-14/clean_views", "tcresnet-14/pseudo", "tcresnet-14/unmasked",
                     "tcresnet-14/twin_unmasked"]
    assert "tcresnet-14/pseudo" not in [p.name for p in plan_students(recipe, with_pseudo=False)]
    # views labelled masked cannot teach an unmasked pair without predictions of their own
    masked_views = load_recipe("default", ["predict.view_masks=true", "students.0.feature_masks=false", "ablations.flipped_masks=true"])
    assert not [p for p in plan_students(masked_views, with_pseudo=False) if "masked" in p.name]
    no_twin = load_recipe("default", ["students.0.twin=false"])
    assert [p.name for p in plan_students(no_twin, with_pseudo=False)] == ["tcresnet-14-w2/distilled"]


def test_a_fold_group_is_done_only_when_every_fold_is(tmp_path):
    group = tmp_path / "resnet-cf"
    for k in range(2):
        (group / f"fold{k}").mkdir(parents=True)
    (group / "fold0" / "metrics.json").write_text("{}")
    assert not _done(group)
    (group / "fold1" / "metrics.json").write_text("{}")
    assert _done(group)


def test_teacher_rows_carry_their_footprints(smoke_run):
    result, _ = smoke_run
    for row in result.report["rows"]:
        if row["kind"] in ("teacher", "ensemble"):
            assert row["float32_bytes"] > 0 and row["macs"] > 0, row
        if row["kind"] == "teacher":
            assert row["pi3_ms"] > 0, row


def test_a_ladder_reuses_the_teachers_and_soft_labels_and_writes_its_table_and_plot(smoke_run, tiny_tree, tiny_unlabeled, tmp_path):
    import dataclasses
    import math

    first, _ = smoke_run
    out = tmp_path / "ladder"
    shutil.copytree(first.out, out)  # a copy, so the other tests keep the smoke OUT as the smoke recipe left it
    smoke = load_recipe("smoke", OVERRIDES)
    shipped = smoke.students[0]  # the smoke student: its runs and export are reused, one seed (a rung of one run has no sd)
    rung = dataclasses.replace(shipped, arch="dscnn", size="toy", epochs=1, seeds=2)
    # the new rung's export without its --check-pi lines: the footprint the ladder reads is in every manifest
    ladder = dataclasses.replace(smoke, students=(shipped, rung), export=dataclasses.replace(smoke.export, check_pi=False), name="smoke ladder").check()
    soft = sorted((out / "soft_labels").rglob("*.npy"))
    stamps = [p.stat().st_mtime_ns for p in soft]
    lines: list[str] = []
    # --student-jobs 2: the rung's four fits go two at a time in worker processes
    result = run_recipe(recipe=ladder, data=tiny_tree, out=out, kaggle_test=tiny_unlabeled, student_jobs=2, progress=False, log=lines.append)
    for stage in ("teachers", "teachers --folds 2", "teachers predict", "pseudo select", "student tcresnet-toy/distilled", "student tcresnet-toy/twin",
                  "calibrate", "export export", "export students/tcresnet-toy/export", "submit"):
        assert f"{stage}: complete, skipped" in lines, (stage, lines)
    assert "students, 2 at a time: running" in lines and "export students/dscnn-toy/export: running" in lines, lines
    fitted = [line.split(":")[0] for line in lines if line.startswith("student dscnn-toy/") and ": done in " in line]
    assert sorted(fitted) == [f"student dscnn-toy/{name}" for name in ("distilled", "distilled-s1", "twin", "twin-s1")], lines
    assert json.loads((out / "timings.json").read_text())["students, 2 at a time"] > 0
    assert [p.stat().st_mtime_ns for p in soft] == stamps
    seed = json.loads((out / "students" / "dscnn-toy" / "distilled-s1" / "config.json").read_text())["config"]["seed"]
    assert seed == smoke.data.seed + 1

    rows = json.loads((out / "ladder.json").read_text())["rows"]
    assert sorted(r["label"] for r in rows) == ["dscnn-toy", "tcresnet-toy"]
    assert [r["pi3_ms"] for r in rows] == sorted(r["pi3_ms"] for r in rows)
    for row in rows:
        assert row["graph_bytes"] > 0 and row["params"] > 0 and (out / row["export"] / "model.pb").is_file(), row
        runs = 2 if row["label"] == "dscnn-toy" else 1
        for kind in ("distilled", "twin", "distilled_minus_twin"):
            for split in ("validation", "test"):
                spread = row[kind][split]
                assert len(spread["runs"]) == runs and math.isfinite(spread["mean"]), (kind, split, spread)
                assert math.isfinite(spread["sd"]) if runs == 2 else spread["sd"] is None, (kind, split, spread)
        assert row["distilled_minus_twin"]["test"]["mean"] == pytest.approx(row["distilled"]["test"]["mean"] - row["twin"]["test"]["mean"])
        assert all(isinstance(row["pareto"][k], bool) for k in ("distilled", "twin"))
    assert rows[0]["pareto"]["distilled"] and rows[0]["pareto"]["twin"]  # the fastest rung is always on the front
    assert (out / "ladder.png").read_bytes()[:4] == b"\x89PNG"
    assert "[ladder.md](ladder.md)" in (out / "report.md").read_text() and result.report["ladder"] == "ladder.md"
    assert sorted(p.name for p in (out / "recipes").iterdir()) == ["1.toml", "2.toml"]
    assert load_recipe(out / "recipe.toml") == ladder and load_recipe(out / "recipes" / "1.toml") == smoke


def test_export_tflite_adds_a_litert_row_to_a_finished_out(smoke_run, tiny_tree, tiny_unlabeled, tmp_path):
    pytest.importorskip("ai_edge_litert")
    first, _ = smoke_run
    out = tmp_path / "tflite"
    shutil.copytree(first.out, out)
    recipe = load_recipe("smoke", [*OVERRIDES, "export.tflite=true", "export.representative=24"])
    lines: list[str] = []
    result = run_recipe(recipe=recipe, data=tiny_tree, out=out, kaggle_test=tiny_unlabeled, progress=False, log=lines.append)
    assert "export tflite: running" in lines and "student tcresnet-toy/distilled: complete, skipped" in lines, lines
    manifest = json.loads((out / "export-tflite" / "manifest.json").read_text())
    assert manifest["quantization"]["representative_clips"] == 24 and manifest["offsets"] is not None  # calibrated like export/
    row = next(r for r in result.report["rows"] if r.get("folder") == "export-tflite")
    assert row["graph_bytes"] == (out / "export-tflite" / "model.tflite").stat().st_size
    accuracy = manifest["checks"]["measurements"]["accuracy"]
    assert (row["validation"], row["test"]) == (accuracy["validation"]["int8"], accuracy["testing"]["int8"])
    assert "LiteRT int8" in (out / "report.md").read_text()
