"""``distill run``: every stage of a recipe, resumable, from one command."""

from __future__ import annotations

from pathlib import Path

import typer

from distill.cli.root import app


@app.command("run", context_settings={"allow_extra_args": False})
def run_command(
    recipe: str = typer.Argument(..., help="A shipped recipe (`distill recipe list`) or a .toml file."),
    overrides: list[str] = typer.Argument(None, help="Dotted KEY=VALUE overrides of the recipe, e.g. teachers.epochs=10 students.0.epochs=80.", show_default=False),
    data: Path = typer.Option(..., "--data", help="Speech Commands-layout tree (`distill data synth` makes a demo one)."),
    out: Path = typer.Option(..., "--out", help="Folder for every stage's output; rerun the same command to resume it, or another recipe to reuse its teachers and soft labels."),
    kaggle_test: Path = typer.Option(None, "--kaggle-test", help="Folder of unlabeled test clips: pseudo-labels, calibration and the submission."),
    kaggle_labels: Path = typer.Option(None, "--kaggle-labels", help="fname,label CSV for the --kaggle-test clips; the report gives the submission's agreement with it."),
    jobs: int = typer.Option(1, "--jobs", min=1, help="Teachers trained at once (processes)."),
    student_jobs: int = typer.Option(1, "--student-jobs", min=1, help="Students fitted at once (processes, the cores shared out): pays for small "
                                     "students such as the ladder's; a fit is reproducible under the same value."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars (stage lines are still printed)."),
) -> None:
    """Run RECIPE end to end: teachers and fold groups, soft labels, pseudo-labels, students and twins, calibration,
    export with --check-pi, TF 1.4 evaluation, submission, ablations and the report (OUT/report.md; OUT/ladder.md too for
    several students or seeds). Rerunning into an OUT reuses every stage whose recipe keys did not change."""
    import time

    from distill.pipeline.recipe import load_recipe
    from distill.pipeline.run import run_recipe

    resolved = load_recipe(recipe, overrides or ())

    def log(message: str) -> None:
        typer.echo(f"[{time.strftime('%H:%M:%S')}] {message}")

    result = run_recipe(recipe=resolved, data=data, out=out, kaggle_test=kaggle_test, kaggle_labels=kaggle_labels, jobs=jobs, student_jobs=student_jobs,
                        progress=not quiet, log=log)
    typer.echo((result.out / "report.md").read_text())
    if result.report.get("ladder"):
        from distill.cli.root import echo_rich
        from distill.core.io import read_json
        from distill.pipeline.run import ladder_table

        typer.echo(f"student ladder ({result.out / result.report['ladder']}):")
        echo_rich(ladder_table(read_json(result.out / "ladder.json")))
