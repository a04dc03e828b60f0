"""``distill run``: every stage of a recipe, through the library functions, resumable stage by stage.

Layout of OUT::

    recipe.toml                 the latest resolved recipe (a rerun that changes a key behind what is here is refused)
    recipes/<n>.toml            every distinct resolved recipe run into OUT, numbered in the order first run
    timings.json                seconds per stage, summed over interrupted attempts (written every 30 s while one runs)
    teachers/<arch>[-sK][-cf]   teacher runs and cross-fitted fold groups
    soft_labels/                the teachers' logits on augmented views (and on --kaggle-test)
    teacher_report/             per-teacher and ensemble accuracy
    pseudo.csv                  pseudo-labels picked on --kaggle-test (review with ``distill pseudo review``)
    students/<arch>-<size>[-<fe>]/ distilled/, twin/ (no teachers), distilled-s<k>/, twin-s<k>/ (seed k > 0), export/ (uncalibrated graph), ablations
    calibration/                offsets for the expected test mix (first student, with --kaggle-test)
    export/                     the shipped graph: first student, calibrated when --kaggle-test is given
    export-tflite/              with export.tflite: the same student as a full-integer LiteRT model.tflite, checked in LiteRT
    tf14_eval.json              every exported graph scored by TensorFlow 1.4 on validation and test
    submission.csv              the shipped graph on --kaggle-test
    report.md, report.json      the table; confusion.png, recall.png for the shipped graph
    ladder.md, .json, .png      several students or seeds: each student's footprint and accuracy over seeds, distilled and twin

A stage whose output is complete is skipped, so rerunning the same command after an interruption
continues where it stopped (an interrupted fit resumes from its last checkpoint), and another recipe
run into the same OUT reuses what its keys agree on (``refuse_other_recipe``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from distill.core.errors import DistillError
from distill.core.io import check_output, exclusive_folder, read_json, sha256_file, write_json, write_text
from distill.pipeline.recipe import (
    Recipe,
    StudentRecipe,
    augment_config,
    frontend_config,
    mix_config,
    recipe_diff,
    recipe_from_dict,
    schedule_config,
    teacher_augment_config,
    to_toml,
)

RECIPE_FILE = "recipe.toml"
RECIPES_DIR = "recipes"
TFLITE_DIR = "export-tflite"  # export.tflite: the shipped student (calibrated like export/) as a full-integer LiteRT model
TIMINGS_FILE = "timings.json"
TIMING_HEARTBEAT_S = 30.0  # how often a running stage's time so far is written to timings.json


@dataclass(frozen=True)
class StudentPlan:
    """One student run the recipe asks for: its folder, its recipe entry, and how it differs from it."""

    name: str  # e.g. tcresnet-14-w2/distilled, tcresnet-14-w2/twin-s2
    student: StudentRecipe
    teachers: bool = True
    max_views: int | None = None  # None: the recipe's
    pseudo: bool = False
    feature_masks: bool | None = None  # None: the recipe's
    ablation: bool = False
    seed: int = 0  # k of the student's seeds: the fit's seed is data.seed + k


def run_name(kind: str, k: int) -> str:
    """``distilled``/``twin`` for seed 0 (the folders of runs before seeds existed), ``distilled-s<k>`` for the others."""
    return kind if k == 0 else f"{kind}-s{k}"


def plan_students(recipe: Recipe, *, with_pseudo: bool) -> list[StudentPlan]:
    """Every student's distilled/twin pair at each of its seeds, then the first student's ablations.

    Seed 0 of every student comes first, so an interrupted ladder already has a row per rung.
    """
    plans = []
    for k in range(max(s.seeds for s in recipe.students)):
        for student in recipe.students:
            if k < student.seeds:
                plans.append(StudentPlan(f"{student.label}/{run_name('distilled', k)}", student, seed=k))
                if student.twin:
                    plans.append(StudentPlan(f"{student.label}/{run_name('twin', k)}", student, teachers=False, seed=k))
    first = recipe.students[0]
    ablations = recipe.ablations
    if ablations.clean_views:
        plans.append(StudentPlan(f"{first.label}/clean_views", first, max_views=1, ablation=True))
    if ablations.pseudo and with_pseudo:
        plans.append(StudentPlan(f"{first.label}/pseudo", first, pseudo=True, ablation=True))
    # not with view masks: the views were labelled masked, so an unmasked pair would need predictions of its own
    if ablations.flipped_masks and not recipe.predict.view_masks:
        flipped = "unmasked" if first.feature_masks else "masked"
        plans.append(StudentPlan(f"{first.label}/{flipped}", first, feature_masks=not first.feature_masks, ablation=True))
        plans.append(StudentPlan(f"{first.label}/twin_{flipped}", first, teachers=False, feature_masks=not first.feature_masks, ablation=True))
    return plans


def is_ladder(recipe: Recipe) -> bool:
    """Whether ``distill run`` writes ladder.md/json/png: more than one student, or repeated seeds."""
    return len(recipe.students) > 1 or any(s.seeds > 1 for s in recipe.students)


@dataclass
class RunResult:
    out: Path
    report: dict[str, Any]
    timings: dict[str, float]


def teacher_members(recipe: Recipe) -> tuple[list[str], list[str]]:
    """(full-data teacher names, fold-group names) as ``train_teachers`` names their folders."""
    t = recipe.teachers
    members = [a if k == 0 else f"{a}-s{k}" for k in range(t.seeds) for a in t.families]
    return members, ([f"{m}-cf" for m in members] if t.folds > 1 else [])


# what each recipe table shapes in OUT: once one of these is there, a run with other values for the table is refused
_SHAPED_BY = {
    "data": ("teachers", "soft_labels", "pseudo.csv", "students", "calibration"),
    "teachers": ("teachers", "soft_labels"),
    "predict": ("soft_labels",),
    "pseudo": ("pseudo.csv",),
    "calibrate": ("calibration",),
}
# student keys that only choose how many runs there are, not what any run is
_STUDENT_COUNT_KEYS = ("seeds", "twin")


def _read_recipe(path: Path, out: Path) -> Recipe:
    try:
        return recipe_from_dict(tomllib.loads(path.read_text(encoding="utf-8")), name=str(path))
    except (tomllib.TOMLDecodeError, DistillError) as err:
        raise DistillError(f"{path}: unreadable ({err}); move {out} away or choose another --out") from None


def recorded_recipes(out: Path) -> list[Path]:
    """OUT/recipes/<n>.toml, every distinct resolved recipe OUT has been run with, in the order they first ran."""
    folder = out / RECIPES_DIR
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.glob("*.toml") if p.stem.isdigit()), key=lambda p: int(p.stem))


def refuse_other_recipe(out: Path, recipe: Recipe) -> None:
    """Raise when ``recipe`` sets a key that shaped an artefact already in OUT, naming every such key.

    Shared artefacts are refused table by table (``_SHAPED_BY``); a student is compared key by key
    with the recipe that last had it, by folder (``students/<label>``), when that folder is
    there; calibration/ and export/ belong to the first student. Adding students, seeds or ablations,
    or changing ``export.*``, only adds work.
    """
    path = out / RECIPE_FILE
    if not path.exists():
        return
    latest = _read_recipe(path, out)
    conflicts: list[tuple[str, Any, Any]] = []
    shaped: list[str] = []
    for key, there, asked in recipe_diff(latest, recipe):
        table = key.split(".")[0]
        found = [p for p in _SHAPED_BY.get(table, ()) if (out / p).exists()]
        if found:
            conflicts.append((key, there, asked))
            shaped += found
    earlier = [latest] + [_read_recipe(p, out) for p in reversed(recorded_recipes(out))]
    firsts = [n for n in ("calibration", "export") if (out / n).exists()]
    if firsts and latest.students[0].label != recipe.students[0].label:
        for key in ("arch", "size"):
            there, asked = getattr(latest.students[0], key), getattr(recipe.students[0], key)
            if there != asked:
                conflicts.append((f"students.0.{key}", there, asked))
        shaped += firsts
    for i, student in enumerate(recipe.students):
        if not (out / "students" / student.label).exists():
            continue
        before = next((s for r in earlier for s in r.students if s.label == student.label), None)
        if before is None:
            continue
        for key in (f.name for f in dataclasses.fields(student)):
            if key not in _STUDENT_COUNT_KEYS and getattr(before, key) != getattr(student, key):
                conflicts.append((f"students.{i}.{key}", _plain(getattr(before, key)), _plain(getattr(student, key))))
                shaped.append(f"students/{student.label}")
    if conflicts:
        detail = "; ".join(f"{key}: {a!r} there, {b!r} asked" for key, a, b in conflicts)
        made = ", ".join(dict.fromkeys(shaped))
        raise DistillError(f"{out} was made with another recipe ({detail}); those keys shaped {made} in it: choose another --out, "
                           "or set them back to reuse what is there (adding students, seeds or ablations, or changing export, is allowed)")


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def record_recipe(out: Path, recipe: Recipe) -> None:
    """OUT/recipe.toml is the latest resolved recipe; OUT/recipes/<n>.toml keeps each distinct one, so OUT reproduces every result in it."""
    text = to_toml(recipe)
    known = recorded_recipes(out)
    if not known and (out / RECIPE_FILE).exists():  # an OUT from before recipes/ was kept: its one recipe is the first
        write_text(out / RECIPES_DIR / "1.toml", (out / RECIPE_FILE).read_text(encoding="utf-8"))
        known = recorded_recipes(out)
    if all(_read_recipe(p, out) != recipe for p in known):
        write_text(out / RECIPES_DIR / f"{int(known[-1].stem) + 1 if known else 1}.toml", text)
    write_text(out / RECIPE_FILE, text)


def _done(run: Path) -> bool:
    from distill.training.crossfit import fold_runs
    from distill.training.fit import is_finished

    return all(is_finished(r) for r in (fold_runs(run) or [run]))


class _Stages:
    """Runs a stage unless its output is complete, logging and timing it."""

    def __init__(self, out: Path, log: Callable[[str], None]):
        self.out, self.log = out, log
        path = out / TIMINGS_FILE
        self.timings: dict[str, float] = read_json(path) if path.exists() else {}

    def __call__(self, name: str, complete: Callable[[], bool], work: Callable[[], Any]) -> None:
        if complete():
            self.log(f"{name}: complete, skipped")
            return
        self.log(f"{name}: running")
        start, before = time.time(), self.timings.get(name, 0.0)
        lock, stop = threading.Lock(), threading.Event()

        def record() -> None:
            with lock:
                self.timings[name] = round(before + time.time() - start, 1)
                write_json(self.out / TIMINGS_FILE, self.timings)

        def heartbeat() -> None:
            # a killed run (SIGKILL, a lost machine) cannot record its time at the end: this loses at most one beat
            while not stop.wait(TIMING_HEARTBEAT_S):
                record()

        beat = threading.Thread(target=heartbeat, name="distill-stage-timer", daemon=True)
        beat.start()
        try:
            work()
        finally:  # an interrupted or failed attempt's time counts too: a resume adds to it
            stop.set()
            beat.join()
            record()
        self.log(f"{name}: done in {time.time() - start:.1f} s")


def run_recipe(*, recipe: Recipe, data: Path, out: Path, kaggle_test: Path | None = None, kaggle_labels: Path | None = None,
               jobs: int = 1, student_jobs: int = 1, progress: bool = True, log: Callable[[str], None] = print) -> RunResult:
    """Run every stage of ``recipe`` on the Speech Commands tree ``data`` into ``out``; see the module docstring.

    ``jobs`` teachers and ``student_jobs`` students are trained at once, each in its own process.
    """
    data, out = Path(data), Path(out)
    if not data.is_dir():
        raise DistillError(f"{data}: no such data folder (a Speech Commands-layout tree; `distill data synth` makes a demo one)")
    if kaggle_test is not None and not Path(kaggle_test).is_dir():
        raise DistillError(f"{kaggle_test}: no such folder of unlabeled test clips (--kaggle-test)")
    if kaggle_labels is not None and not Path(kaggle_labels).is_file():
        raise DistillError(f"{kaggle_labels}: no such labels CSV (--kaggle-labels)")
    for option, value in (("--jobs", jobs), ("--student-jobs", student_jobs)):
        if value < 1:
            raise DistillError(f"{option} must be at least 1, got {value}")
    check_output(out, inputs=(data, kaggle_test, kaggle_labels))  # a file there, a path under a file, a read-only folder, an input
    refuse_other_recipe(out, recipe)
    with exclusive_folder(out, doing="run"):
        record_recipe(out, recipe)
        return _run(recipe=recipe, data=data, out=out, kaggle_test=Path(kaggle_test) if kaggle_test else None,
                    kaggle_labels=Path(kaggle_labels) if kaggle_labels else None, jobs=jobs, student_jobs=student_jobs, progress=progress, log=log)


def _run(*, recipe: Recipe, data: Path, out: Path, kaggle_test: Path | None, kaggle_labels: Path | None, jobs: int, student_jobs: int, progress: bool,
         log: Callable[[str], None]) -> RunResult:
    stage = _Stages(out, log)
    seed = recipe.data.seed
    source = recipe.source
    t = recipe.teachers
    members, groups = teacher_members(recipe)
    teacher_dirs = [out / "teachers" / m for m in members + groups]

    def train(folds: int) -> None:
        from distill.training.teacher_fit import train_teachers

        train_teachers(data=data, out=out / "teachers", folds=folds, jobs=jobs, resume=True, progress=progress and jobs == 1, recipe=source,
                       **teacher_settings(recipe))

    for names, folds in ((members, 1), (groups, t.folds)):
        if names:
            stage("teachers" if folds == 1 else f"teachers --folds {folds}", lambda names=names: all(_done(out / "teachers" / n) for n in names),
                  lambda folds=folds: train(folds))

    soft = out / "soft_labels"
    prediction = dict(teacher_runs=teacher_dirs, data=data, unlabeled=kaggle_test, **predict_settings(recipe))
    last = teacher_dirs[-1].name

    def predict() -> None:
        from distill.training.soft_labels import predict_config, predict_soft_labels, refuse_other_predictions

        refuse_other_predictions(soft, predict_config(**prediction))  # a folder left by other teachers or views
        predict_soft_labels(out=soft, progress=progress, **prediction)

    def report_teachers() -> None:
        from distill.training.teacher_report import teacher_report

        teacher_report(soft_labels=soft, out=out / "teacher_report")

    stage("teachers predict", lambda: (soft / "testing" / f"logits_{last}.npy").exists() and (kaggle_test is None or (soft / "unlabeled" / f"logits_{last}.npy").exists()),
          predict)
    stage("teachers report", lambda: (out / "teacher_report" / "report.json").exists(), report_teachers)

    pseudo_csv = out / "pseudo.csv"
    if kaggle_test is not None and recipe.pseudo.enabled:
        from distill.training.pseudo import select_pseudo_labels

        stage("pseudo select", pseudo_csv.exists, lambda: select_pseudo_labels(soft_labels=soft, out=pseudo_csv, threshold=recipe.pseudo.threshold,
                                                                              min_agreement=recipe.pseudo.min_agreement))
    plans = plan_students(recipe, with_pseudo=pseudo_csv.exists())
    _fit_students([p for p in plans if not p.ablation], jobs=student_jobs, recipe=recipe, data=data, out=out, soft=soft, pseudo_csv=pseudo_csv,
                  stage=stage, progress=progress, log=log)

    first = out / "students" / recipe.students[0].label / "distilled"
    calibration = None
    if kaggle_test is not None:
        from distill.calibration.student_calibration import calibrate_student

        calibration = out / "calibration"
        cal = recipe.calibrate
        stage("calibrate", lambda: (calibration / "calibration.json").exists(),
              lambda: calibrate_student(run=first, unlabeled=kaggle_test, out=calibration, seed=seed, prior_strength=cal.prior_strength,
                                        expected_mix=cal.expected_mix, progress=progress))
    exports = _exports(recipe, out, calibration)
    from distill.export.student_export import export_student

    for name, (run, cal_dir, student) in exports.items():
        stage(f"export {name}", lambda name=name, run=run: _exported(out / name, run, recipe),
              lambda name=name, run=run, cal_dir=cal_dir, student=student: export_student(
                  run=run, out=out / name, calibration=cal_dir, quantize=student.weight_bits == 8, check=recipe.export.check_pi,
                  check_clips=recipe.export.check_clips))
    stage("tf14 evaluation", lambda: _tf14_complete(out, exports), lambda: tf14_evaluate(out=out, data=data, run=first, exports=list(exports), recipe=recipe))
    if recipe.export.tflite:
        from distill.export.tflite import export_student_tflite

        stage("export tflite", lambda: (out / TFLITE_DIR / "manifest.json").exists(),
              lambda: export_student_tflite(run=first, out=out / TFLITE_DIR, calibration=calibration, representative=recipe.export.representative, check=True))
    if kaggle_test is not None:
        from distill.submission.writer import write_submission

        stage("submit", lambda: (out / "submission.csv").exists(),
              lambda: write_submission(model=out / "export" / "model.pb", test_dir=kaggle_test, out=out / "submission.csv", progress=progress))
    report = write_report(out=out, recipe=recipe, data=data, teacher_dirs=teacher_dirs, plans=plans, exports=list(exports),
                          timings=stage.timings, kaggle_labels=kaggle_labels)
    for plan in plans:
        if plan.ablation:  # last, so the main table lands first; the report grows a row per finished ablation
            _fit(plan, recipe=recipe, data=data, out=out, soft=soft, pseudo_csv=pseudo_csv, stage=stage, progress=progress)
            report = write_report(out=out, recipe=recipe, data=data, teacher_dirs=teacher_dirs, plans=plans, exports=list(exports),
                                  timings=stage.timings, kaggle_labels=kaggle_labels)
    log(f"report: {out / 'report.md'}")
    return RunResult(out=out, report=report, timings=dict(stage.timings))


def teacher_settings(recipe: Recipe) -> dict[str, Any]:
    """What ``train_teachers`` takes from a recipe (``distill teachers train`` builds the same from its options)."""
    t = recipe.teachers
    return dict(archs=list(t.families), size=t.size, schedule=schedule_config(t), mix=mix_config(recipe.data),
                augment=teacher_augment_config(recipe), seed=recipe.data.seed, seeds=t.seeds,
                words=tuple(recipe.data.words))


def predict_settings(recipe: Recipe) -> dict[str, Any]:
    """What ``predict_soft_labels`` takes from a recipe."""
    return dict(views=recipe.predict.views, mix=mix_config(recipe.data), augment=augment_config(recipe.predict), seed=recipe.data.seed,
                words=tuple(recipe.data.words))


def student_settings(recipe: Recipe, plan: StudentPlan | None = None) -> dict[str, Any]:
    """What ``fit_student`` takes from a recipe for one planned student (default: the first student, distilled)."""
    plan = plan or StudentPlan(f"{recipe.students[0].label}/distilled", recipe.students[0])
    s = plan.student
    return dict(arch=s.arch, size=s.size, alpha=s.alpha, temperature=s.temperature, max_views=s.max_views if plan.max_views is None else plan.max_views,
                max_mb=s.max_mb or None, max_ms=s.max_ms or None, weight_bits=s.weight_bits, schedule=schedule_config(s), mix=mix_config(recipe.data),
                augment=augment_config(recipe.predict), frontend=frontend_config(s),
                feature_masks=s.feature_masks if plan.feature_masks is None else plan.feature_masks, seed=recipe.data.seed + plan.seed,
                words=tuple(recipe.data.words))


def _fit(plan: StudentPlan, *, recipe: Recipe, data: Path, out: Path, soft: Path, pseudo_csv: Path, stage: _Stages, progress: bool) -> None:
    run = out / "students" / plan.name

    def work() -> None:
        from distill.training.student_fit import fit_student

        fit_student(progress=progress, **_fit_arguments(plan, recipe=recipe, data=data, out=out, soft=soft, pseudo_csv=pseudo_csv))

    stage(f"student {plan.name}", lambda: _done(run), work)


def _fit_students(plans: list[StudentPlan], *, jobs: int, recipe: Recipe, data: Path, out: Path, soft: Path, pseudo_csv: Path, stage: _Stages,
                  progress: bool, log: Callable[[str], None]) -> None:
    """Fit ``plans`` one by one, or ``jobs`` at a time in worker processes when more than one is left.

    Side by side pays where one fit leaves the cores idle, as small students do (``fit_students_side_by_side``).
    The wall time is then the stage ``students, N at a time``; each fit's own time is in its metrics.json. A fit
    is reproducible under the same ``jobs``: TensorFlow's thread count changes the order of its float sums.
    """
    pending = [p for p in plans if not _done(out / "students" / p.name)]
    if jobs == 1 or len(pending) < 2:
        for plan in plans:
            _fit(plan, recipe=recipe, data=data, out=out, soft=soft, pseudo_csv=pseudo_csv, stage=stage, progress=progress)
        return
    from distill.training.student_fit import fit_students_side_by_side

    for plan in plans:
        if plan not in pending:
            log(f"student {plan.name}: complete, skipped")
    names = {out / "students" / p.name: p.name for p in pending}

    def work() -> None:
        runs = [_fit_arguments(plan, recipe=recipe, data=data, out=out, soft=soft, pseudo_csv=pseudo_csv) for plan in pending]
        for run, seconds in fit_students_side_by_side(runs, jobs=jobs):
            log(f"student {names[run]}: " + ("finished by another process meanwhile, skipped" if seconds is None else f"done in {seconds:.1f} s"))

    stage(f"students, {min(jobs, len(pending))} at a time", lambda: all(_done(run) for run in names), work)


def _fit_arguments(plan: StudentPlan, *, recipe: Recipe, data: Path, out: Path, soft: Path, pseudo_csv: Path) -> dict[str, Any]:
    """``fit_student``'s keyword arguments for ``plan``, progress aside."""
    run = out / "students" / plan.name
    # always resume: a run started (or finished) by hand after the stage was planned is continued, not refused
    return dict(data=data, out=run, soft_labels=soft if plan.teachers else None, pseudo=pseudo_csv if plan.pseudo else None,
                resume=True, recipe=recipe.source, **student_settings(recipe, plan))


