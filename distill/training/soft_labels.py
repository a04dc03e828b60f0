"""Teacher soft labels: per-teacher logits for K augmented views, aligned to an ExampleSet.

Layout of a soft-label folder (what ``distill teachers predict`` writes and
``distill student fit`` reads)::

    config.json                    PredictConfig
    <split>/examples.npz           the ExampleSet every array below is aligned to
    <split>/logits_<teacher>.npy   float16 (views, N, K); view 0 is the clean clip
    unlabeled/names.txt            clip names of an unlabeled folder, one per line
    unlabeled/logits_<teacher>.npy float16 (views, M, K)

K is the number of classes of the teachers' word list (``PredictConfig.words``; 12 for the Kaggle ten).

A ``--teacher`` may also be a fold group written by ``teachers train --folds K``
(see ``distill.training.crossfit``): its training-split entries are the log-probabilities of
the run that held the example's speaker out, every other entry the log of its K
runs' mean probability. Log-probabilities differ from logits by a per-row constant,
so the tempered ensemble below reads both alike.

View v > 0 is ``augment_waveforms(clip, seeds=example seeds, view=v)``, a pure
function of the example, so a student fitted later sees exactly the waveforms
its teachers labelled ("consistent teaching"). The training split keeps every
unknown clip (the student subsamples per epoch). Work is saved per chunk, so an
interrupted prediction over a large folder resumes where it stopped.
"""

from __future__ import annotations

import os
import shutil
import zlib
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from distill.core.config import load_config, save_config, to_dict
from distill.core.errors import DistillError
from distill.core.io import atomic_path, check_output, load_array, write_text
from distill.core.labels import TARGET_WORDS, LabelSet, refuse_other_words
from distill.core.metrics import softmax
from distill.core.progress import track
from distill.data.augment import AugmentConfig, augment_waveforms
from distill.data.cache import data_difference, open_dataset
from distill.data.examples import ExampleSet, MixConfig, make_examples, materialize
from distill.data.unlabeled import open_unlabeled
from distill.training.crossfit import FoldGroup, example_folds, fold_runs

UNLABELED = "unlabeled"


@dataclass(frozen=True)
class PredictConfig:
    teachers: tuple[str, ...]
    data: str
    views: int = 4
    splits: tuple[str, ...] = ("training", "validation", "testing")
    unlabeled: str | None = None
    mix: MixConfig = field(default_factory=MixConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    seed: int = 0
    chunk: int = 2048
    # content fingerprints of ``data`` and ``unlabeled`` (``content_fingerprint`` of the decoded folder): what a
    # later run compares, so copied or moved folders are the same data; the paths are kept for information
    data_content: str | None = None
    unlabeled_content: str | None = None
    words: tuple[str, ...] = TARGET_WORDS  # the teachers' word list: logits are K = len(words) + 2 wide

    @property
    def labels(self) -> LabelSet:
        return LabelSet(self.words)


# a folder's path, and the field with its content fingerprint
_CONTENT = {"data": "data_content", "unlabeled": "unlabeled_content"}


@dataclass(frozen=True)
class PredictResult:
    out: Path
    teachers: tuple[str, ...]
    counts: dict[str, int]


def teacher_name(run_dir: Path) -> str:
    return Path(run_dir).resolve().name


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array)


