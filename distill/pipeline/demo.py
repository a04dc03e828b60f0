"""The whole pipeline on synthesized data, as one call (chains library functions, not the CLI).

synth (with a shifted unlabeled test folder and its answer key) -> index ->
teachers train (in parallel) -> teachers predict (views + the test folder)
-> pseudo select -> student fit (distilled, with pseudo-labels) -> the
no-teacher twin -> calibrate -> export --check-pi -> submit -> score against
the answer key. Every stage's result lands in ``out/summary.json`` as soon as
it finishes; the end writes ``summary.html`` with the table and a confusion
matrix of the submission.

Synthetic speech only: a demonstration of the toolkit, never a competition model.
"""

from __future__ import annotations

import html
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from distill.core.io import write_json, write_text
from distill.core.tables import aligned_table, plain_text
from distill.data.stats import DatasetStats, dataset_stats
from distill.data.synth import TEST_MARKER, SynthConfig, synthesize_dataset


@dataclass(frozen=True)
class DemoConfig:
    speakers: int = 60
    takes: int = 2
    min_speakers_per_split: int = 10  # validation and test need enough voices for accuracy to mean something
    test_clips: int = 400
    seed: int = 0
    jobs: int = 2
    teachers: tuple[str, ...] = ("resnet", "wavecnn", "crnn")
    teacher_size: str = "small"
    teacher_epochs: int = 25
    student: str = "tcresnet"
    student_size: str = "8"
    student_epochs: int = 30
    views: int = 4
    batch_size: int = 64
    full: bool = True  # False: synthesize and index only


@dataclass
class DemoResult:
    out: Path
    stages: list[dict] = field(default_factory=list)
    table: list[dict] = field(default_factory=list)
    stats_table: str = ""
    stats: DatasetStats | None = None

    def summary(self) -> dict:
        return {"out": str(self.out), "stages": self.stages, "table": self.table}


