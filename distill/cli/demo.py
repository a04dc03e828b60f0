"""``distill demo``: the pipeline end to end on synthesized data."""

from __future__ import annotations

from pathlib import Path

import typer

from distill.cli.root import app, echo_rich


@app.command("demo")
def demo_command(
    out: Path = typer.Option(Path("demo"), "--out", help="Folder for everything the demo makes (data, runs, summary)."),
    speakers: int = typer.Option(60, min=1, help="Synthetic speakers in the demo tree."),
    takes: int = typer.Option(2, min=1, help="Takes of each word per speaker."),
    test_clips: int = typer.Option(400, min=0, help="Unlabeled test clips with a shifted class mix (scored against their answer key)."),
    teacher_epochs: int = typer.Option(25, min=1, help="Epochs for each teacher."),
    student_epochs: int = typer.Option(30, min=1, help="Epochs for the student and its no-teacher twin."),
    data_only: bool = typer.Option(False, "--data-only", help="Only synthesize and index the data."),
    seed: int = typer.Option(0, min=0, help="Seed for every stage."),
    jobs: int = typer.Option(2, min=1, help="Parallel worker processes."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Run the pipeline on synthesized speech (eSpeak NG; a demo, never a competition model) and print a summary."""
    from distill.pipeline.demo import DemoConfig, model_table, run_demo, stages_table

    config = DemoConfig(speakers=speakers, takes=takes, test_clips=test_clips, seed=seed, jobs=jobs, teacher_epochs=teacher_epochs,
                        student_epochs=student_epochs, full=not data_only)
    result = run_demo(out=out, config=config, progress=not quiet, log=typer.echo)
    echo_rich(result.stats.to_rich())
    typer.echo("")
    if result.table:
        echo_rich(model_table(result.table))
        typer.echo("")
    echo_rich(stages_table(result.stages))
    typer.echo(f"summary: {result.out / 'summary.json'}" + (f", {result.out / 'summary.html'}" if result.table else ""))
