"""``distill teachers``: train large teachers in parallel, predict their soft labels, report."""

from __future__ import annotations

from pathlib import Path

import typer

from distill.cli import app, options
from distill.core.registry import TEACHERS

teachers_app = typer.Typer(no_args_is_help=True, help="Large, unconstrained teacher nets and their soft labels.")
app.add_typer(teachers_app, name="teachers")


def _arch_help() -> str:
    return "Teacher architecture, repeatable: " + ", ".join(TEACHERS.names()) + "."


@teachers_app.command("train")
def train_command(
    arch: list[str] = typer.Option(..., "--arch", help=_arch_help()),
    data: Path = options.DATA,
    out: Path = typer.Option(Path("runs/teachers"), "--out", help="Folder that gets one run folder per architecture."),
    size: str = typer.Option("default", "--size", help="Size preset of every architecture (each file lists its SIZES; 'toy' for tests, 'small' for demos)."),
    epochs: int = options.EPOCHS,
    batch_size: int = options.BATCH,
    lr: float = options.LR,
    warmup_epochs: float = options.WARMUP,
    weight_decay: float = options.WEIGHT_DECAY,
    label_smoothing: float = options.SMOOTHING,
    mixup: float = options.MIXUP,
    keep: str = options.KEEP,
    silence_percentage: float = options.SILENCE,
    unknown_percentage: float = options.UNKNOWN,
    no_augment: bool = options.NO_AUGMENT,
    frontend: str = options.FRONTEND,
    seed: int = options.SEED,
    seeds: int = typer.Option(1, "--seeds", help="Runs per architecture with different seeds: out/<arch>, out/<arch>-s1, ... (more ensemble members)."),
    folds: int = typer.Option(1, "--folds", help="Cross-fitting: K > 1 trains each teacher K times, out/<arch>-cf/fold<k> without the k-th fold of training speakers, so `teachers predict` labels every training clip with a run that never fitted it (K x the training cost)."),
    jobs: int = typer.Option(1, "--jobs", help="Teachers trained at once (joblib processes; threads are split between them)."),
    backend: str = typer.Option("loky", "--backend", help="joblib backend: loky (local processes) or dask (a dask.distributed cluster, see --scheduler)."),
    scheduler: str = typer.Option(None, "--scheduler", help="dask.distributed scheduler address for --backend dask (default: start a LocalCluster)."),
    skip_bad: bool = options.SKIP_BAD,
    cache_dir: Path = options.CACHE_DIR,
    resume: bool = options.RESUME,
) -> None:
    """Train one or more teachers (in parallel with --jobs); each run folder gets config, checkpoints, metrics and TensorBoard logs."""
    from distill.training.teacher_fit import train_teachers

    results = train_teachers(
        archs=arch, data=data, out=out, size=size,
        schedule=options.schedule_config(epochs=epochs, batch_size=batch_size, lr=lr, warmup_epochs=warmup_epochs, weight_decay=weight_decay, label_smoothing=label_smoothing, mixup=mixup, keep=keep),
        mix=options.mix_config(silence_percentage=silence_percentage, unknown_percentage=unknown_percentage),
        augment=options.augment_config(no_augment=no_augment), frontend=options.frontend_config(frontend), seed=seed, seeds=seeds, folds=folds,
        jobs=jobs, backend=backend, scheduler=scheduler, skip_bad=skip_bad, cache_dir=cache_dir, resume=resume,
    )
    for r in results:
        m = r["metrics"]
        typer.echo(f"{m['arch']:<10} params {m['params']:>9,}  val {100 * m['validation']['accuracy']:.2f}%  test {100 * m['test']['accuracy']:.2f}%  ({r['seconds']:.0f} s) -> {r['run_dir']}")


@teachers_app.command("predict")
def predict_command(
    teacher: list[Path] = typer.Option(..., "--teacher", help="A teacher run folder, or a fold group from `teachers train --folds K` (out-of-fold labels on training clips); repeatable, all of them form the ensemble."),
    data: Path = options.DATA,
    out: Path = typer.Option(Path("runs/soft_labels"), "--out", help="Soft-label folder to write (re-running resumes)."),
    views: int = typer.Option(4, "--views", help="Views per example: view 0 is the clean clip, views 1.. are seeded augmentations."),
    split: list[str] = typer.Option(["training", "validation", "testing"], "--split", help="Splits to label, repeatable."),
    unlabeled: Path = typer.Option(None, "--unlabeled", help="Also label an unlabeled Kaggle-style folder of clip_*.wav (pseudo-label candidates)."),
    silence_percentage: float = options.SILENCE,
    unknown_percentage: float = options.UNKNOWN,
    seed: int = options.SEED,
    cache_dir: Path = options.CACHE_DIR,
    quiet: bool = options.QUIET,
    reuse: Path = typer.Option(None, "--reuse", help="A soft-label folder made with the same options (views, splits, mix, seed): the teachers it shares with this ensemble are linked in, not predicted again. Adds a member for the cost of one."),
    view_masks: bool = options.VIEW_MASKS,
) -> None:
    """Write per-teacher logits (float16) for K augmented views of every example, aligned to the data index."""
    from distill.training.soft_labels import predict_soft_labels

    result = predict_soft_labels(
        teacher_runs=teacher, data=data, out=out, views=views, splits=tuple(split), unlabeled=unlabeled,
        mix=options.mix_config(silence_percentage=silence_percentage, unknown_percentage=unknown_percentage),
        augment=options.augment_config(no_augment=False, view_masks=view_masks), seed=seed, cache_dir=cache_dir, progress=not quiet, reuse=reuse,
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
    typer.echo(report.to_table())
    typer.echo("wrote " + ", ".join(str(f) for f in report.files))
