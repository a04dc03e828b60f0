#!/usr/bin/env python
"""The whole pipeline on a real Speech Commands tree, reported as a table (JSON + Markdown).

usage: python scripts/bench_real.py --data DIR --out DIR [--kaggle-test DIR] [--preset cpu-hybrid|cpu-hybrid-vm|cpu-long|cpu|gpu|smoke]

Stages (each skipped when its output is complete, so an interrupted run resumes):
teachers train (and their cross-fitted groups, for presets with folds) -> teachers predict (augmented views + the unlabeled Kaggle sample)
-> student fit (distilled) -> the same student with --no-teachers -> calibrate
-> export -> --check-pi -> TF 1.4 evaluation -> submit -> report -> ablations
(clean views only, pseudo-labels, and for feature-mask presets the distilled/no-teacher
pair with SpecAugment flipped), the report redrawn after each. A finished student
is reused only if its folder holds the configuration the preset asks for.
Writes OUT/report.json and OUT/report.md.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@dataclass(frozen=True)
class Preset:
    teachers: tuple[str, ...]
    teacher_size: str
    teacher_epochs: int
    student: str
    student_size: str
    student_epochs: int
    views: int
    batch_size: int = 64
    teacher_seeds: int = 1  # runs per family: <arch>, <arch>-s1, ...
    weight_bits: int = 32  # 8: the 1 MB budget counts 8-bit weights and export uses --quantize-weights
    feature_masks: bool = False  # SpecAugment on every student (distilled, twin, ablations) unless an ablation says otherwise
    folds: int = 1  # K > 1: each teacher also as a K-fold cross-fitted group (<arch>-cf), and both teach
    keep: str = "best"  # the checkpoint every student stands for: best validation epoch, or last
    view_masks: bool = False  # masks inside the teachers' views (consistent: they label the masked clip), and in every student's


PRESETS = {
    # the quick version: about 30 minutes on 2 CPU cores for the 10k-clip subset
    "cpu": Preset(("resnet", "wavecnn", "crnn"), "default", 10, "tcresnet", "14", 25, 4),
    # the previous default: the cpu preset with 4x longer teacher schedules (10 epochs left every teacher still
    # climbing); the student is TC-ResNet-14-w2 shipped with 8-bit weights, with SpecAugment masks, for
    # 160 epochs on 8 stored views. Measured on the 10k-clip subset (README): masks and 160 epochs
    # left 14-w1.5 at 95.56% validation and took its test accuracy from 91.94% to 93.39% (80 epochs unmasked
    # before), but its twin kept up; at 14-w2 the distilled student reaches 96.54% / 94.03%
    "cpu-long": Preset(("resnet", "wavecnn", "crnn"), "default", 40, "tcresnet", "14-w2", 160, 8, weight_bits=8, feature_masks=True),
    # the default: cpu-long's teachers joined by their 2-fold cross-fitted groups (six members, out-of-fold
    # doubt on training clips), students kept at their last epoch. Over three seeds (README) this student
    # ranks first on validation under either checkpoint choice, and the best of 160 epochs flatters
    # validation by 0.67 points on average, so the last checkpoint stands for the run
    "cpu-hybrid": Preset(("resnet", "wavecnn", "crnn"), "default", 40, "tcresnet", "14-w2", 160, 8, weight_bits=8, feature_masks=True, folds=2, keep="last"),
    # the candidate default: cpu-hybrid with the masks moved from the student's features into the views, so the
    # teachers label the masked clip the student sees (twins get the same masked views). Over three seeds at
    # 40 epochs on three teachers (README) it is the better distilled student on validation (95.10 against
    # 94.49) and beats its twin by +1.03 on test; not yet measured at this preset's scale
    "cpu-hybrid-vm": Preset(("resnet", "wavecnn", "crnn"), "default", 40, "tcresnet", "14-w2", 160, 8, weight_bits=8, folds=2, keep="last",
                            view_masks=True),
    # for a lent GPU machine: larger teachers, longer schedules
    "gpu": Preset(("resnet", "wavecnn", "crnn"), "large", 60, "tcresnet", "14-w2", 160, 8, teacher_seeds=2, weight_bits=8, feature_masks=True, folds=2, keep="last"),
    # plumbing check in a few minutes, through the gpu preset's seeds, fold groups and 8-bit export
    "smoke": Preset(("resnet", "wavecnn", "crnn"), "toy", 1, "tcresnet", "toy", 1, 2, 32, teacher_seeds=2, weight_bits=8, folds=2, keep="last"),
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def done(run: Path) -> bool:
    """A finished run, or a fold group whose every fold has finished."""
    from distill.training.crossfit import fold_runs

    runs = fold_runs(run) or [run]
    return all((r / "metrics.json").exists() for r in runs)


def check_reusable(run: Path, *, arch: str, size: str, epochs: int, feature_masks: bool, soft_labels, max_views: int = 0, pseudo=None, keep: str = "best",
                   view_masks: bool = False, **_) -> None:
    """Refuse a finished run folder that another preset (or an older bench) left under the same name.

    Stages are skipped when their folder is complete; without this check a rerun with another
    preset would report the old student as the new one. The bench reads ``metrics.json`` back
    without re-scoring, so unlike the seed drivers it also insists on the kept checkpoint.
    """
    from distill.training.student_fit import refuse_other_run

    refuse_other_run(run, expected={"arch": arch, "size": size, "epochs": epochs, "feature_masks": bool(feature_masks),
                                    "teachers": soft_labels is not None, "max_views": max_views if soft_labels is not None else None,
                                    "pseudo": bool(pseudo), "keep": keep, "view_masks": bool(view_masks)})


def student_plan(preset: Preset, *, soft: Path, pseudo: Path | None) -> dict[str, dict]:
    """The students a preset fits, by run-folder name: the main pair first, then the ablations."""
    masks = preset.feature_masks
    # every student (twins included) trains on views masked like the teachers' when the preset asks for it
    students = {
        "student_distilled": dict(soft_labels=soft, feature_masks=masks),
        "student_no_teachers": dict(soft_labels=None, feature_masks=masks),
        "student_clean_views": dict(soft_labels=soft, max_views=1, feature_masks=masks),  # ablation: teachers without augmented views
    }
    if pseudo is not None:
        students["student_pseudo"] = dict(soft_labels=soft, pseudo=pseudo, feature_masks=masks)
    # the student pair with SpecAugment flipped, with and without teachers: what the masks buy, and how
    # much of distillation's gain a plain regulariser also buys. Not for view masks: the views were
    # labelled masked, so an unmasked pair needs predictions of its own, and feature masks on top
    # would mask twice; 50 minutes of the 3-hour budget go to the issue's own ablations instead
    if not preset.view_masks:
        flipped = "unmasked" if masks else "masked"
        students[f"student_{flipped}"] = dict(soft_labels=soft, feature_masks=not masks)
        students[f"student_no_teachers_{flipped}"] = dict(soft_labels=None, feature_masks=not masks)
    return students


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--kaggle-test", type=Path, help="unlabeled clip_*.wav folder (pseudo-label candidates, submission)")
    parser.add_argument("--kaggle-labels", type=Path, help="winners' published labels for the Kaggle sample (agreement, not accuracy)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu-hybrid")
    parser.add_argument("--jobs", type=int, default=1, help="teachers trained at once")
    args = parser.parse_args()
    preset = PRESETS[args.preset]
    out = args.out
    out.mkdir(parents=True, exist_ok=True)

    from distill.training.fit import ScheduleConfig
    from distill.training.student_fit import fit_student
    from distill.training.teacher_fit import train_teachers

    started = time.time()
    timings: dict[str, float] = json.loads((out / "timings.json").read_text()) if (out / "timings.json").exists() else {}

    def stage(name, complete, fn):
        if complete():
            log(f"{name}: done earlier, skipped")
            return
        log(f"{name}: running")
        t = time.time()
        fn()
        timings[name] = timings.get(name, 0.0) + time.time() - t
        (out / "timings.json").write_text(json.dumps(timings, indent=2))

    members = [a if k == 0 else f"{a}-s{k}" for k in range(preset.teacher_seeds) for a in preset.teachers]
    full_dirs = [out / "teachers" / m for m in members]
    fold_groups = [out / "teachers" / f"{m}-cf" for m in members] if preset.folds > 1 else []
    teacher_dirs = full_dirs + fold_groups
    for dirs, folds in ((full_dirs, 1), (fold_groups, preset.folds)):
        if dirs:
            stage("teachers" if folds == 1 else f"teachers --folds {folds}", lambda dirs=dirs: all(done(d) for d in dirs), lambda folds=folds: train_teachers(
                archs=list(preset.teachers), data=args.data, out=out / "teachers", size=preset.teacher_size,
                schedule=ScheduleConfig(epochs=preset.teacher_epochs, batch_size=preset.batch_size), seeds=preset.teacher_seeds, folds=folds,
                jobs=args.jobs, resume=True, progress=False))

    soft = out / "soft_labels"
    from distill.data.augment import AugmentConfig
    from distill.training.soft_labels import predict_config, predict_soft_labels, refuse_other_predictions

    augment = AugmentConfig.with_view_masks() if preset.view_masks else AugmentConfig()
    prediction = dict(teacher_runs=teacher_dirs, data=args.data, views=preset.views, unlabeled=args.kaggle_test, augment=augment)
    # a finished folder of another preset (other views, teachers or masks) is refused, not skipped as done
    refuse_other_predictions(soft, predict_config(**prediction))
    stage("predict", lambda: (soft / "testing" / f"logits_{teacher_dirs[-1].name}.npy").exists() and (not args.kaggle_test or (soft / "unlabeled" / f"logits_{teacher_dirs[-1].name}.npy").exists()),
          lambda: predict_soft_labels(out=soft, progress=False, **prediction))
    from distill.training.teacher_report import teacher_report

    teacher_report(soft_labels=soft, out=out / "teacher_report")

    schedule = ScheduleConfig(epochs=preset.student_epochs, batch_size=preset.batch_size, label_smoothing=0.0, keep=preset.keep)
    students = student_plan(preset, soft=soft, pseudo=out / "pseudo.csv" if args.kaggle_test else None)

    def fit(name):
        run = out / name
        if done(run):
            check_reusable(run, arch=preset.student, size=preset.student_size, epochs=preset.student_epochs, keep=preset.keep,
                           view_masks=preset.view_masks, **students[name])
        stage(name, lambda: done(run), lambda: fit_student(
            arch=preset.student, size=preset.student_size, data=args.data, out=run, schedule=schedule, max_mb=1.0, max_ms=30.0,
            weight_bits=preset.weight_bits, augment=augment, resume=(run / "config.json").exists(), progress=False, **students[name]))

    fit("student_distilled")
    fit("student_no_teachers")
    final_student = out / "student_distilled"
    calibration = out / "calibration"
    if args.kaggle_test:
        from distill.calibration.student_calibration import calibrate_student

        stage("calibrate", lambda: (calibration / "calibration.json").exists(),
              lambda: calibrate_student(run=final_student, unlabeled=args.kaggle_test, out=calibration, expected_mix=dict(KAGGLE_PRIOR), progress=False))
    from distill.export.student_export import export_student

    exports = {"export_uncalibrated": None, "export": calibration if args.kaggle_test else None}
    for name, cal in exports.items():
        stage(name, lambda name=name: (out / name / "manifest.json").exists(),
              lambda name=name, cal=cal: export_student(run=final_student, out=out / name, calibration=cal, quantize=preset.weight_bits == 8, check=True))
    stage("tf14_eval", lambda: (out / "tf14_eval.json").exists(), lambda: tf14_evaluate(out, args.data, exports))
    stage("student confusion", lambda: (out / "confusion_student_testing.png").exists(), lambda: student_confusion(out, args.data))
    if args.kaggle_test:
        from distill.submission.submit import write_submission

        stage("submit", lambda: (out / "submission.csv").exists(),
              lambda: write_submission(model=out / "export" / "model.pb", test_dir=args.kaggle_test, out=out / "submission.csv", progress=False))
    write_report(out, preset, teacher_dirs, students, timings, args)

    def ablation(name):  # the report grows a row per finished ablation, so an interrupted session keeps them
        fit(name)
        write_report(out, preset, teacher_dirs, students, timings, args)

    # the ablations last, so the main table lands first
    for name in list(students)[2:]:
        if name == "student_pseudo":
            from distill.training.pseudo import select_pseudo_labels

            stage("pseudo select", lambda: (out / "pseudo.csv").exists(), lambda: select_pseudo_labels(soft_labels=soft, out=out / "pseudo.csv"))
        ablation(name)
    log(f"finished in {time.time() - started:.0f} s this session; report in {out / 'report.md'}")


# kaggle-facts.md (the winners' labels of all 158,538 clips); calibration centres its MAP-EM prior here
# because 24 sample clips cannot estimate a mix, and the report re-weights test accuracy to it (the ten
# words sharing the rest equally)
KAGGLE_PRIOR = {"silence": 0.09, "unknown": 0.53}


def kaggle_prior():
    import numpy as np

    from distill.calibration.student_calibration import expected_prior
    from distill.core.labels import NUM_CLASSES

    return expected_prior(KAGGLE_PRIOR, np.ones(NUM_CLASSES))  # a uniform reference: the ten words share the rest equally


def student_confusion(out: Path, data: Path) -> None:
    """Confusion matrix PNG of the distilled student on the test split (where silence and unknown still fail)."""
    from distill.data.cache import open_dataset
    from distill.data.examples import materialize
    from distill.training.fit import evaluation_examples, load_run, make_predictor
    from distill.training.teacher_report import save_confusion_png

    config, model = load_run(out / "student_distilled")
    dataset = open_dataset(Path(data), progress=False)
    examples = evaluation_examples(dataset, config, "testing")
    predictions = make_predictor(model)(materialize(dataset, examples)).argmax(1)
    accuracy = float((predictions == examples.labels).mean())
    save_confusion_png(out / "confusion_student_testing.png", examples.labels, predictions, title=f"distilled student, test split ({100 * accuracy:.2f}%)")


def tf14_evaluate(out: Path, data: Path, exports: dict) -> None:
    """Accuracy of each exported graph on the test split, computed by TensorFlow 1.4 itself."""
    import numpy as np

    from distill.calibration.prior_shift import weighted_accuracy
    from distill.compliance.tf14 import run_graph_batch
    from distill.core.io import write_json
    from distill.core.metrics import classification_report
    from distill.data.cache import open_dataset
    from distill.data.examples import materialize
    from distill.training.fit import evaluation_examples, load_run

    config, _ = load_run(out / "student_distilled")
    dataset = open_dataset(Path(data), progress=False)
    results = {}
    for split in ("validation", "testing"):
        examples = evaluation_examples(dataset, config, split)
        audio = materialize(dataset, examples)[:, :, None]
        for name in exports:
            probs = run_graph_batch((out / name / "model.pb").read_bytes(), batch_feed="decoded_sample_data:0", batch=audio,
                                    feeds={"decoded_sample_data:1": np.int32(16000)}, fetches=["labels_softmax:0"])["labels_softmax:0"].reshape(len(examples), -1)
            report = classification_report(examples.labels, probs).to_dict()
            report["expected_accuracy_at_kaggle_mix"] = float(weighted_accuracy(np.log(probs + 1e-12), examples.labels, kaggle_prior()))
            results[f"{name}/{split}"] = report
    write_json(out / "tf14_eval.json", results)


def write_report(out: Path, preset: Preset, teacher_dirs, students, timings, args) -> None:
    from distill.compliance.footprint import run_footprint
    from distill.core.io import read_json, write_json, write_text
    from distill.training.crossfit import fold_runs

    rows = []
    for d in teacher_dirs:
        fp = run_footprint(d)
        for run in fold_runs(d) or [d]:  # a fold group: a row per fold, each trained without one fold of speakers
            m = read_json(run / "metrics.json")
            name = d.name if run == d else f"{d.name} {run.name}"
            rows.append({"model": f"teacher {name}/{m['size']}", "params": m["params"], "float32_bytes": fp.float32_bytes, "macs": fp.macs,
                         "pi3_ms": fp.pi3_ms, "validation": m["validation"]["accuracy"], "test": m["test"]["accuracy"]})
    rep = read_json(out / "teacher_report" / "report.json")
    ens = {r["split"]: r["accuracy"] for r in rep["rows"] if r["model"] == "ensemble"}
    # every member runs on a clip, so sizes and MACs add up; latency does not (threads), so it stays blank
    rows.append({"model": "teacher ensemble", **{k: sum(r[k] for r in rows) for k in ("params", "float32_bytes", "macs")},
                 "validation": ens.get("validation"), "test": ens.get("testing")})
    for name in students:
        if not done(out / name):
            continue
        m = read_json(out / name / "metrics.json")
        fp = m.get("footprint", {})
        rows.append({"model": f"{name.replace('_', ' ')} ({m['arch']}/{m['size']})", "params": m["params"], "float32_bytes": fp.get("float32_bytes"),
                     "macs": fp.get("macs"), "pi3_ms": fp.get("pi3_ms"), "validation": m["validation"]["accuracy"], "test": m["test"]["accuracy"]})
    if (out / "tf14_eval.json").exists():
        tf14 = read_json(out / "tf14_eval.json")
        for name, label in (("export_uncalibrated", "exported distilled student, TF 1.4"), ("export", "exported calibrated student, TF 1.4")):
            if f"{name}/testing" not in tf14:
                continue
            manifest = read_json(out / name / "manifest.json")
            fp = manifest["footprint"]
            rows.append({"model": label, "params": fp["params"], "graph_bytes": fp["graph_bytes"], "macs": fp["macs"], "pi3_ms": fp["pi3_ms"],
                         "validation": tf14[f"{name}/validation"]["accuracy"], "test": tf14[f"{name}/testing"]["accuracy"],
                         "test_at_kaggle_mix": tf14[f"{name}/testing"]["expected_accuracy_at_kaggle_mix"], "checks_passed": (manifest.get("checks") or {}).get("passed")})
    if (out / "submission.csv").exists() and args.kaggle_labels:
        from distill.submission.submit import score_submission

        rows_agreement = score_submission(out / "submission.csv", args.kaggle_labels)
        report_extra = {"kaggle_sample_agreement_with_winners": rows_agreement}
    else:
        report_extra = {}
    report = {"data": str(args.data), "preset": args.preset, "rows": rows, "agreement": rep["agreement"], "timings_s": timings, **report_extra}
    write_json(out / "report.json", report)

    def pct(v):
        return "" if v is None else f"{100 * v:.2f}"

    lines = ["| model | params | bytes | MACs | est. Pi 3 ms | validation % | test % | test % at Kaggle mix |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        macs = f"{r['macs'] / 1e6:.1f} M" if r.get("macs") else ""
        ms = f"{r['pi3_ms']:.1f}" if r.get("pi3_ms") is not None else ""
        size = f"{r['graph_bytes']:,} (graph)" if r.get("graph_bytes") else f"{r['float32_bytes']:,} (float32)" if r.get("float32_bytes") else ""
        lines.append(f"| {r['model']} | {r['params']:,} | {size} | {macs} | {ms} | {pct(r['validation'])} | {pct(r['test'])} | {pct(r.get('test_at_kaggle_mix'))} |")
    recall = ""
    if (out / "tf14_eval.json").exists():
        per_class = read_json(out / "tf14_eval.json").get("export_uncalibrated/testing", {}).get("per_class_recall", {})
        recall = "\n\nPer-class recall of the exported distilled student on the test split (TF 1.4):\n\n" + " | ".join(
            f"{k} {100 * v:.1f}%" for k, v in per_class.items() if v is not None) + "\n\n![confusion](confusion_student_testing.png)\n"
    write_text(out / "report.md", f"# Real-audio benchmark ({args.preset} preset)\n\nData: `{args.data}`\n\n" + "\n".join(lines) + recall + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
