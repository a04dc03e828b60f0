"""``distill calibrate``: fit silence/unknown decisions to the test set's class mix."""

from __future__ import annotations

from pathlib import Path

import typer

from distill.cli import options
from distill.cli.root import app


@app.command("calibrate")
def calibrate_command(
    run: Path = typer.Option(..., "--run", help="A student run folder."),
    unlabeled: Path = typer.Option(..., "--unlabeled", help="The unlabeled test folder (clip_*.wav) whose class mix to calibrate for."),
    out: Path = typer.Option(Path("runs/calibration"), "--out", help="Folder for calibrator.joblib, calibration.json and config.json."),
    tune: list[str] = typer.Option(["silence", "unknown"], "--tune", help="Classes whose logit offsets are tuned by cross-validation, repeatable."),
    cv: int = typer.Option(5, "--cv", min=1, help="Cross-validation folds on the validation split."),
    prior_strength: float = typer.Option(500.0, "--prior-strength", min=0.0, help="Pseudo-clips of a Dirichlet prior at the training mix (MAP-EM): negligible for the real 158,538-clip set, it keeps a small folder's estimate from collapsing classes to 0%. 0 = plain EM."),
    expected_mix: list[str] = typer.Option([], "--expected-mix", help="CLASS=SHARE, repeatable: a class mix known from elsewhere (the Kaggle test set: unknown=0.53, silence=0.09) on which the MAP-EM prior is centred instead of the training mix; other classes keep their training proportions of the rest. Needs --prior-strength > 0."),
    seed: int = options.SEED,
    cache_dir: Path = options.CACHE_DIR,
    quiet: bool = options.QUIET,
) -> None:
    """Estimate the test prior with EM (Saerens et al. 2002), tune offsets on validation, save 12 logit offsets for export."""
    from distill.calibration.student_calibration import calibrate_student
    from distill.core.errors import DistillError

    mix = {}
    for item in expected_mix:
        name, _, share = item.partition("=")
        try:
            mix[name.strip()] = float(share)
        except ValueError:
            raise DistillError(f"--expected-mix {item!r}: expected CLASS=SHARE, e.g. unknown=0.53") from None
    result = calibrate_student(run=run, unlabeled=unlabeled, out=out, tune_classes=tuple(tune), cv=cv, seed=seed, prior_strength=prior_strength,
                               expected_mix=mix or None, cache_dir=cache_dir, progress=not quiet)
    s = result.summary
    typer.echo("estimated test prior: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in s["test_prior"].items()))
    typer.echo("logit offsets:        " + ", ".join(f"{k} {v:+.2f}" for k, v in s["offsets_by_class"].items()))
    typer.echo(f"validation accuracy {100 * result.validation_accuracy_before:.2f}% as trained; expected under the test prior after calibration "
               f"{100 * result.validation_accuracy_after_expected:.2f}%; -> {result.out}")