def run_demo(*, out: Path, config: DemoConfig = DemoConfig(), progress: bool = True, log=print) -> DemoResult:
    from distill.core.io import check_output, read_json

    out = check_output(out)  # before any work: a file there, a path under a file, a read-only folder
    result = DemoResult(out=out)

    def stage(name: str, fn):
        log(f"== {name}")
        started = time.time()
        value, info = fn()
        result.stages.append({"stage": name, "seconds": round(time.time() - started, 1), "status": "ok", **info})
        write_json(out / "summary.json", {**result.summary(), "config": asdict(config)})
        return value

    data, test_dir, answers = out / "data", out / "kaggle_test", out / "kaggle_test_answers.csv"
    stage("synth", lambda: _synth(out, config, progress))
    stats = stage("index", lambda: _index(data, progress))
    result.stats, result.stats_table = stats, stats.to_table()
    if not config.full:
        return result

    from distill.calibration.student_calibration import calibrate_student
    from distill.data.augment import AugmentConfig
    from distill.export.student_export import export_student
    from distill.submission.scoring import score_submission
    from distill.submission.writer import write_submission
    from distill.training.fit import ScheduleConfig
    from distill.training.pseudo import select_pseudo_labels
    from distill.training.soft_labels import predict_soft_labels
    from distill.training.student_fit import fit_student
    from distill.training.teacher_fit import train_teachers
    from distill.training.teacher_report import save_confusion_png, teacher_report

    teacher_schedule = ScheduleConfig(epochs=config.teacher_epochs, batch_size=config.batch_size)
    student_schedule = ScheduleConfig(epochs=config.student_epochs, batch_size=config.batch_size, label_smoothing=0.0)
    runs = out / "runs"
    stage("teachers train", lambda: _value(train_teachers(
        archs=list(config.teachers), data=data, out=runs / "teachers", size=config.teacher_size, schedule=teacher_schedule,
        seed=config.seed, jobs=min(config.jobs, len(config.teachers)), resume=(runs / "teachers").exists(), progress=progress),
        lambda rs: {r["metrics"]["arch"]: round(r["metrics"]["test"]["accuracy"], 4) for r in rs}))
    teacher_dirs = [runs / "teachers" / a for a in config.teachers]
    soft = runs / "soft_labels"
    stage("teachers predict", lambda: _value(predict_soft_labels(
        teacher_runs=teacher_dirs, data=data, out=soft, views=config.views, unlabeled=test_dir, augment=AugmentConfig(), seed=config.seed, progress=progress),
        lambda r: r.counts))
    report = teacher_report(soft_labels=soft)
    pseudo = stage("pseudo select", lambda: _value(select_pseudo_labels(soft_labels=soft, out=runs / "pseudo.csv"), lambda s: {"selected": s.selected, "candidates": s.candidates}))
    student_dir, twin_dir = runs / "student", runs / "student_no_teachers"
    common = dict(arch=config.student, size=config.student_size, data=data, schedule=student_schedule, seed=config.seed, max_mb=1.0, max_ms=175.0, progress=progress)
    student = stage("student fit", lambda: _value(fit_student(out=student_dir, soft_labels=soft, pseudo=pseudo.path, resume=student_dir.exists(), **common),
                                                   lambda r: {"test_accuracy": round(r.metrics["test"]["accuracy"], 4)}))
    twin = stage("student fit --no-teachers", lambda: _value(fit_student(out=twin_dir, soft_labels=None, resume=twin_dir.exists(), **common),
                                                              lambda r: {"test_accuracy": round(r.metrics["test"]["accuracy"], 4)}))
    calibration = runs / "calibration"
    stage("calibrate", lambda: _value(calibrate_student(run=student_dir, unlabeled=test_dir, out=calibration, progress=progress),
                                      lambda r: {"estimated_test_prior": {k: round(v, 3) for k, v in r.summary["test_prior"].items() if k in ("silence", "unknown")}}))
    exported = stage("export --check-pi", lambda: _value(export_student(run=student_dir, out=runs / "export", calibration=calibration, check=True),
                                                         lambda r: {"bytes": r.bytes, "pi3_ms": round(r.footprint["pi3_ms"], 1), "checks_passed": r.checks["passed"]}))
    if not exported.checks["passed"]:
        raise RuntimeError("the exported graph failed --check-pi; see runs/export/manifest.json")
    scores = {}
    for name, model_dir, calib in (("student, calibrated", runs / "export", None), ("student, uncalibrated", runs / "export_uncalibrated", False),
                                   ("student without teachers", runs / "export_no_teachers", False)):
        if model_dir.name == "export_uncalibrated":
            export_student(run=student_dir, out=model_dir)
        elif model_dir.name == "export_no_teachers":
            export_student(run=twin_dir, out=model_dir)
        csv = runs / f"submission_{model_dir.name}.csv"
        stage(f"submit ({name})", lambda csv=csv, model_dir=model_dir: _value(write_submission(model=model_dir / "model.pb", test_dir=test_dir, out=csv, progress=progress),
                                                                             lambda r: {"clips": r.clips}))
        scores[name] = score_submission(csv, answers)
    final = scores["student, calibrated"]
    save_confusion_png(out / "submission_confusion.png", *_labels_and_predictions(final), title=f"calibrated student on the shifted test folder ({100 * final['accuracy']:.1f}%)")

    rows = [{"model": f"teacher {r['model']}", "test": r["accuracy"]} for r in report.rows if r["split"] == "testing"]
    for r in rows:
        arch = r["model"].split()[-1]
        if arch in config.teachers:
            r["params"] = read_json(runs / "teachers" / arch / "metrics.json")["params"]
    for r in rows:
        if r["model"] == "teacher ensemble":
            r["params"] = sum(x.get("params", 0) for x in rows if x is not r)
    s_metrics, t_metrics = student.metrics, twin.metrics
    fp = exported.footprint
    rows += [
        {"model": f"student {config.student}/{config.student_size} (distilled)", "params": s_metrics["params"], "test": s_metrics["test"]["accuracy"],
         "bytes": fp["graph_bytes"], "pi3_ms": fp["pi3_ms"], "submission": scores["student, uncalibrated"]["accuracy"]},
        {"model": f"student {config.student}/{config.student_size} (no teachers)", "params": t_metrics["params"], "test": t_metrics["test"]["accuracy"],
         "submission": scores["student without teachers"]["accuracy"]},
        {"model": "student, calibrated (the shipped graph)", "params": s_metrics["params"], "test": None, "bytes": fp["graph_bytes"], "pi3_ms": fp["pi3_ms"],
         "submission": final["accuracy"]},
    ]
    result.table = rows
    write_json(out / "summary.json", {**result.summary(), "config": asdict(config), "scores": {k: v["accuracy"] for k, v in scores.items()}})
    write_text(out / "summary.html", _html(result, config))
    return result