def _predict_chunks(*, predict: Callable[[np.ndarray, np.ndarray], np.ndarray], count: int, load_audio, seeds: np.ndarray, views: int, augment: AugmentConfig, noise, parts_dir: Path, final: Path, chunk: int, description: str, progress: bool,
                    num_classes: int = 12) -> None:
    """Fill ``final`` (views, count, K) float16, one saved chunk at a time; ``predict(audio, positions)``."""
    if final.exists():
        return
    parts_dir.mkdir(parents=True, exist_ok=True)
    starts = list(range(0, count, chunk))
    for start in track(starts, total=len(starts), description=description, disable=not progress):
        part = parts_dir / f"{start:09d}.npy"
        if part.exists():
            continue
        positions = np.arange(start, min(start + chunk, count))
        clean = load_audio(positions)
        out = np.empty((views, len(positions), num_classes), np.float16)
        for view in range(views):
            audio = clean if view == 0 else augment_waveforms(clean, seeds=seeds[positions], view=view, noise=noise, config=augment)
            out[view] = predict(audio, positions)
        _save_npy(part, out)
    redo = "delete it and re-run `distill teachers predict` with the same options (that chunk is predicted again)"
    merged = np.concatenate([load_array(parts_dir / f"{s:09d}.npy", fix=redo) for s in starts], axis=1) if starts else np.zeros((views, 0, num_classes), np.float16)
    _save_npy(final, merged)
    for s in starts:
        (parts_dir / f"{s:09d}.npy").unlink()
    parts_dir.rmdir()


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)  # atomic, and soft labels of a large ensemble run to gigabytes: share, do not duplicate
    except OSError:  # another file system, or one without hard links
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)


def adopt_soft_labels(*, reuse: Path, out: Path, config: PredictConfig) -> None:
    """Bring the finished logits of teachers that ``config`` shares with the folder ``reuse`` into ``out``.

    Adding a member to an ensemble should cost one teacher's prediction, not all of them. A teacher's
    logits are adopted only when ``reuse`` was made from the same run folder with every other option
    equal (data, views, splits, mix, augmentation, seed), so they are the numbers a fresh run would write.
    """
    reuse = Path(reuse)
    if not (reuse / "config.json").exists():
        raise DistillError(f"--reuse {reuse}: no soft labels there (no config.json); give a folder written by `distill teachers predict`")
    saved = load_config(PredictConfig, reuse / "config.json")
    other = _other_options(saved, config)
    differing = [name for name in other if name not in ("teachers", "splits", "unlabeled")]
    if differing:
        raise DistillError(f"--reuse {reuse}: made with other {', '.join(differing)}; its soft labels cannot stand in for this run's")
    shared = [t for t in config.teachers if t in saved.teachers]
    parts = [s for s in config.splits if s in saved.splits] + ([UNLABELED] if config.unlabeled and saved.unlabeled and "unlabeled" not in other else [])
    for part in parts:
        for name in ["examples.npz" if part != UNLABELED else "names.txt"] + [f"logits_{teacher_name(Path(t))}.npy" for t in shared]:
            if (reuse / part / name).exists() and not (out / part / name).exists():
                _link_or_copy(reuse / part / name, out / part / name)


def name_seeds(names: list[str], seed: int) -> np.ndarray:
    """Per-clip seeds for unlabeled clips, stable under reordering or adding clips."""
    return np.array([(zlib.crc32(n.encode()) << 16) ^ seed for n in names], dtype=np.int64)


def predict_config(*, teacher_runs: list[Path], data: Path, unlabeled: Path | None = None, cache_dir: Path | None = None, **options) -> PredictConfig:
    """The configuration ``predict_soft_labels`` records for these options (paths resolved, as saved).

    ``options`` are PredictConfig's other fields (views, splits, mix, augment, seed, chunk); its own
    defaults stand for any left out, so they are written down once. The content fingerprints of ``data``
    and ``unlabeled``, when not given, are read from their decoded caches (in ``cache_dir``; built if missing).
    """
    if "splits" in options:
        options["splits"] = tuple(options["splits"])
    if "data_content" not in options:
        options["data_content"] = open_dataset(Path(data), cache_dir=cache_dir, progress=False).content_fingerprint
    if "unlabeled_content" not in options:
        options["unlabeled_content"] = open_unlabeled(Path(unlabeled), cache_dir=cache_dir, progress=False).content_fingerprint if unlabeled else None
    return PredictConfig(teachers=tuple(str(Path(r).resolve()) for r in teacher_runs), data=str(Path(data).resolve()),
                         unlabeled=str(Path(unlabeled).resolve()) if unlabeled else None, **options)