def _exports(recipe: Recipe, out: Path, calibration: Path | None) -> dict[str, tuple[Path, Path | None, StudentRecipe]]:
    """Export folder (relative to OUT) -> (student run, calibration folder, its recipe entry); ``export`` is the shipped graph."""
    exports = {}
    for i, student in enumerate(recipe.students):
        run = out / "students" / student.label / "distilled"
        if i == 0:
            exports["export"] = (run, calibration, student)
            if calibration is None:
                continue  # the shipped graph is this student's uncalibrated export
        exports[f"students/{student.label}/export"] = (run, None, student)
    return exports


def _exported(folder: Path, run: Path, recipe: Recipe) -> bool:
    """An export is complete with its manifest, made from ``run`` as its config.json stands now, and, when the
    recipe asks for --check-pi, with its checks (export.* may change between runs).

    A student run replaced by one fit with other settings (a rung's option changed, its old runs moved
    aside) would otherwise keep the old run's graph under the new run's name.
    """
    from distill.training.fit import CONFIG_FILE

    path = folder / "manifest.json"
    if not path.exists():
        return False
    manifest = read_json(path)
    return manifest.get("run_config") == read_json(run / CONFIG_FILE)["config"] and (not recipe.export.check_pi or manifest.get("checks") is not None)


def _tf14_complete(out: Path, exports: dict) -> bool:
    """Every export has its scores, each of the graph now in its folder (a graph exported again is scored again)."""
    path = out / "tf14_eval.json"
    if not path.exists():
        return False
    scores = read_json(path)
    for name in exports:
        graph = sha256_file(out / name / "model.pb")
        if any(scores.get(f"{name}/{split}", {}).get("graph_sha256") != graph for split in ("validation", "testing")):
            return False
    return True


