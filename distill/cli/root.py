"""The root ``distill`` typer app, its global options, and how commands print tables.

Command modules import ``app`` from here and register themselves on it; ``distill.cli`` imports them all.
"""

from __future__ import annotations

import typer

from distill import __version__

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
    verbose: bool = typer.Option(False, "--verbose", help="Keep TensorFlow's own log lines (start-up notices, C++ INFO and WARNING logs, deprecation warnings); give it before the command: distill --verbose teachers train ..."),
) -> None:
    """Train teachers, distill a compact student, calibrate, export a TF 1.4 graph, check it and submit."""
    # Nothing to do here: TensorFlow reads its log settings when it loads, so distill._entry.main acts on
    # --verbose from sys.argv before this parser runs (and before any command can import TensorFlow).


def echo_rich(renderable) -> None:
    """Print a rich renderable (tables) on stdout: styled on a terminal; otherwise plain aligned text with
    no ANSI codes, wide enough that no table wraps (``distill.core.tables.plain_text``), for logs and pipes."""
    from rich.console import Console

    console = Console(highlight=False)
    if console.is_terminal:
        console.print(renderable, crop=False)  # a line of text wider than the terminal wraps there, not cut off
    else:
        from distill.core.tables import plain_text

        typer.echo(plain_text(renderable), nl=False)