def _differing(saved, wanted, prefix: str = "") -> list[str]:
    """Names of the fields that differ, nested dataclasses down to their own fields (``augment.view_time_masks``)."""
    names = []
    for f in fields(wanted):
        a, b = getattr(saved, f.name), getattr(wanted, f.name)
        if a != b:
            names += _differing(a, b, f"{prefix}{f.name}.") if is_dataclass(a) and is_dataclass(b) else [prefix + f.name]
    return names


def _other_options(saved: PredictConfig, wanted: PredictConfig) -> list[str]:
    """``_differing`` with the data folders compared by content, so a copied or moved folder is the same data;
    by path when either config predates content fingerprints. A content difference is named by its path field."""
    names = _differing(saved, wanted)
    for path, content in _CONTENT.items():
        by_content = getattr(saved, content) is not None and getattr(wanted, content) is not None
        names = [path if name == content else name for name in names if name != (path if by_content else content)]
    return list(dict.fromkeys(names))


def refuse_other_predictions(out: Path, config: PredictConfig) -> None:
    """Raise if ``out`` holds soft labels made with options other than ``config``, naming them.

    A finished folder is complete on disk, so a driver that skips finished stages calls this first:
    otherwise it would hand a student views or teachers it did not ask for.
    """
    if not (Path(out) / "config.json").exists():
        return
    differing = _other_options(load_config(PredictConfig, Path(out) / "config.json"), config)
    if differing:
        raise DistillError(f"{out} holds soft labels made with other {', '.join(differing)}; use a new --out, or the same options to resume")


def predict_soft_labels(
    *,
    teacher_runs: list[Path],
    data: Path,
    out: Path,
    views: int = 4,
    splits: tuple[str, ...] = ("training", "validation", "testing"),
    unlabeled: Path | None = None,
    mix: MixConfig = MixConfig(),
    augment: AugmentConfig = AugmentConfig(),
    seed: int = 0,
    chunk: int = 2048,
    cache_dir: Path | None = None,
    progress: bool = True,
    reuse: Path | None = None,
    words: tuple[str, ...] | None = None,
) -> PredictResult:
    """Write per-teacher logits for every split (and an unlabeled folder); re-running resumes.

    ``reuse``: another soft-label folder made with the same options; the teachers it shares with this
    one are linked in rather than predicted again (see ``adopt_soft_labels``). ``words``: the word list asked for
    (None: the teachers'); every teacher must have been trained on it."""
    from distill.training.fit import EVALUATION_SEED

    if not teacher_runs:
        raise DistillError("no teacher runs given (pass --teacher RUN_DIR, repeatable)")
    if views < 1:
        raise DistillError("--views must be at least 1 (view 0 is the clean clip)")
    teacher_runs = [Path(r) for r in teacher_runs]
    check_output(out, kind="folder", inputs=(data, unlabeled, reuse, *teacher_runs))  # before any work: a file there, a read-only folder, an input
    fold_groups = [finished_teacher(run) for run in teacher_runs]  # every teacher is checked before any is run
    words = teachers_words(teacher_runs, fold_groups, words)
    names = [teacher_name(r) for r in teacher_runs]
    if len(set(names)) != len(names):
        raise DistillError(f"teacher run folders must have distinct names, got {names}")
    dataset = open_dataset(Path(data), cache_dir=cache_dir, progress=progress)
    folder = open_unlabeled(Path(unlabeled), cache_dir=cache_dir, progress=progress) if unlabeled else None
    config = predict_config(teacher_runs=teacher_runs, data=data, views=views, splits=splits, unlabeled=unlabeled, mix=mix, augment=augment,
                            seed=seed, chunk=chunk, data_content=dataset.content_fingerprint,
                            unlabeled_content=folder.content_fingerprint if folder is not None else None, words=words)
    out = Path(out)
    fresh = not (out / "config.json").exists()
    refuse_other_predictions(out, config)
    if reuse is not None:
        adopt_soft_labels(reuse=reuse, out=out, config=config)  # checks ``reuse`` before anything is written
    if fresh:
        out.mkdir(parents=True, exist_ok=True)
        save_config(config, out / "config.json")

    example_sets: dict[str, ExampleSet] = {}
    for split in splits:
        path = out / split / "examples.npz"
        if path.exists():
            example_sets[split] = ExampleSet.load(path)
        else:
            # evaluation splits use the fit loop's fixed examples, so reports compare like with like
            example_sets[split] = make_examples(dataset, split=split, mix=mix, seed=seed if split == "training" else EVALUATION_SEED, all_unknown=(split == "training"),
                                                labels=LabelSet(words))
            path.parent.mkdir(parents=True, exist_ok=True)
            example_sets[split].save(path)
    if folder is not None:
        (out / UNLABELED).mkdir(exist_ok=True)
        write_text(out / UNLABELED / "names.txt", "".join(n + "\n" for n in folder.names))

    for run, runs, name in zip(teacher_runs, fold_groups, names):
        predictors = _split_predictors(run, runs, dataset=dataset, example_sets=example_sets, cache_dir=cache_dir)
        for split, examples in example_sets.items():
            _predict_chunks(
                predict=predictors[split], count=len(examples), load_audio=lambda pos, ex=examples: materialize(dataset, ex, pos), seeds=examples.seeds,
                views=views, augment=augment, noise=dataset.noise, parts_dir=out / split / f".parts_{name}", final=out / split / f"logits_{name}.npy",
                chunk=chunk, description=f"{name} {split}", progress=progress, num_classes=LabelSet(words).num_classes,
            )
        if folder is not None:
            _predict_chunks(
                predict=predictors[UNLABELED], count=len(folder.names), load_audio=folder.waveforms, seeds=name_seeds(folder.names, seed),
                views=views, augment=augment, noise=dataset.noise, parts_dir=out / UNLABELED / f".parts_{name}", final=out / UNLABELED / f"logits_{name}.npy",
                chunk=chunk, description=f"{name} unlabeled", progress=progress, num_classes=LabelSet(words).num_classes,
            )
    counts = {split: len(ex) for split, ex in example_sets.items()}
    if folder is not None:
        counts[UNLABELED] = len(folder.names)
    return PredictResult(out=out, teachers=tuple(names), counts=counts)


