"""``distill teachers``: train large teachers in parallel, predict their soft labels, report."""

from __future__ import annotations

from pathlib import Path

import typer

from distill.cli import options
from distill.cli.root import app, echo_rich
from distill.core.registry import TEACHERS

teachers_app = typer.Typer(no_args_is_help=True, help="Large, unconstrained teacher nets and their soft labels.")
app.add_typer(teachers_app, name="teachers")


def _arch_help() -> str:
    return "Teacher architecture, repeatable: " + ", ".join(TEACHERS.names()) + "."


TRAIN_FLAGS = {
    "teachers.families": "--arch", "teachers.size": "--size", "teachers.epochs": "--epochs", "teachers.batch_size": "--batch-size",
    "teachers.learning_rate": "--lr", "teachers.label_smoothing": "--label-smoothing", "teachers.keep": "--keep", "teachers.seeds": "--seeds",
    "teachers.folds": "--folds", "data.silence_percentage": "--silence-percentage", "data.unknown_percentage": "--unknown-percentage", "data.seed": "--seed",
    "data.words": "--words", "teachers.precision": "--precision",
}
PREDICT_FLAGS = {"predict.views": "--views", "predict.view_masks": "--view-masks", "data.silence_percentage": "--silence-percentage",
                 "data.unknown_percentage": "--unknown-percentage", "data.seed": "--seed", "data.words": "--words"}


@teachers_app.command("train")
def train_command(
    recipe: str = options.RECIPE,
    arch: list[str] = options.recipe_option("teachers.families", "--arch", _arch_help()),
    data: Path = options.DATA,
    out: Path = typer.Option(Path("runs/teachers"), "--out", help="Folder that gets one run folder per architecture."),
    size: str = options.recipe_option("teachers.size", "--size", "Size preset of every architecture (each file lists its SIZES; 'toy' for tests, 'small' for demos)."),
    epochs: int = options.recipe_option("teachers.epochs", "--epochs", "Training epochs."),
    batch_size: int = options.recipe_option("teachers.batch_size", "--batch-size", "Examples per step."),
    lr: float = options.recipe_option("teachers.learning_rate", "--lr", "Peak learning rate (linear warm-up, then cosine decay)."),
    warmup_epochs: float = options.WARMUP,
    weight_decay: float = options.WEIGHT_DECAY,
    label_smoothing: float = options.recipe_option("teachers.label_smoothing", "--label-smoothing", "Label smoothing of the hard-label loss."),
    mixup: float = options.MIXUP,
    precision: str = options.precision_option("teachers.precision"),
    keep: str = options.recipe_option("teachers.keep", "--keep", "Checkpoint the run stands for: best = the best validation epoch, last = the end of the schedule."),
    silence_percentage: float = options.SILENCE_PERCENTAGE,
    unknown_percentage: float = options.UNKNOWN_PERCENTAGE,
    no_augment: bool = options.NO_AUGMENT,
    frontend: str = options.FRONTEND,
    seed: int = options.recipe_option("data.seed", "--seed", "Seed for initialisation, example order and augmentation."),
    words: str = options.words_option(),
    seeds: int = options.recipe_option("teachers.seeds", "--seeds", "Runs per architecture with different seeds: out/<arch>, out/<arch>-s1, ... (more ensemble members)."),
    folds: int = options.recipe_option("teachers.folds", "--folds", "Cross-fitting: K > 1 also trains each teacher K times, out/<arch>-cf/fold<k> without the k-th fold of training speakers, so `teachers predict` labels every training clip with a run that never fitted it (K x the training cost); 1 = off."),
    jobs: int = typer.Option(1, "--jobs", min=1, help="Teachers trained at once (joblib processes; threads are split between them)."),
    backend: str = typer.Option("loky", "--backend", help="joblib backend: loky (local processes) or dask (a dask.distributed cluster, see --scheduler)."),
    scheduler: str = typer.Option(None, "--scheduler", help="dask.distributed scheduler address for --backend dask (default: start a LocalCluster)."),
    skip_bad: bool = options.SKIP_BAD,
    cache_dir: Path = options.CACHE_DIR,
    resume: bool = options.RESUME,
) -> None:
    """Train one or more teachers (in parallel with --jobs); each run folder gets config, checkpoints, metrics and TensorBoard logs.

    Every option left out takes the recipe's value (--recipe, default: the default recipe). With --folds K > 1 each
    teacher is trained on all training speakers (out/<arch>) and as a K-fold group (out/<arch>-cf), as `distill run` does."""
    from distill.pipeline.recipe import apply_options, mix_config, schedule_config, teacher_augment_config
    from distill.training.teacher_fit import train_teachers

    given = {"teachers.families": tuple(arch) if arch else None, "teachers.size": size, "teachers.epochs": epochs, "teachers.batch_size": batch_size,
             "teachers.learning_rate": lr, "teachers.label_smoothing": label_smoothing, "teachers.keep": keep, "teachers.seeds": seeds, "teachers.folds": folds,
             "data.silence_percentage": silence_percentage, "data.unknown_percentage": unknown_percentage, "data.seed": seed,
             "data.words": options.words_tuple(words), "teachers.precision": precision}
    resolved, source = apply_options(recipe, given, TRAIN_FLAGS)
    t = resolved.teachers
    results = []
    for k in (t.folds, 1) if t.folds > 1 else (1,):  # fold groups first: a K the data cannot fill is refused before any training
        results += train_teachers(
            archs=list(t.families), data=data, out=out, size=t.size, schedule=schedule_config(t, warmup_epochs=warmup_epochs, weight_decay=weight_decay, mixup_alpha=mixup),
            mix=mix_config(resolved.data), augment=teacher_augment_config(resolved, no_augment=no_augment), frontend=options.frontend_config(frontend),
            seed=resolved.data.seed, seeds=t.seeds, folds=k, jobs=jobs, backend=backend, scheduler=scheduler, skip_bad=skip_bad, cache_dir=cache_dir,
            resume=resume, recipe=source, words=resolved.data.words,
        )
    if results:
        from distill.core.tables import aligned_table

        echo_rich(aligned_table(
            ["teacher", "params", "val", "test", "seconds", "run folder"],
            [[r["metrics"]["arch"], f"{r['metrics']['params']:,}", f"{100 * r['metrics']['validation']['accuracy']:.2f}%",
              f"{100 * r['metrics']['test']['accuracy']:.2f}%", f"{r['seconds']:.0f}", r["run_dir"]] for r in results],
            right_from=1, right_to=5,
        ))


