"""``distill student``: fit the compact model that ships."""

from __future__ import annotations

from pathlib import Path

import typer

from distill.cli import app, options
from distill.core.registry import STUDENTS

student_app = typer.Typer(no_args_is_help=True, help="Compact students that meet the competition rules, distilled from the teachers.")
app.add_typer(student_app, name="student")


@student_app.command("fit")
def fit_command(
    arch: str = typer.Option(..., "--arch", help="Student architecture: " + ", ".join(STUDENTS.names()) + "."),
    data: Path = options.DATA,
    out: Path = typer.Option(Path("runs/student"), "--out", help="Run folder for the student."),
    soft_labels: Path = typer.Option(None, "--soft-labels", help="Folder from `distill teachers predict` (the teachers' views and soft labels)."),
    no_teachers: bool = typer.Option(False, "--no-teachers", help="Hard labels only: the no-teacher twin that shows what distillation buys."),
    size: str = typer.Option("default", "--size", help="Size preset of the architecture (see its SIZES; 'toy' for tests)."),
    alpha: float = typer.Option(0.3, "--alpha", help="Weight of the hard-label loss; 1 - alpha goes to KL(teachers_T || student_T) x T^2."),
    temperature: float = typer.Option(4.0, "--temperature", help="Softmax temperature of teachers and student in the KD term."),
    max_views: int = typer.Option(0, "--max-views", help="Use only the first N stored views (0 = all; 1 = clean clips only)."),
    online: bool = typer.Option(False, "--online", help="Run the teachers on every freshly augmented batch instead of using stored views (slower)."),
    pseudo: Path = typer.Option(None, "--pseudo", help="Pseudo-label CSV from `distill pseudo select` (review decisions beside it are applied)."),
    max_mb: float = typer.Option(None, "--max-mb", help="Refuse at start if the stored weights (at --weight-bits) exceed this many MB."),
    max_ms: float = typer.Option(None, "--max-ms", help="Refuse at start if the estimated Raspberry Pi 3 latency exceeds this many ms."),
    weight_bits: int = typer.Option(32, "--weight-bits", help="Bits per stored weight for --max-mb: 32, or 8 for a student you will export with --quantize-weights."),
    epochs: int = options.EPOCHS,
    batch_size: int = options.BATCH,
    lr: float = options.LR,
    warmup_epochs: float = options.WARMUP,
    weight_decay: float = options.WEIGHT_DECAY,
    label_smoothing: float = typer.Option(0.0, "--label-smoothing", help="Label smoothing of the hard-label term (the soft term already smooths)."),
    mixup: float = options.MIXUP,
    keep: str = options.KEEP,
    feature_masks: bool = typer.Option(False, "--feature-masks", help="SpecAugment time/frequency masks on the student's features while it trains (teachers' labels stay those of the unmasked clip); no change to the exported graph."),
    silence_percentage: float = options.SILENCE,
    unknown_percentage: float = options.UNKNOWN,
    no_augment: bool = options.NO_AUGMENT,
    view_masks: bool = typer.Option(False, "--view-masks", help="Masks inside the augmented views' waveforms (see `teachers predict --view-masks`): for --no-teachers, the twin of a student distilled from such views; a distilled student takes its views from --soft-labels and refuses soft labels made without them."),
    frontend: str = options.FRONTEND,
    seed: int = options.SEED,
    skip_bad: bool = options.SKIP_BAD,
    cache_dir: Path = options.CACHE_DIR,
    resume: bool = options.RESUME,
    quiet: bool = options.QUIET,
) -> None:
    """Fit a student: distilled from stored teacher views (default), online, or on hard labels (--no-teachers)."""
    from distill.core.errors import DistillError
    from distill.training.student_fit import fit_student

    if no_teachers == (soft_labels is not None):
        raise DistillError("pass exactly one of --soft-labels DIR (distillation) or --no-teachers (hard labels only)")
    result = fit_student(
        arch=arch, data=data, out=out, soft_labels=soft_labels, size=size, alpha=alpha, temperature=temperature, max_views=max_views,
        online=online, pseudo=pseudo, max_mb=max_mb, max_ms=max_ms, weight_bits=weight_bits, feature_masks=feature_masks,
        schedule=options.schedule_config(epochs=epochs, batch_size=batch_size, lr=lr, warmup_epochs=warmup_epochs, weight_decay=weight_decay, label_smoothing=label_smoothing, mixup=mixup, keep=keep),
        mix=options.mix_config(silence_percentage=silence_percentage, unknown_percentage=unknown_percentage),
        augment=options.augment_config(no_augment=no_augment, view_masks=view_masks), frontend=options.frontend_config(frontend),
        seed=seed, skip_bad=skip_bad, cache_dir=cache_dir, resume=resume, progress=not quiet,
    )
    m = result.metrics
    typer.echo(f"{arch}/{size}: params {m['params']:,}  val {100 * m['validation']['accuracy']:.2f}%  test {100 * m['test']['accuracy']:.2f}%  -> {result.run_dir}")
    if "footprint" in m:
        fp = m["footprint"]
        typer.echo(f"footprint: {fp['megabytes']:.3f} MB float32 ({fp['int8_bytes'] / 1e6:.3f} MB at 8 bits), {fp['macs'] / 1e6:.1f} M MACs, estimated Pi 3 {fp['pi3_ms']:.1f} ms (+-{100 * fp['pi3_loo_error']:.0f}%)")