def teachers_words(teacher_runs: list[Path], fold_groups: list[list[Path] | None], asked: tuple[str, ...] | None) -> tuple[str, ...]:
    """The word list every teacher was trained on; refuses teachers of different lists, or a list other than ``asked``."""
    from distill.training.fit import RunConfig

    found = [(run, load_config(RunConfig, (runs[0] if runs else run) / "config.json").words) for run, runs in zip(teacher_runs, fold_groups)]
    first_run, first = found[0]
    for run, words in found[1:]:
        refuse_other_words(f"teacher {run}", words, first, fix=f"teacher {first_run} was; teachers of one ensemble share one word list")
    if asked is not None:
        refuse_other_words(f"teacher {first_run}", first, tuple(asked), fix=f"predict with the teachers' list (--words {','.join(first)}), or train teachers on this one")
    return tuple(first)


def finished_teacher(run: Path) -> list[Path] | None:
    """Check that ``run`` is a finished teacher run or fold group; returns the group's fold runs (None for a run)."""
    from distill.training.fit import is_finished

    runs = fold_runs(run)
    if runs is None and not (run / "config.json").exists():
        raise DistillError(f"{run}: neither a teacher run (no config.json) nor a fold group (no fold0/ ...); pass a folder `distill teachers train` wrote")
    # a partial run already has a best checkpoint; labels from it would silently come from a half-trained teacher
    unfinished = [str(r) for r in (runs or [run]) if not is_finished(r)]
    if unfinished:
        raise DistillError(f"teacher run(s) {unfinished} have not finished training (no metrics.json); finish them with `distill teachers train ... --resume`")
    return runs