def tf14_evaluate(*, out: Path, data: Path, run: Path, exports: list[str], recipe: Recipe) -> dict:
    """Every exported graph scored on the validation and test splits by TensorFlow 1.4 itself (``tf14_eval.json``)."""
    from distill.calibration.prior_shift import weighted_accuracy
    from distill.calibration.student_calibration import expected_prior
    from distill.compliance.tf14 import run_graph_batch
    from distill.core.metrics import classification_report
    from distill.data.cache import open_dataset
    from distill.data.examples import materialize
    from distill.training.fit import evaluation_examples, load_run

    config, _ = load_run(run)
    dataset = open_dataset(data, progress=False)
    classes = config.labels.classes  # the recipe's word list (data.words): K classes
    prior = expected_prior(recipe.calibrate.expected_mix, np.ones(len(classes)), classes)  # the target words share the rest equally
    graphs = {name: (out / name / "model.pb").read_bytes() for name in exports}
    results: dict[str, Any] = {}
    for split in ("validation", "testing"):
        examples = evaluation_examples(dataset, config, split)
        audio = materialize(dataset, examples)[:, :, None]
        for name in exports:
            probs = run_graph_batch(graphs[name], batch_feed="decoded_sample_data:0", batch=audio,
                                    feeds={"decoded_sample_data:1": np.int32(16000)}, fetches=["labels_softmax:0"])["labels_softmax:0"].reshape(len(examples), -1)
            report = classification_report(examples.labels, probs, classes=classes).to_dict()
            report["graph_sha256"] = hashlib.sha256(graphs[name]).hexdigest()  # which graph these scores are of (see _tf14_complete)
            report["expected_accuracy_at_test_mix"] = float(weighted_accuracy(np.log(probs + 1e-12), examples.labels, prior))
            results[f"{name}/{split}"] = report
            if name == "export" and split == "testing":
                _shipped_pngs(out, examples.labels, probs.argmax(1), report, classes)
    write_json(out / "tf14_eval.json", results)
    return results


