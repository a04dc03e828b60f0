"""Options shared by several command groups, and how they become configs."""

from __future__ import annotations

from pathlib import Path

import typer

# Config classes are imported inside the helpers: importing the CLI must not import TensorFlow,
# so that data commands start in a fraction of a second and print no TensorFlow log lines.
FRONTEND_KINDS = ("logmel", "mfcc")  # distill.layers.frontend.FRONTEND_KINDS, checked by a test

DATA = typer.Option(..., "--data", help="Speech Commands-layout tree (`distill data synth` makes a demo one).")
CACHE_DIR = typer.Option(None, "--cache-dir", help="Decoded-cache home (default $DISTILL_CACHE_DIR or ~/.cache/distill).")
SEED = typer.Option(0, "--seed", min=0, help="Seed for initialisation, example order and augmentation.")
EPOCHS = typer.Option(20, "--epochs", min=1, help="Training epochs.")
BATCH = typer.Option(64, "--batch-size", min=1, help="Examples per step.")
LR = typer.Option(3e-3, "--lr", help="Peak learning rate (linear warm-up, then cosine decay).")
WARMUP = typer.Option(1.0, "--warmup-epochs", min=0.0, help="Epochs of linear learning-rate warm-up.")
WEIGHT_DECAY = typer.Option(1e-4, "--weight-decay", min=0.0, help="AdamW decoupled weight decay.")
SMOOTHING = typer.Option(0.1, "--label-smoothing", help="Label smoothing of the hard-label loss.")
MIXUP = typer.Option(0.0, "--mixup", min=0.0, help="Mixup: blend each batch with a shuffled copy of itself (audio and targets) at a weight drawn from Beta(a, a); 0 = off, 0.2-0.4 is usual.")
KEEP = typer.Option("best", "--keep", help="Checkpoint the run stands for (metrics, export, teaching): best = the best validation epoch, last = the end of the schedule (no selection noise; measured on real audio in the README).")
SILENCE = typer.Option(10.0, "--silence-percentage", min=0.0, help="Silence examples as a percentage of the target-word count (tutorial: 10).")
UNKNOWN = typer.Option(10.0, "--unknown-percentage", min=0.0, help="Unknown-word examples as a percentage of the target-word count (tutorial: 10).")
NO_AUGMENT = typer.Option(False, "--no-augment", help="Train on clean clips only (ablation).")
VIEW_MASKS = typer.Option(False, "--view-masks", help="SpecAugment-like masks inside every augmented view's waveform (2 silent spans up to 100 ms, 2 removed bands up to 340 mel), so teachers label the masked clip the student sees; costs about 0.5 ms per clip.")
FRONTEND = typer.Option(None, "--frontend", help=f"Front-end override for spectral models: {', '.join(FRONTEND_KINDS)} (default: each architecture's own).")
SKIP_BAD = typer.Option(False, "--skip-bad", help="Skip unreadable or non-16 kHz wavs (listed in the cache's bad_files.tsv) instead of stopping.")
RESUME = typer.Option(False, "--resume", help="Continue an interrupted run in OUT from its last checkpoint.")
QUIET = typer.Option(False, "--quiet", help="No progress bars.")


WORDS_HELP = ("Target words, comma-separated word folders (e.g. zero,one,two): the classes are silence, unknown and these, in this order; "
              "every other word folder is unknown.")


def words_option(help: str = WORDS_HELP):
    """``--words w1,w2,...``: the recipe's ``data.words`` (the Kaggle ten by default)."""
    return recipe_option("data.words", "--words", help)


def words_tuple(text: str | None) -> tuple[str, ...] | None:
    """``--words`` as given (None when left out), checked: empty, repeated or reserved words are refused."""
    from distill.core.labels import parse_words

    return parse_words(text)


RECIPE = typer.Option(None, "--recipe", help="Recipe whose values are this command's defaults: a shipped name (`distill recipe list`) or a .toml file; options given here override it. Default: the default recipe, whose values --help shows.")


def recipe_option(key: str, flag: str, help: str, **kwargs):
    """An option whose default is the recipe's ``key`` (None until the recipe is read), shown in --help from the default recipe."""
    from distill.pipeline.recipe import default_values

    value = default_values()[key]
    shown = ("on" if value else "off") if isinstance(value, bool) else (",".join(value) if isinstance(value, list) else str(value))
    return typer.Option(None, flag, help=f"{help} Recipe key: {key}.", show_default=shown, **kwargs)


def schedule_config(*, epochs: int, batch_size: int, lr: float, warmup_epochs: float, weight_decay: float, label_smoothing: float, mixup: float = 0.0, keep: str = "best"):
    from distill.core.errors import DistillError
    from distill.training.fit import KEEP_CHOICES, ScheduleConfig

    if mixup < 0:
        raise DistillError(f"--mixup must be >= 0 (0 turns it off), got {mixup}")
    if keep not in KEEP_CHOICES:
        raise DistillError(f"--keep must be {' or '.join(KEEP_CHOICES)}, got {keep!r}")
    return ScheduleConfig(epochs=epochs, batch_size=batch_size, learning_rate=lr, warmup_epochs=warmup_epochs, weight_decay=weight_decay,
                          label_smoothing=label_smoothing, mixup_alpha=mixup, keep=keep)


def mix_config(*, silence_percentage: float, unknown_percentage: float):
    from distill.data.examples import MixConfig

    return MixConfig(silence_percentage=silence_percentage, unknown_percentage=unknown_percentage)


def augment_config(*, no_augment: bool, view_masks: bool = False):
    from distill.core.errors import DistillError
    from distill.data.augment import AugmentConfig

    if no_augment and view_masks:
        raise DistillError("--view-masks masks augmented views: it cannot go with --no-augment")
    if no_augment:
        return AugmentConfig.none()
    return AugmentConfig.with_view_masks() if view_masks else AugmentConfig()


def frontend_config(kind: str | None):
    from distill.layers.frontend import FrontendConfig

    return FrontendConfig(kind=kind) if kind else None


def cache_str(cache_dir: Path | None) -> str | None:
    return str(cache_dir) if cache_dir else None
