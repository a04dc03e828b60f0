"""``distill student``: fit the compact model that ships."""

from __future__ import annotations

from pathlib import Path

import typer

from distill.cli import options
from distill.cli.root import app
from distill.core.registry import STUDENTS

student_app = typer.Typer(no_args_is_help=True, help="Compact students that meet the competition rules, distilled from the teachers.")
app.add_typer(student_app, name="student")

# recipe key -> option name, for error messages that name what the user typed
FLAGS = {
    "students.0.arch": "--arch", "students.0.size": "--size", "students.0.alpha": "--alpha", "students.0.temperature": "--temperature",
    "students.0.max_views": "--max-views", "students.0.max_mb": "--max-mb", "students.0.max_ms": "--max-ms", "students.0.weight_bits": "--weight-bits",
    "students.0.epochs": "--epochs", "students.0.batch_size": "--batch-size", "students.0.learning_rate": "--lr",
    "students.0.label_smoothing": "--label-smoothing", "students.0.keep": "--keep", "students.0.feature_masks": "--feature-masks",
    "students.0.frontend": "--frontend", "data.silence_percentage": "--silence-percentage", "data.unknown_percentage": "--unknown-percentage",
    "data.seed": "--seed", "predict.view_masks": "--view-masks", "data.words": "--words", "students.0.precision": "--precision",
}


