"""``distill demo``: the pipeline end to end on synthesized data."""

from __future__ import annotations

from pathlib import Path

import typer

from . import app


@app.command("demo")
def demo_command(
    out: Path = typer.Option(Path("demo"), "--out", help="Folder for everything the demo makes (data, runs, summary)."),
    speakers: int = typer.Option(40, help="Synthetic speakers in the demo tree."),
    test_clips: int = typer.Option(400, help="Unlabeled test clips with a shifted class mix (scored against their answer key)."),
    seed: int = typer.Option(0, help="Seed for every stage."),
    jobs: int = typer.Option(2, help="Parallel worker processes."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Run the pipeline on synthesized speech (eSpeak NG; a demo, never a competition model) and print a summary."""
    from ..demo import DemoConfig, run_demo

    result = run_demo(out=out, config=DemoConfig(speakers=speakers, test_clips=test_clips, seed=seed, jobs=jobs), progress=not quiet, log=typer.echo)
    typer.echo(result.stats_table.rstrip("\n"))
    typer.echo("")
    for s in result.stages:
        typer.echo(f"{s['stage']:<10} {s['seconds']:>7.1f} s  ok")
    typer.echo(f"summary: {result.out / 'summary.json'}")
