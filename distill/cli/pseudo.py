"""``distill pseudo``: pick confident pseudo-labels from the teachers' soft labels and review them in a browser."""

from __future__ import annotations

from pathlib import Path

import typer

from distill.cli.root import app

pseudo_app = typer.Typer(no_args_is_help=True, help="Pseudo-labels for unlabeled clips: select confident ones, review them in a browser.")
app.add_typer(pseudo_app, name="pseudo")


@pseudo_app.command("select")
def select_command(
    soft_labels: Path = typer.Argument(..., help="A soft-label folder written by `distill teachers predict --unlabeled FOLDER`."),
    out: Path = typer.Option(Path("runs/pseudo.csv"), "--out", help="Pseudo-label CSV to write; its settings go to <stem>.json beside it."),
    threshold: float = typer.Option(0.6, "--threshold", help="Keep clips whose ensemble top probability is at least this."),
    class_threshold: list[str] = typer.Option(None, "--class-threshold", help="CLASS=P: a threshold for one class (e.g. unknown=0.9), repeatable."),
    min_agreement: float = typer.Option(1.0, "--min-agreement", help="Fraction of teachers whose top class must equal the ensemble's (1.0: all)."),
    max_per_class: int = typer.Option(None, "--max-per-class", help="Keep at most this many clips per class, the most confident ones."),
    temperature: float = typer.Option(1.0, "--temperature", help="Temperature of the ensemble's averaged softmax."),
) -> None:
    """Select confidently labelled unlabeled clips (clean view) the teachers agree on."""
    from distill.training.pseudo import parse_class_thresholds, select_pseudo_labels

    result = select_pseudo_labels(
        soft_labels=soft_labels, out=out, threshold=threshold, class_thresholds=parse_class_thresholds(class_threshold),
        min_agreement=min_agreement, max_per_class=max_per_class, temperature=temperature,
    )
    typer.echo(result.to_table())


@pseudo_app.command("review")
def review_command(
    pseudo: Path = typer.Argument(..., help="A pseudo-label CSV written by `distill pseudo select`."),
    host: str = typer.Option("127.0.0.1", "--host", help="Loopback address to listen on (127.0.0.1, ::1 or localhost; others are refused)."),
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="Port to listen on (0 picks a free one)."),
    review: Path = typer.Option(None, "--review", help="Review CSV for the decisions (default: <stem>.review.csv beside PSEUDO)."),
    student: Path = typer.Option(None, "--student", help="A student run folder: show its guess for every clip too."),
    open_browser: bool = typer.Option(False, "--open", help="Open the page in the default browser."),
) -> None:
    """Serve a local page to listen to, accept, reject or relabel pseudo-labelled clips; decisions are saved at once."""
    from distill.review import serve_review

    serve_review(pseudo=pseudo, host=host, port=port, review=review, student=student, open_browser=open_browser)