@student_app.command("fit")
def fit_command(
    recipe: str = options.RECIPE,
    arch: str = options.recipe_option("students.0.arch", "--arch", "Student architecture: " + ", ".join(STUDENTS.names()) + "."),
    data: Path = options.DATA,
    out: Path = typer.Option(Path("runs/student"), "--out", help="Run folder for the student."),
    soft_labels: Path = typer.Option(None, "--soft-labels", help="Folder from `distill teachers predict` (the teachers' views and soft labels)."),
    no_teachers: bool = typer.Option(False, "--no-teachers", help="Hard labels only: the no-teacher twin that shows what distillation buys."),
    size: str = options.recipe_option("students.0.size", "--size", "Size preset of the architecture (see its SIZES; 'toy' for tests); with another --arch than the recipe's, 'default'."),
    alpha: float = options.recipe_option("students.0.alpha", "--alpha", "Weight of the hard-label loss; 1 - alpha goes to KL(teachers_T || student_T) x T^2."),
    temperature: float = options.recipe_option("students.0.temperature", "--temperature", "Softmax temperature of teachers and student in the KD term."),
    max_views: int = options.recipe_option("students.0.max_views", "--max-views", "Use only the first N stored views (0 = all; 1 = clean clips only)."),
    online: bool = typer.Option(False, "--online", help="Run the teachers on every freshly augmented batch instead of using stored views (slower)."),
    pseudo: Path = typer.Option(None, "--pseudo", help="Pseudo-label CSV from `distill pseudo select` (review decisions beside it are applied)."),
    max_mb: float = options.recipe_option("students.0.max_mb", "--max-mb", "Refuse at start if the stored weights (at --weight-bits) exceed this many MB; 0 = no limit."),
    max_ms: float = options.recipe_option("students.0.max_ms", "--max-ms", "Refuse at start if the estimated Raspberry Pi 3 latency exceeds this many ms; 0 = no limit."),
    weight_bits: int = options.recipe_option("students.0.weight_bits", "--weight-bits", "Bits per stored weight for --max-mb: 32, or 8 for a student you will export with --quantize-weights."),
    epochs: int = options.recipe_option("students.0.epochs", "--epochs", "Training epochs."),
    batch_size: int = options.recipe_option("students.0.batch_size", "--batch-size", "Examples per step."),
    lr: float = options.recipe_option("students.0.learning_rate", "--lr", "Peak learning rate (linear warm-up, then cosine decay)."),
    warmup_epochs: float = options.WARMUP,
    weight_decay: float = options.WEIGHT_DECAY,
    label_smoothing: float = options.recipe_option("students.0.label_smoothing", "--label-smoothing", "Label smoothing of the hard-label term (the soft term already smooths)."),
    mixup: float = options.MIXUP,
    precision: str = options.precision_option("students.0.precision"),
    keep: str = options.recipe_option("students.0.keep", "--keep", "Checkpoint the run stands for: best = the best validation epoch, last = the end of the schedule."),
    feature_masks: bool = options.recipe_option("students.0.feature_masks", "--feature-masks/--no-feature-masks", "SpecAugment time/frequency masks on the student's features while it trains (teachers' labels stay those of the unmasked clip); no change to the exported graph."),
    silence_percentage: float = options.SILENCE_PERCENTAGE,
    unknown_percentage: float = options.UNKNOWN_PERCENTAGE,
    no_augment: bool = options.NO_AUGMENT,
    view_masks: bool = options.recipe_option("predict.view_masks", "--view-masks/--no-view-masks", "Masks inside the augmented views' waveforms (see `teachers predict --view-masks`): for --no-teachers, the twin of a student distilled from such views; a distilled student takes its views from --soft-labels and refuses soft labels made without them."),
    frontend: str = options.recipe_option("students.0.frontend", "--frontend", f"Front-end override for spectral models: {', '.join(options.FRONTEND_NAMES)} (empty: each architecture's own)."),
    seed: int = options.recipe_option("data.seed", "--seed", "Seed for initialisation, example order and augmentation."),
    words: str = options.words_option(options.WORDS_HELP + " --soft-labels of another list are refused, naming both."),
    skip_bad: bool = options.SKIP_BAD,
    cache_dir: Path = options.CACHE_DIR,
    resume: bool = options.RESUME,
    quiet: bool = options.QUIET,
) -> None:
    """Fit a student: distilled from stored teacher views (default), online, or on hard labels (--no-teachers).

    Every option left out takes the recipe's value (--recipe, default: the default recipe)."""
    from distill.core.errors import DistillError
    from distill.pipeline.recipe import apply_options, augment_config, frontend_config, mix_config, schedule_config
    from distill.training.student_fit import fit_student

    if no_teachers == (soft_labels is not None):
        raise DistillError("pass exactly one of --soft-labels DIR (distillation) or --no-teachers (hard labels only)")
    if arch is not None and size is None:
        from distill.pipeline.recipe import load_recipe

        if load_recipe(recipe or "default").students[0].arch != arch:
            size = "default"  # the recipe's size belongs to its own architecture
    given = {"students.0.arch": arch, "students.0.size": size, "students.0.alpha": alpha, "students.0.temperature": temperature,
             "students.0.max_views": max_views, "students.0.max_mb": max_mb, "students.0.max_ms": max_ms, "students.0.weight_bits": weight_bits,
             "students.0.epochs": epochs, "students.0.batch_size": batch_size, "students.0.learning_rate": lr, "students.0.label_smoothing": label_smoothing,
             "students.0.keep": keep, "students.0.feature_masks": feature_masks, "students.0.frontend": frontend, "data.silence_percentage": silence_percentage,
             "data.unknown_percentage": unknown_percentage, "data.seed": seed, "predict.view_masks": view_masks,
             "data.words": options.words_tuple(words), "students.0.precision": precision}
    resolved, source = apply_options(recipe, given, FLAGS)
    s = resolved.students[0]
    result = fit_student(
        arch=s.arch, data=data, out=out, soft_labels=soft_labels, size=s.size, alpha=s.alpha, temperature=s.temperature, max_views=s.max_views,
        online=online, pseudo=pseudo, max_mb=s.max_mb or None, max_ms=s.max_ms or None, weight_bits=s.weight_bits, feature_masks=s.feature_masks,
        schedule=schedule_config(s, warmup_epochs=warmup_epochs, weight_decay=weight_decay, mixup_alpha=mixup),
        mix=mix_config(resolved.data), augment=augment_config(resolved.predict, no_augment=no_augment), frontend=frontend_config(s),
        seed=resolved.data.seed, skip_bad=skip_bad, cache_dir=cache_dir, resume=resume, progress=not quiet, recipe=source,
        words=resolved.data.words,
    )
    m = result.metrics
    if result.finished_before:
        typer.echo(f"{result.run_dir} had already finished: nothing trained; its metrics.json as it stands")
    typer.echo(f"{s.arch}/{s.size}: params {m['params']:,}  val {100 * m['validation']['accuracy']:.2f}%  test {100 * m['test']['accuracy']:.2f}%  -> {result.run_dir}")
    if "footprint" in m:
        fp = m["footprint"]
        typer.echo(f"footprint: {fp['megabytes']:.3f} MB float32 ({fp['int8_bytes'] / 1e6:.3f} MB at 8 bits), {fp['macs'] / 1e6:.1f} M MACs, estimated Pi 3 {fp['pi3_ms']:.1f} ms (+-{100 * fp['pi3_loo_error']:.0f}%)")
