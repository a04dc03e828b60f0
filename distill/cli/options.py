"""Options shared by several command groups, and how they become configs."""

from __future__ import annotations

import typer

# Nothing here imports TensorFlow: data commands start in a fraction of a second and print no TensorFlow log lines.
from distill.layers.frontend import FRONTEND_PRESETS  # NumPy only: the CLI still starts without TensorFlow

FRONTEND_NAMES = tuple(FRONTEND_PRESETS)

DATA = typer.Option(..., "--data", help="Speech Commands-layout tree (`distill data synth` makes a demo one).")
CACHE_DIR = typer.Option(None, "--cache-dir", help="Decoded-cache home (default $DISTILL_CACHE_DIR or ~/.cache/distill).")
SEED = typer.Option(0, "--seed", min=0, help="Seed for initialisation, example order and augmentation.")
WARMUP = typer.Option(1.0, "--warmup-epochs", min=0.0, help="Epochs of linear learning-rate warm-up.")
WEIGHT_DECAY = typer.Option(1e-4, "--weight-decay", min=0.0, help="AdamW decoupled weight decay.")
MIXUP = typer.Option(0.0, "--mixup", min=0.0, help="Mixup: blend each batch with a shuffled copy of itself (audio and targets) at a weight drawn from Beta(a, a); 0 = off, 0.2-0.4 is usual.")
NO_AUGMENT = typer.Option(False, "--no-augment", help="Train on clean clips only (ablation).")
FRONTEND = typer.Option(None, "--frontend", help=f"Front-end override for spectral models: {', '.join(FRONTEND_NAMES)} (default: each architecture's own).")
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


PRECISION_HELP = ("Training compute precision: float32, or mixed (bfloat16 on CPU, float16 with loss scaling on GPU; variables, front-end, "
                  "loss and soft labels stay float32, and the run is exported and predicted in float32 either way).")


def precision_option(key: str):
    """``--precision float32|mixed``: the recipe's ``key`` (teachers.precision or students.0.precision)."""
    return recipe_option(key, "--precision", PRECISION_HELP)


RECIPE = typer.Option(None, "--recipe", help="Recipe whose values are this command's defaults: a shipped name (`distill recipe list`) or a .toml file; options given here override it. Default: the default recipe, whose values --help shows.")


def recipe_option(key: str, flag: str, help: str, **kwargs):
    """An option whose default is the recipe's ``key`` (None until the recipe is read), shown in --help from the default recipe."""
    from distill.pipeline.recipe import default_values

    value = default_values()[key]
    shown = ("on" if value else "off") if isinstance(value, bool) else (",".join(value) if isinstance(value, list) else str(value))
    return typer.Option(None, flag, help=f"{help} Recipe key: {key}.", show_default=shown, **kwargs)


SILENCE_PERCENTAGE = recipe_option("data.silence_percentage", "--silence-percentage", "Silence examples as a percentage of the target-word count.")
UNKNOWN_PERCENTAGE = recipe_option("data.unknown_percentage", "--unknown-percentage", "Unknown-word examples as a percentage of the target-word count.")


def frontend_config(name: str | None):
    """The named front-end (``FRONTEND_PRESETS``), or None for each architecture's own; an unknown name exits 2."""
    from distill.layers.frontend import frontend_preset

    if not name:
        return None
    try:
        return frontend_preset(name)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--frontend") from None