@teachers_app.command("predict")
def predict_command(
    teacher: list[Path] = typer.Option(..., "--teacher", help="A teacher run folder, or a fold group from `teachers train --folds K` (out-of-fold labels on training clips); repeatable, all of them form the ensemble."),
    data: Path = options.DATA,
    out: Path = typer.Option(Path("runs/soft_labels"), "--out", help="Soft-label folder to write (re-running resumes)."),
    recipe: str = options.RECIPE,
    views: int = options.recipe_option("predict.views", "--views", "Views per example: view 0 is the clean clip, views 1.. are seeded augmentations."),
    split: list[str] = typer.Option(["training", "validation", "testing"], "--split", help="Splits to label, repeatable."),
    unlabeled: Path = typer.Option(None, "--unlabeled", help="Also label an unlabeled Kaggle-style folder of clip_*.wav (pseudo-label candidates)."),
    silence_percentage: float = options.SILENCE_PERCENTAGE,
    unknown_percentage: float = options.UNKNOWN_PERCENTAGE,
    seed: int = options.recipe_option("data.seed", "--seed", "Seed of the augmented views."),
    words: str = options.words_option(options.WORDS_HELP + " The teachers must have been trained on this list (teachers of another list are refused, naming both)."),
    cache_dir: Path = options.CACHE_DIR,
    quiet: bool = options.QUIET,
    reuse: Path = typer.Option(None, "--reuse", help="A soft-label folder made with the same options (views, splits, mix, seed): the teachers it shares with this ensemble are linked in, not predicted again. Adds a member for the cost of one."),
    view_masks: bool = options.recipe_option("predict.view_masks", "--view-masks/--no-view-masks", "SpecAugment-like masks inside every augmented view's waveform (2 silent spans up to 100 ms, 2 removed bands up to 340 mel), so teachers label the masked clip the student sees; costs about 0.5 ms per clip."),
) -> None:
    """Write per-teacher logits (float16) for K augmented views of every example, aligned to the data index.

    Every option left out takes the recipe's value (--recipe, default: the default recipe)."""
    from distill.pipeline.recipe import apply_options, augment_config, mix_config
    from distill.training.soft_labels import predict_soft_labels

    given = {"predict.views": views, "predict.view_masks": view_masks, "data.silence_percentage": silence_percentage,
             "data.unknown_percentage": unknown_percentage, "data.seed": seed, "data.words": options.words_tuple(words)}
    resolved, _ = apply_options(recipe, given, PREDICT_FLAGS)
    result = predict_soft_labels(
        teacher_runs=teacher, data=data, out=out, views=resolved.predict.views, splits=tuple(split), unlabeled=unlabeled, mix=mix_config(resolved.data),
        augment=augment_config(resolved.predict), seed=resolved.data.seed, cache_dir=cache_dir, progress=not quiet, reuse=reuse,
        words=resolved.data.words,
    )
    typer.echo(f"soft labels of {', '.join(result.teachers)} in {result.out}: " + ", ".join(f"{k} {v}" for k, v in result.counts.items()))


@teachers_app.command("report")
def report_command(
    soft_labels: Path = typer.Argument(..., help="A folder written by `distill teachers predict`."),
    out: Path = typer.Option(None, "--out", help="Where report.json, report.txt and confusion PNGs go (default: the soft-label folder)."),
    temperature: float = typer.Option(1.0, "--temperature", help="Temperature of the ensemble's averaged softmax."),
    split: list[str] = typer.Option(["validation", "testing"], "--split", help="Labelled splits to score, repeatable: training, validation, testing. On training, a mean top probability near the label-smoothing ceiling means a teacher memorised what it would teach from."),
    member: list[str] = typer.Option([], "--member", help="Report only these teachers of the folder (by name, repeatable) and their ensemble: compare candidate ensembles from one prediction. Default: all."),
) -> None:
    """Per-teacher and ensemble accuracy (clean view), mean top probability (all views), per-class recall, teacher agreement and confusion-matrix PNGs."""
    from distill.training.teacher_report import teacher_report

    report = teacher_report(soft_labels=soft_labels, out=out, temperature=temperature, splits=tuple(split), members=tuple(member) or None)
    echo_rich(report.to_rich())
    typer.echo("wrote " + ", ".join(str(f) for f in report.files))
