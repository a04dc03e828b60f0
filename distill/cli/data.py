"""``distill data``: make, fetch and inspect Speech Commands trees."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from distill.cli.root import app, echo_rich

data_app = typer.Typer(no_args_is_help=True, help="Make (synth), fetch and inspect Speech Commands-layout datasets.")
app.add_typer(data_app, name="data")

CacheOption = typer.Option(None, "--cache-dir", help="Where decoded caches live (default $DISTILL_CACHE_DIR or ~/.cache/distill).")


@data_app.command("synth")
def synth_command(
    out: Path = typer.Option(Path("data/synth"), "--out", help="Folder to write the Speech Commands-layout tree into."),
    speakers: int = typer.Option(40, help="Synthetic speakers (each an eSpeak voice, pitch, rate and channel)."),
    takes: int = typer.Option(1, help="Takes of each word per speaker."),
    seed: int = typer.Option(0, help="Seed: the same seed gives byte-identical files."),
    noise_seconds: float = typer.Option(20.0, help="Length of each _background_noise_ recording."),
    test_clips: int = typer.Option(0, help="Also write this many unlabeled clip_*.wav test clips from new speakers, with a shifted class mix."),
    test_unknown_share: float = typer.Option(0.45, help="Share of unknown words among the test clips."),
    test_silence_share: float = typer.Option(0.15, help="Share of silence among the test clips."),
    test_dir: Path = typer.Option(None, help="Folder for the test clips (default OUT_test next to OUT)."),
    answer_key: Path = typer.Option(None, help="CSV fname,label answer key for the test clips (default OUT_test_answers.csv, outside the clip folder)."),
    jobs: int = typer.Option(2, help="Worker processes (each chunk runs in a fresh process for determinism)."),
    overwrite: bool = typer.Option(False, help="Replace an existing tree at OUT, test folder and answer key (without it they are refused, untouched)."),
    words: str = typer.Option(None, "--words", help="Target words, comma-separated (e.g. zero,one,two): spoken as word folders beside the other v0.01 words (the unknowns), and the test folder's targets. Default: the Kaggle ten among the 30 v0.01 words."),
) -> None:
    """Synthesize a demo dataset with the eSpeak NG engine (SYNTHETIC: never use it for a competition model)."""
    from distill.core.labels import parse_words
    from distill.data.synth import SynthConfig, synthesize_dataset

    options = dict(speakers=speakers, takes=takes, seed=seed, noise_seconds=noise_seconds, test_clips=test_clips,
                   test_unknown_share=test_unknown_share, test_silence_share=test_silence_share)
    targets = parse_words(words)
    config = SynthConfig(**options) if targets is None else SynthConfig.for_words(targets, **options)
    result = synthesize_dataset(out=out, config=config, jobs=jobs, test_dir=test_dir, answer_key=answer_key, overwrite=overwrite)
    typer.echo(f"{result.clips} clips from {result.speakers} speakers in {result.out} ({result.seconds:.1f} s); speakers per split: {result.split_speakers}")
    if result.test_dir:
        typer.echo(f"test clips in {result.test_dir}, answer key {result.answer_key}")


@data_app.command("fetch")
def fetch_command(
    out: Path = typer.Option(None, "--out", help="Folder to extract the dataset into (default: data/speech_commands_v0.01, or data/speech_commands_v0.02 with --version 2)."),
    version: int = typer.Option(1, "--version", help="Speech Commands release: 1 (v0.01, 30 words, 1.4 GB) or 2 (v0.02, 35 words, 2.4 GB)."),
    url: str = typer.Option(None, help="Archive URL (default: the official archive of --version); file:// works."),
    sha256: str = typer.Option(None, help="Expected SHA-256 of the archive (default: the official checksum of --version when --url is not given; with --url, unchecked unless given)."),
    download_dir: Path = typer.Option(None, help="Where the archive and its resumable .part file go (default: next to OUT)."),
    keep_archive: bool = typer.Option(False, help="Keep the .tar.gz after extracting."),
) -> None:
    """Download (resuming a partial download), verify and extract Speech Commands v0.01 or v0.02."""
    from distill.data.fetch import fetch_dataset

    path = fetch_dataset(out=out, version=version, url=url, sha256=sha256, download_dir=download_dir, keep_archive=keep_archive)
    typer.echo(f"dataset ready in {path}")


@data_app.command("stats")
def stats_command(
    root: Path = typer.Argument(..., help="A Speech Commands-layout tree (word folders, _background_noise_, list files)."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unreadable or non-16 kHz mono wavs and list them, instead of stopping at the first."),
    cache_dir: Path = CacheOption,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    words: str = typer.Option(None, "--words", help="Target words, comma-separated: count classes for this list (default: the Kaggle ten); a word with no folder is refused."),
) -> None:
    """Print classes, speakers, split sizes, noise files and bad files of a dataset (builds its decoded cache)."""
    from distill.core.labels import parse_words
    from distill.data.stats import dataset_stats

    stats = dataset_stats(root=root, skip_bad=skip_bad, cache_dir=cache_dir, words=parse_words(words))
    if as_json:
        typer.echo(json.dumps(stats.to_dict(), indent=2))
    else:
        echo_rich(stats.to_rich())