def _value(value, info):
    return value, info(value)


def _labels_and_predictions(score: dict):
    import numpy as np

    cm = np.asarray(score["confusion"])
    labels = np.repeat(np.arange(cm.shape[0]), cm.sum(axis=1))
    predictions = np.concatenate([np.repeat(np.arange(cm.shape[1]), row) for row in cm])
    return labels, predictions


def _synth(out: Path, config: DemoConfig, progress: bool):
    synth_config = SynthConfig(speakers=config.speakers, takes=config.takes, test_clips=config.test_clips, seed=config.seed,
                               min_speakers_per_split=min(config.min_speakers_per_split, config.speakers // 3))
    # the demo replaces only what an earlier demo synthesized here (a run killed mid-synth may have left the test folder alone)
    ours = (out / "data" / "synth_config.json").exists() or (out / "kaggle_test" / TEST_MARKER).exists()
    result = synthesize_dataset(out=out / "data", config=synth_config, jobs=config.jobs, test_dir=out / "kaggle_test",
                                answer_key=out / "kaggle_test_answers.csv", overwrite=ours, progress=progress)
    return result, {"clips": result.clips, "speakers": result.speakers, "test_clips": config.test_clips}


def _index(data: Path, progress: bool):
    stats = dataset_stats(root=data, progress=progress)
    return stats, {"clips": stats.total_clips, "speakers": stats.speaker_counts, "bad_files": len(stats.bad_files)}


def format_table(rows: list[dict]) -> str:
    """The models table ``distill demo`` prints, as plain aligned text (``model_table`` for a rich Console)."""
    return plain_text(model_table(rows)).rstrip("\n")


def model_table(rows: list[dict]):
    """A rich Table of ``DemoResult.table``: parameters, graph bytes, estimated Pi 3 ms, test and submission accuracy."""
    def pct(v):
        return f"{100 * v:.2f}%" if v is not None else "-"

    return aligned_table(
        ["model", "params", "bytes", "Pi3 ms", "test", "submission"],
        [[r["model"], f"{r.get('params', 0):,}", r.get("bytes") or "", "" if r.get("pi3_ms") is None else f"{r['pi3_ms']:.1f}",
          pct(r.get("test")), pct(r.get("submission"))] for r in rows],
        right_from=1,
    )


def stages_table(stages: list[dict]):
    """A rich Table of ``DemoResult.stages``: each stage's seconds and status."""
    return aligned_table(["stage", "seconds", "status"], [[s["stage"], f"{s['seconds']:.1f}", s["status"]] for s in stages],
                         right_from=1, right_to=2)


def _html(result: DemoResult, config: DemoConfig) -> str:
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in (
            r["model"], f"{r.get('params', 0):,}", r.get("bytes") or "", "" if r.get("pi3_ms") is None else f"{r['pi3_ms']:.1f}",
            "" if r.get("test") is None else f"{100 * r['test']:.2f}%", "" if r.get("submission") is None else f"{100 * r['submission']:.2f}%")) + "</tr>"
        for r in result.table)
    stages = "".join(f"<tr><td>{html.escape(s['stage'])}</td><td>{s['seconds']}</td><td>{s['status']}</td></tr>" for s in result.stages)
    return f"""<!doctype html><meta charset="utf-8"><title>distill demo</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:960px}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child{{text-align:left}}</style>
<h1>distill demo (synthesized speech)</h1>
<p>eSpeak NG speech, {config.speakers} speakers x {config.takes} takes; the test folder has a shifted class mix (more unknown and silence). Not a competition model.</p>
<h2>Models</h2><table><tr><th>model</th><th>params</th><th>graph bytes</th><th>est. Pi 3 ms</th><th>test split</th><th>shifted test folder (submission)</th></tr>{rows}</table>
<h2>Stages</h2><table><tr><th>stage</th><th>seconds</th><th>status</th></tr>{stages}</table>
<h2>Submission confusion matrix</h2><img src="submission_confusion.png" alt="confusion matrix" width="640">
"""
