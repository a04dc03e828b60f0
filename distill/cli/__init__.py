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
def classes_command(
    words: str = typer.Option(None, "--words", help="Target words, comma-separated: the classes of that list (default: the Kaggle ten)."),
) -> None:
    """Print the output classes in softmax index order (the order of labels.txt): 12 for the Kaggle words, len(words) + 2 for --words."""
    from distill.core.labels import KAGGLE, LabelSet, parse_words

    given = parse_words(words)
    for i, name in enumerate((LabelSet(given) if given is not None else KAGGLE).classes):
        typer.echo(f"{i}\t{name}")


SUBCOMMAND_MODULES = ("calibrate", "data", "demo", "export", "pseudo", "recipe", "run", "student", "submit", "teachers")


def _register_subcommands() -> None:
    # each module adds its sub-app to ``app`` when imported
    import importlib

    for name in SUBCOMMAND_MODULES:
        importlib.import_module(f"distill.cli.{name}")


_register_subcommands()


INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command stopped with Ctrl-C
GROUPS = ("data", "pseudo", "recipe", "student", "teachers")  # command groups: their subcommand is the next word


def command_path(argv: list[str]) -> tuple[str, ...]:
    """The command a ``distill`` argument list runs, e.g. ("student", "fit"); root options (flags) are skipped."""
    words = [a for a in argv if not a.startswith("-")][:2]
    return tuple(words if words and words[0] in GROUPS else words[:1])


def interrupt_hint(argv: list[str]) -> str:
    """The line a Ctrl-C ends with: how to go on, true for the command that was running."""
    command = command_path(argv)
    if command in (("student", "fit"), ("teachers", "train")):
        if "--resume" in argv:
            return "interrupted; run the same command again to continue from the last checkpoint"
        return "interrupted; run the same command with --resume to continue from the last checkpoint"
    if command == ("submit",):
        if "--no-resume" in argv:
            return "interrupted; run the same command without --no-resume to resume from the rows already written"
        return "interrupted; run the same command again to resume from the rows already written"
    if command in (("teachers", "predict"), ("run",)):
        return "interrupted; run the same command again to resume"
    if command == ("data", "fetch"):
        return "interrupted; run the same command again to resume the download"
    return "interrupted; run the same command again to redo it"


def main() -> None:
    try:
        try:
            app()
        except KeyboardInterrupt:  # raised outside typer's own handling of it (which exits 130 without a word)
            sys.exit(INTERRUPTED)
    except DistillError as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except SystemExit as done:
        if done.code == INTERRUPTED:
            typer.secho(interrupt_hint(sys.argv[1:]), fg=typer.colors.YELLOW, err=True)
        raise
