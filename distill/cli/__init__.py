"""The ``distill`` command line: one small typer module per command group.

Each command parses its options and calls one keyword-only library function
that does the work and returns a result; nothing here holds library logic.
"""

from __future__ import annotations

import sys

import typer

from distill.cli.root import app
from distill.core.errors import DistillError


@app.command("classes")
def classes_command() -> None:
    """Print the 12 output classes in softmax index order (the order of labels.txt)."""
    from distill.core.labels import CLASSES

    for i, name in enumerate(CLASSES):
        typer.echo(f"{i}\t{name}")


SUBCOMMAND_MODULES = ("calibrate", "data", "demo", "export", "pseudo", "recipe", "run", "student", "submit", "teachers")


def _register_subcommands() -> None:
    # each module adds its sub-app to ``app`` when imported
    import importlib

    for name in SUBCOMMAND_MODULES:
        importlib.import_module(f"distill.cli.{name}")


_register_subcommands()


def main() -> None:
    try:
        app()
    except DistillError as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        sys.exit(2)