def _shipped_pngs(out: Path, labels: np.ndarray, predictions: np.ndarray, report: dict, classes: tuple[str, ...] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from distill.core.labels import CLASSES
    from distill.training.teacher_report import save_confusion_png

    names = classes or CLASSES  # the run's classes (K of them)
    save_confusion_png(out / "confusion.png", labels, predictions, title=f"shipped graph in TF 1.4, test split ({100 * report['accuracy']:.2f}%)",
                       classes=names)
    recall = report.get("per_class_recall", {})
    fig, ax = plt.subplots(figsize=(7, 3.2))
    values = [100 * (recall.get(c) or 0.0) for c in names]
    ax.bar(range(len(names)), values, color="#4878a8")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_ylabel("recall %")
    ax.set_ylim(min(values + [80.0]) - 5, 100)
    ax.set_title("per-class recall of the shipped graph, test split (TF 1.4)")
    fig.tight_layout()
    from distill.core.io import atomic_path

    with atomic_path(out / "recall.png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def write_report(*, out: Path, recipe: Recipe, data: Path, teacher_dirs: list[Path], plans: list[StudentPlan], exports: list[str],
                 timings: dict[str, float], kaggle_labels: Path | None) -> dict[str, Any]:
    """``report.json`` and ``report.md``: a row per teacher (per fold), the ensemble, every student run and exported graph."""
    from distill.training.crossfit import fold_runs

    rows: list[dict[str, Any]] = []
    for d in teacher_dirs:
        fp = _teacher_footprint(out, d)
        for run in fold_runs(d) or [d]:  # a fold group: a row per fold, each trained without one fold of speakers
            m = read_json(run / "metrics.json")
            name = d.name if run == d else f"{d.name} {run.name}"
            rows.append({"kind": "teacher", "model": f"teacher {name}/{m['size']}", "params": m["params"], "float32_bytes": fp["float32_bytes"],
                         "macs": fp["macs"], "pi3_ms": fp["pi3_ms"], "validation": m["validation"]["accuracy"], "test": m["test"]["accuracy"]})
    rep = read_json(out / "teacher_report" / "report.json")
    ens = {r["split"]: r["accuracy"] for r in rep["rows"] if r["model"] == "ensemble"}
    teachers = [r for r in rows if r["kind"] == "teacher"]
    # every member runs on a clip, so sizes and MACs add up; latency does not (threads), so it stays blank
    rows.append({"kind": "ensemble", "model": "teacher ensemble", **{k: sum(r[k] for r in teachers) for k in ("params", "float32_bytes", "macs")},
                 "validation": ens.get("validation"), "test": ens.get("testing")})
    for plan in plans:
        run = out / "students" / plan.name
        if not _done(run):
            continue
        m = read_json(run / "metrics.json")
        fp = m.get("footprint", {})
        kind = "ablation" if plan.ablation else ("distilled" if plan.teachers else "twin")
        rows.append({"kind": kind, "model": f"student {plan.name}", "params": m["params"], "float32_bytes": fp.get("float32_bytes"),
                     "macs": fp.get("macs"), "pi3_ms": fp.get("pi3_ms"), "validation": m["validation"]["accuracy"], "test": m["test"]["accuracy"]})
    tf14_path = out / "tf14_eval.json"
    tf14 = read_json(tf14_path) if tf14_path.exists() else {}
    for name in exports:
        if f"{name}/testing" not in tf14:
            continue
        manifest = read_json(out / name / "manifest.json")
        fp = manifest["footprint"]
        label = "exported graph, shipped (TF 1.4)" if name == "export" else f"exported {name.split('/')[1]} (TF 1.4)"
        rows.append({"kind": "export", "model": label, "folder": name, "params": fp["params"], "graph_bytes": fp["graph_bytes"], "macs": fp["macs"],
                     "pi3_ms": fp["pi3_ms"], "validation": tf14[f"{name}/validation"]["accuracy"], "test": tf14[f"{name}/testing"]["accuracy"],
                     "test_at_expected_mix": tf14[f"{name}/testing"]["expected_accuracy_at_test_mix"],
                     "checks_passed": (manifest.get("checks") or {}).get("passed")})
    tflite = out / TFLITE_DIR / "manifest.json"
    if tflite.exists():  # LiteRT's own interpreter scored it on the same splits (export --format tflite --check)
        manifest = read_json(tflite)
        accuracy = ((manifest.get("checks") or {}).get("measurements") or {}).get("accuracy", {})
        if "testing" in accuracy:
            shipped = next((r for r in rows if r.get("folder") == "export"), {})
            rows.append({"kind": "export", "model": "exported student, LiteRT int8 (LiteRT)", "folder": TFLITE_DIR, "params": shipped.get("params"),
                         "graph_bytes": manifest["bytes"], "macs": shipped.get("macs"), "validation": accuracy["validation"]["int8"],
                         "test": accuracy["testing"]["int8"], "checks_passed": manifest["checks"]["passed"]})
    margins = {}
    for student in recipe.students:
        by_kind = {r["kind"]: r for r in rows if r["model"] in (f"student {student.label}/distilled", f"student {student.label}/twin")}
        if {"distilled", "twin"} <= set(by_kind):
            margins[student.label] = {split: by_kind["distilled"][split] - by_kind["twin"][split] for split in ("validation", "test")}
    report: dict[str, Any] = {"recipe": recipe.name, "data": str(data), "rows": rows, "distilled_minus_twin": margins, "agreement": rep.get("agreement"),
                              "timings_s": dict(timings)}
    if (out / "submission.csv").exists() and kaggle_labels is not None:
        from distill.core.labels import LabelSet
        from distill.submission.scoring import score_submission

        report["submission_agreement_with_labels"] = score_submission(out / "submission.csv", kaggle_labels, classes=LabelSet(recipe.data.words).classes)
    if is_ladder(recipe):
        write_ladder(out=out, recipe=recipe, exports=exports, tf14=tf14)
        report["ladder"] = LADDER_FILES[0]
    write_json(out / "report.json", report)
    write_text(out / "report.md", format_report(report))
    return report


def _teacher_footprint(out: Path, run: Path) -> dict[str, Any]:
    """A teacher's (or fold group's) bytes, MACs and Pi 3 estimate, measured once and kept in OUT/footprints.json.

    Measuring freezes the model (seconds per teacher); a rerun of a finished recipe should not pay it again.
    """
    path = out / "footprints.json"
    cache = read_json(path) if path.exists() else {}
    key = str(run.relative_to(out))
    if key not in cache:
        from distill.compliance.footprint import run_footprint

        fp = run_footprint(run)
        cache[key] = {"float32_bytes": fp.float32_bytes, "macs": fp.macs, "pi3_ms": fp.pi3_ms}
        write_json(path, cache)
    return cache[key]


def format_report(report: dict[str, Any]) -> str:
    def pct(v):
        return "" if v is None else f"{100 * v:.2f}"

    lines = [f"# distill run ({report['recipe']})", "", f"Data: `{report['data']}`", "",
             "| model | params | bytes | MACs | est. Pi 3 ms | validation % | test % | test % at expected mix |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        macs = f"{r['macs'] / 1e6:.1f} M" if r.get("macs") else ""
        ms = f"{r['pi3_ms']:.1f}" if r.get("pi3_ms") is not None else ""
        size = f"{r['graph_bytes']:,} (graph)" if r.get("graph_bytes") else f"{r['float32_bytes']:,} (float32)" if r.get("float32_bytes") else ""
        params = f"{r['params']:,}" if r.get("params") is not None else ""
        lines.append(f"| {r['model']} | {params} | {size} | {macs} | {ms} | {pct(r['validation'])} | {pct(r['test'])} | {pct(r.get('test_at_expected_mix'))} |")
    for label, margin in report["distilled_minus_twin"].items():
        lines += ["", f"Distilled minus twin ({label}): {100 * margin['validation']:+.2f} validation, {100 * margin['test']:+.2f} test (points)."]
    if "submission_agreement_with_labels" in report:
        agreement = report["submission_agreement_with_labels"]
        lines += ["", f"Submission agreement with the given labels: {100 * agreement['accuracy']:.2f}% of {agreement['count']} clips."]
    if report.get("ladder"):
        lines += ["", f"Every student at every seed, distilled and twin, against its estimated Pi 3 latency: [{report['ladder']}]({report['ladder']})."]
    lines += ["", "Stage times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in report["timings_s"].items()), "",
              "![confusion](confusion.png) ![recall](recall.png)", ""]
    return "\n".join(lines)



# --------------------------------------------------------------------------- the student ladder

LADDER_FILES = ("ladder.md", "ladder.json", "ladder.png")
# published points the ladder is drawn against; neither was measured on this toolkit's test split
LADDER_REFERENCES = (
    {"name": "Kaggle winners' Raspberry Pi model", "pi3_ms": 58.0, "accuracy": 0.908,
     "note": "private leaderboard: the Kaggle test set, not this test split"},
    {"name": "BC-ResNet-1", "params": 9200, "pi3_ms": None, "accuracy": 0.966,
     "note": "full Speech Commands v0.01 test set; no Pi time published"},
)


def _spread(values: list[float]) -> dict[str, Any]:
    """Mean and sample sd (None for a single run) of per-seed values, and the values themselves."""
    a = np.asarray(values, dtype=float)
    return {"mean": float(a.mean()), "sd": float(a.std(ddof=1)) if a.size > 1 else None, "runs": [float(v) for v in a]}


def _on_front(rows: list[dict[str, Any]], kind: str) -> list[bool | None]:
    """Per row: no other rung is at least as fast and at least as accurate on test, and better in one (None: not measured)."""
    points = [(r["pi3_ms"], r[kind]["test"]["mean"]) if r.get(kind) and r["pi3_ms"] is not None else None for r in rows]
    return [None if p is None else not any(q is not None and q != p and q[0] <= p[0] and q[1] >= p[1] for q in points) for p in points]


def ladder_rows(*, out: Path, recipe: Recipe, exports: list[str], tf14: dict[str, Any]) -> list[dict[str, Any]]:
    """A row per student (rung) with finished runs, sorted by estimated Pi 3 ms: footprint of its exported graph (seed 0),
    accuracy over its seeds for distilled and twin, and the distilled-minus-twin difference seed by seed."""
    rows = []
    for i, student in enumerate(recipe.students):
        runs: dict[str, dict[int, dict]] = {}
        for kind in ("distilled", "twin"):
            folders = {k: out / "students" / student.label / run_name(kind, k) for k in range(student.seeds)}
            runs[kind] = {k: read_json(f / "metrics.json") for k, f in folders.items() if _done(f)}
        if not runs["distilled"]:
            continue
        # the uncalibrated graph; without calibration the first student's is the shipped export/ itself
        folder = f"students/{student.label}/export"
        if folder not in exports:
            folder = "export" if i == 0 and "export" in exports else None
        manifest = out / folder / "manifest.json" if folder else None
        fp = read_json(manifest)["footprint"] if manifest is not None and manifest.exists() else {}
        fitted = next(iter(runs["distilled"].values()))
        row: dict[str, Any] = {
            "label": student.label, "arch": student.arch, "size": student.size, "seeds": len(runs["distilled"]), "params": fitted["params"],
            "graph_bytes": fp.get("graph_bytes"), "macs": fp.get("macs", fitted.get("footprint", {}).get("macs")),
            "pi3_ms": fp.get("pi3_ms", fitted.get("footprint", {}).get("pi3_ms")), "export": folder,
            "export_test_tf14": tf14.get(f"{folder}/testing", {}).get("accuracy") if folder else None,
        }
        for kind in ("distilled", "twin"):
            got = runs[kind]
            row[kind] = {split: _spread([m[split]["accuracy"] for m in got.values()]) for split in ("validation", "test")} if got else None
        paired = sorted(set(runs["distilled"]) & set(runs["twin"]))
        row["distilled_minus_twin"] = {split: _spread([runs["distilled"][k][split]["accuracy"] - runs["twin"][k][split]["accuracy"] for k in paired])
                                       for split in ("validation", "test")} if paired else None
        rows.append(row)
    rows.sort(key=lambda r: (r["pi3_ms"] is None, r["pi3_ms"] or 0.0))
    for kind in ("distilled", "twin"):
        for row, front in zip(rows, _on_front(rows, kind)):
            row.setdefault("pareto", {})[kind] = front
    return rows


def write_ladder(*, out: Path, recipe: Recipe, exports: list[str], tf14: dict[str, Any]) -> dict[str, Any]:
    """``ladder.json``, ``ladder.md`` and ``ladder.png``: the recipe's students as a latency/accuracy ladder, distilled and twin."""
    ladder = {"recipe": recipe.name, "rows": ladder_rows(out=out, recipe=recipe, exports=exports, tf14=tf14), "references": list(LADDER_REFERENCES)}
    write_json(out / "ladder.json", ladder)
    write_text(out / "ladder.md", format_ladder(ladder))
    ladder_png(out / "ladder.png", ladder)
    return ladder


def _pm(spread: dict[str, Any] | None, *, scale: float = 100.0, sign: str = "") -> str:
    if not spread:
        return ""
    text = f"{scale * spread['mean']:{sign}.2f}"
    return text if spread["sd"] is None else f"{text} ± {scale * spread['sd']:.2f}"


def _ladder_cells(row: dict[str, Any]) -> list[str]:
    def split(kind: str, name: str, **kw) -> str:
        return _pm((row.get(kind) or {}).get(name), **kw)

    front = "/".join({True: "yes", False: "no", None: "-"}[row["pareto"][k]] for k in ("distilled", "twin"))
    return [row["label"], f"{row['params']:,}", f"{row['graph_bytes']:,}" if row["graph_bytes"] else "", f"{row['macs'] / 1e6:.2f} M" if row["macs"] else "",
            f"{row['pi3_ms']:.1f}" if row["pi3_ms"] is not None else "", str(row["seeds"]), split("distilled", "validation"), split("distilled", "test"),
            split("twin", "validation"), split("twin", "test"), split("distilled_minus_twin", "test", sign="+"), front,
            f"{100 * row['export_test_tf14']:.2f}" if row["export_test_tf14"] is not None else ""]


LADDER_HEADER = ["rung", "params", "graph bytes", "MACs", "est. Pi 3 ms", "seeds", "distilled val %", "distilled test %", "twin val %",
                 "twin test %", "distilled - twin test", "Pareto d/t", "TF 1.4 test %"]


def format_ladder(ladder: dict[str, Any]) -> str:
    lines = [f"# Student ladder ({ladder['recipe']})", "",
             "One row per student, fastest first. Footprint: the seed-0 exported graph (8-bit weights where the student has them). "
             "Accuracy: mean ± sample sd over the student's finished seeds (data.seed + k; `seeds` counts them), each run's own validation and test scores; "
             "distilled - twin: points, the runs paired seed by seed. Pareto d/t: whether the distilled and the twin rung are on the front "
             "of test accuracy against Pi 3 ms (no other rung as fast and as accurate). TF 1.4 test: the seed-0 distilled graph, "
             "uncalibrated, scored by TensorFlow 1.4 (tf14_eval.json).", "",
             "| " + " | ".join(LADDER_HEADER) + " |", "|---|" + "---:|" * (len(LADDER_HEADER) - 3) + "---|---:|"]
    lines += ["| " + " | ".join(_ladder_cells(row)) + " |" for row in ladder["rows"]]
    lines += ["", "Published references (on the plot; not measured on this test split):", ""]
    for ref in ladder["references"]:
        what = f"{100 * ref['accuracy']:.1f}%" + (f", {ref['pi3_ms']:g} ms on a Pi 3" if ref["pi3_ms"] else "") + (f", {ref['params']:,} params" if ref.get("params") else "")
        lines.append(f"- {ref['name']}: {what} ({ref['note']}).")
    lines += ["", "![ladder](ladder.png)", ""]
    return "\n".join(lines)


def ladder_table(ladder: dict[str, Any]):
    """The ladder as a terminal table (``distill.core.tables``)."""
    from distill.core.tables import aligned_table

    return aligned_table(LADDER_HEADER, [_ladder_cells(row) for row in ladder["rows"]], right_from=1)


# where a rung's label may go, in points from its point (and its alignment), in order of preference
_LABEL_SPOTS = (((6, 9), "left"), ((6, -9), "left"), ((-6, 9), "right"), ((-6, -9), "right"), ((6, 19), "left"), ((6, -19), "left"),
                ((-6, 19), "right"), ((-6, -19), "right"))


def _words_box(note, renderer):
    """Where an annotation's words land, without its hairline (which runs to the point, so always meets its marker)."""
    from matplotlib.text import Text

    note.update_positions(renderer)
    return Text.get_window_extent(note, renderer)


def _place_labels(ax, labels: list[tuple[str, float, float]], points: list[tuple[float, float]] = ()) -> list:
    """Annotate each (text, x, y) at the first of ``_LABEL_SPOTS`` whose box lies inside the axes and overlaps no
    label placed before it and no marker in ``points`` (rungs a few percent apart in ms, such as three near 9.5 ms, would otherwise
    print over each other); where every spot overlaps, the first. Returns the annotations."""
    from matplotlib.transforms import Bbox

    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    placed = []
    boxes = [Bbox.from_extents(px - 4, py - 4, px + 4, py + 4) for px, py in (ax.transData.transform(p) for p in points)]
    for text, x, y in labels:
        def annotate(spot):
            offset, align = _LABEL_SPOTS[spot]
            # a hairline to the point: a label moved off its first spot can sit nearer another rung
            return ax.annotate(text, (x, y), textcoords="offset points", xytext=offset, fontsize=7, ha=align, va="center",
                               arrowprops={"arrowstyle": "-", "linewidth": 0.5, "color": "#888888", "shrinkA": 0, "shrinkB": 3})

        for spot in range(len(_LABEL_SPOTS)):
            note = annotate(spot)
            box = _words_box(note, renderer)
            if frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1) and not any(box.overlaps(other) for other in boxes):
                break
            note.remove()
        else:
            note = annotate(0)
            box = _words_box(note, renderer)
        placed.append(note)
        boxes.append(box)
    return placed


def ladder_png(path: Path, ladder: dict[str, Any]) -> None:
    """Test accuracy against estimated Pi 3 ms (log axis): the distilled and twin ladders as points with sd error bars, each
    one's Pareto front joined, and the references."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    from distill.core.io import atomic_path

    rows = [r for r in ladder["rows"] if r["pi3_ms"] is not None]
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for kind, color, offset in (("distilled", "#4878a8", 1.0), ("twin", "#d0703c", 1.03)):  # the twin a hair right, so error bars do not hide each other
        mine = [r for r in rows if r.get(kind)]
        if not mine:
            continue
        x = [r["pi3_ms"] * offset for r in mine]
        y = [100 * r[kind]["test"]["mean"] for r in mine]
        err = [100 * (r[kind]["test"]["sd"] or 0.0) for r in mine]
        ax.errorbar(x, y, yerr=err, marker="o", linestyle="none", capsize=3, color=color, label=f"{kind} (mean ± sd over seeds)")
        front = [(xi, yi) for xi, yi, r in zip(x, y, mine) if r["pareto"][kind]]
        if len(front) > 1:  # only the front is joined: a line through every rung would suggest rungs between them
            ax.plot(*zip(*front), linestyle="--", linewidth=1, color=color, label=f"{kind}: Pareto front")
    for ref in ladder["references"]:
        y = 100 * ref["accuracy"]
        params = f", {ref['params'] / 1000:.1f}k params" if ref.get("params") else ""
        label = f"{ref['name']}{params}, {y:.1f}% ({ref['note']})"
        if ref["pi3_ms"] is None:  # no published Pi time: a line across every latency, not a point
            ax.axhline(y, color="#777777", linestyle="--", linewidth=1)
            ax.annotate(label, (0.01, y), xycoords=("axes fraction", "data"), textcoords="offset points", xytext=(0, 3), fontsize=7, color="#555555")
        else:
            ax.plot([ref["pi3_ms"]], [y], marker="*", markersize=12, linestyle="none", color="#6a3d9a")
            note = textwrap.fill(f"{y:.1f}% ({ref['note']})", 36)  # narrow, so it stays clear of the rungs to its left
            ax.annotate(f"{ref['name']}, {ref['pi3_ms']:g} ms\n{note}", (ref["pi3_ms"], y), textcoords="offset points",
                        xytext=(-8, -8), ha="right", va="top", fontsize=7, color="#6a3d9a")
    ax.set_xscale("log")
    plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel("estimated Raspberry Pi 3 ms per clip (log axis)")
    ax.set_ylabel("test accuracy %")
    ax.set_title(f"student ladder ({ladder['recipe']}): test split, references as published")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    # placed last, once the log axis and the layout have fixed where each label lands on the page
    points = [(r["pi3_ms"] * offset, 100 * r[kind]["test"]["mean"]) for r in rows for kind, offset in (("distilled", 1.0), ("twin", 1.03)) if r.get(kind)]
    _place_labels(ax, [(r["label"], r["pi3_ms"], 100 * r["distilled"]["test"]["mean"]) for r in rows], points)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