def load_fold_group(path: Path, runs: list[Path]) -> FoldGroup:
    """The K fold runs of one teacher as a FoldGroup, refusing folds trained with different settings."""
    from distill.training.fit import load_run, make_predictor

    configs, predictors = [], []
    for k, run in enumerate(runs):
        config, model = load_run(run)
        if config.holdout is None or config.holdout.folds != len(runs) or config.holdout.fold != k:
            raise DistillError(f"{run}: not fold {k} of {len(runs)} (its config holds out {config.holdout}); a fold group is what `teachers train --folds K` writes")
        configs.append(config)
        predictors.append(make_predictor(model))
    # the data by content where every fold records it (folds trained on copies of one tree are one group)
    by_content = all(c.data_content is not None for c in configs)
    shared = [{k: v for k, v in to_dict(c).items() if k not in ("holdout", "data" if by_content else "data_content")} for c in configs]
    if any(s != shared[0] for s in shared[1:]):
        raise DistillError(f"{path}: its folds were trained with different settings; retrain them with one `teachers train --folds K`")
    return FoldGroup(data=configs[0].data, predictors=predictors, data_content=configs[0].data_content)


def _split_predictors(run: Path, runs: list[Path] | None, *, dataset, example_sets: dict[str, ExampleSet], cache_dir: Path | None = None) -> dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]]:
    """``(audio, positions) -> logits`` per split (and UNLABELED) for a run folder, or a fold group with its ``runs``."""
    from distill.training.fit import load_run, make_predictor

    if runs is None:
        plain = make_predictor(load_run(run)[1])
        one = lambda audio, positions: plain(audio)  # noqa: E731
        return {**{split: one for split in example_sets}, UNLABELED: one}
    group = load_fold_group(run, runs)
    difference = data_difference(group.data, group.data_content, dataset, cache_dir=cache_dir) if "training" in example_sets else None
    if difference:
        raise DistillError(f"{run}: its folds were {difference}; out-of-fold labels only mean something on the tree they were trained on")
    mean = group.mean_predictor()
    predictors = {split: mean for split in example_sets}
    if "training" in example_sets:
        predictors["training"] = group.held_out_predictor(example_folds(dataset, example_sets["training"], group.folds))
    return {**predictors, UNLABELED: mean}


# ---------------------------------------------------------------- reading soft labels


def ensemble_probabilities(logits: list[np.ndarray] | np.ndarray, *, temperature: float = 1.0, weights: np.ndarray | None = None) -> np.ndarray:
    """Weighted mean of the teachers' tempered softmax: (teachers, ..., K) -> (..., K)."""
    stacked = np.asarray(logits, dtype=np.float64)
    probs = softmax(stacked, temperature=temperature)
    if weights is None:
        weights = np.ones(len(stacked))
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (len(stacked),) or (weights < 0).any() or weights.sum() <= 0:
        raise DistillError(f"teacher weights must be {len(stacked)} non-negative numbers, got {weights.tolist()}")
    weights = weights / weights.sum()
    return np.tensordot(weights, probs, axes=1).astype(np.float32)


@dataclass(frozen=True)
class SoftLabels:
    config: PredictConfig
    teachers: tuple[str, ...]
    examples: ExampleSet | None
    names: list[str] | None
    logits: np.ndarray  # (teachers, views, N, K) float16

    def ensemble(self, *, temperature: float = 1.0, weights: np.ndarray | None = None) -> np.ndarray:
        return ensemble_probabilities(self.logits, temperature=temperature, weights=weights)


def load_soft_labels(folder: Path, split: str) -> SoftLabels:
    folder = Path(folder)
    config = load_config(PredictConfig, folder / "config.json")
    names = [teacher_name(Path(t)) for t in config.teachers]
    part = folder / split
    missing = [n for n in names if not (part / f"logits_{n}.npy").exists()]
    if missing:
        raise DistillError(f"{part}: no finished soft labels for {missing}; re-run `distill teachers predict` with the same options to finish")
    redo = f"delete it and re-run `distill teachers predict` with the same options and --out {folder} (only what is missing is predicted again)"
    logits = np.stack([load_array(part / f"logits_{n}.npy", mmap_mode="r", fix=redo) for n in names])
    if split == UNLABELED:
        clip_names = (part / "names.txt").read_text().split()
        return SoftLabels(config, tuple(names), None, clip_names, logits)
    return SoftLabels(config, tuple(names), ExampleSet.load(part / "examples.npz"), None, logits)
