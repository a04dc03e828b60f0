"""The ``distill`` command line: one small typer module per command group.

Each command parses its options and calls one keyword-only library function
that does the work and returns a result; nothing here holds library logic.
"""

from __future__ import annotations

import sys

import typer

from distill import __version__
from distill.core.errors import DistillError

app = typer.Typer(
    name="distill",
    help="Ensemble distillation for small-footprint keyword spotting (Kaggle TF speech challenge rules).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"distill {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
) -> None:
    """Train teachers, distill a compact student, calibrate, export a TF 1.4 graph, check it and submit."""


@app.command("classes")
def classes_command() -> None:
    """Print the 12 output classes in softmax index order (the order of labels.txt)."""
    from distill.core.labels import CLASSES

    for i, name in enumerate(CLASSES):
        typer.echo(f"{i}\t{name}")


def _register_subcommands() -> None:
    # each module adds its sub-app to ``app``
    from distill.cli import calibrate, data, demo, export, pseudo, student, submit, teachers  # noqa: F401


_register_subcommands()


def main() -> None:
    try:
        app()
    except DistillError as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        sys.exit(2)
