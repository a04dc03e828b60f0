"""``distill submit`` and ``distill label-wav``: the Kaggle CSV and single-file labelling with a frozen graph."""

from __future__ import annotations

from pathlib import Path

import typer

from distill.cli.root import app, echo_rich
from distill.core.tables import aligned_table

MODEL = typer.Option(..., "--model", help="Frozen graph: a .pb file, or a folder holding model.pb (and labels.txt, which must list the 12 classes in softmax order).")


@app.command("submit")
def submit_command(
    model: Path = MODEL,
    test_dir: Path = typer.Option(..., "--test-dir", help="Kaggle test folder of clip_*.wav (test/ or test/audio/)."),
    out: Path = typer.Option(Path("submission.csv"), "--out", help="Submission CSV to write (fname,label, sorted, one row per clip); rows go to OUT.part while running."),
    batch_size: int = typer.Option(256, "--batch-size", min=1, help="Clips read and predicted per step (memory stays at one batch)."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Continue from OUT.part of an interrupted run with the same model and clips (default), or start over."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Predict unreadable clips as digital silence (zeros) instead of stopping; they are listed in OUT.bad.tsv."),
    probs: bool = typer.Option(False, "--probs", help="Also save OUT.probs.npz: names and float16 probabilities (N, 12) in CSV row order."),
    answer_key: Path = typer.Option(None, "--answer-key", help="fname,label CSV with the true labels (e.g. from `distill data synth --test-clips`): print the score."),
    threads: int = typer.Option(None, "--threads", min=1, help="Graph calls run at once (TensorFlow inter-op threads; 1 intra-op thread each). Default: one per core, at most 4."),
    method: str = typer.Option("auto", "--method", help="Batching: auto (time vectorized and map_fn at load, keep the faster), vectorized (tf.vectorized_map), map_fn (tf.map_fn) or loop (one call per clip)."),
    chunk: int = typer.Option(32, "--chunk", min=1, help="Clips per graph call (vectorized / map_fn)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Predict every test clip with a frozen graph and write the Kaggle submission CSV (resumable, validated)."""
    from distill.submission.predictor import configure_threads, default_workers
    from distill.submission.writer import write_submission

    workers = threads or default_workers()
    if not configure_threads(1, workers):
        typer.secho(f"note: TensorFlow was already running; --threads {workers} may not take effect", err=True)
    result = write_submission(model=model, test_dir=test_dir, out=out, batch_size=batch_size, resume=resume,
                              progress=not quiet, skip_bad=skip_bad, probs=probs, method=method, chunk=chunk,
                              workers=workers, answer_key=answer_key)
    for note in result.notes:
        typer.secho(f"note: {note}", err=True)
    if result.timings:
        typer.echo("batching: " + ", ".join(f"{m} {v:,.0f} clips/CPU-s" for m, v in result.timings.items())
                   + f" -> {result.method}")
    typer.echo(f"wrote {result.out}: {result.clips:,} rows"
               + (f" ({result.resumed_rows:,} resumed)" if result.resumed_rows else "")
               + f" in {result.seconds:.1f} s ({result.clips_per_second:,.0f} clips/s while streaming; "
               f"{result.method}, {workers} thread(s))")
    score = result.score
    header = ["class", "rows", "share"] + (["recall"] if score is not None else [])
    rows = []
    for label, count in result.counts.items():
        row = [label, f"{count:,}", f"{100 * count / max(1, result.clips):.1f}%"]
        if score is not None:
            recall = score["per_class_recall"].get(label)
            row.append("n/a" if recall is None else f"{100 * recall:.1f}%")
        rows.append(row)
    echo_rich(aligned_table(header, rows, right_from=1))
    if result.probs:
        typer.echo(f"probabilities: {result.probs}")
    if score is not None:
        typer.echo(f"score against {answer_key}: accuracy {100 * score['accuracy']:.2f}% on {score['count']:,} clips (recall per class above)")


@app.command("label-wav")
def label_wav_command(
    wavs: list[Path] = typer.Argument(..., help="16 kHz 16-bit mono wav file(s) to label."),
    model: Path = MODEL,
    top_k: int = typer.Option(3, "--top-k", min=1, help="How many of the model's labels (labels.txt: 12 for the Kaggle words) to print per file, best first."),
) -> None:
    """Label wav files like the TensorFlow tutorial's label_wav.py: each file, read as `distill submit` reads it, goes to wav_data:0 as a plain wav (DecodeWav in the graph)."""
    from distill.submission.label_wav import label_wav

    results = label_wav(model=model, wavs=wavs, top_k=top_k)
    for result in results:
        if len(results) > 1:
            typer.echo(f"{result.path}:")
        for line in result.lines():
            typer.echo(("  " if len(results) > 1 else "") + line)
