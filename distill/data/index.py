"""The Speech Commands index: which file, word, speaker and split each clip is (validation/testing lists or the hash rule)."""

from __future__ import annotations

import functools
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from distill.core.errors import DistillError
from distill.core.labels import (
    BACKGROUND_NOISE_DIR,
    KAGGLE,
    word_to_class,
)
from distill.data.splits import SPLITS, TESTING, TRAINING, VALIDATION, speaker_of, which_set

VALIDATION_LIST = "validation_list.txt"
TESTING_LIST = "testing_list.txt"
NO_NOISE_NOTE = (
    f"no {BACKGROUND_NOISE_DIR}/ folder with usable recordings: silence examples are digital silence "
    f"(all zeros), which teaches the model less about real quiet rooms; add the folder from the "
    f"Speech Commands archive to train on recorded background noise"
)



@dataclass(frozen=True)
class ClipIndex:
    """One entry per clip, aligned: ``files[i]`` is row ``i`` of the decoded audio.

    ``files`` are posix paths relative to the dataset root (``word/name.wav``),
    sorted, so the row order depends only on the file names.
    """

    files: tuple[str, ...]
    words: tuple[str, ...]
    speakers: tuple[str, ...]
    splits: tuple[str, ...]

    def __post_init__(self) -> None:
        n = len(self.files)
        if not (len(self.words) == len(self.speakers) == len(self.splits) == n):
            raise ValueError("ClipIndex: files, words, speakers and splits must have the same length")
        unknown = set(self.splits) - set(SPLITS)
        if unknown:
            raise ValueError(f"ClipIndex: unknown split names {sorted(unknown)}; expected {SPLITS}")

    def __len__(self) -> int:
        return len(self.files)

    @functools.cached_property
    def labels(self) -> np.ndarray:
        """Class index of every clip (``labels.CLASSES`` order), int64, read-only."""
        lookup = {word: word_to_class(word) for word in set(self.words)}
        out = np.fromiter((lookup[w] for w in self.words), dtype=np.int64, count=len(self.words))
        out.flags.writeable = False
        return out

    def labels_for(self, label_set) -> np.ndarray:
        """Class index of every clip for a word list (``LabelSet``): ``labels`` for the Kaggle ten."""
        if label_set.words == KAGGLE.words:
            return self.labels
        lookup = {word: label_set.word_to_class(word) for word in set(self.words)}
        out = np.fromiter((lookup[w] for w in self.words), dtype=np.int64, count=len(self.words))
        out.flags.writeable = False
        return out

    @functools.cached_property
    def _split_codes(self) -> np.ndarray:
        return np.fromiter((SPLITS.index(s) for s in self.splits), dtype=np.int8, count=len(self.splits))

    def positions(self, split: str) -> np.ndarray:
        """Rows of ``split`` (ascending int64)."""
        check_split(split)
        return np.flatnonzero(self._split_codes == SPLITS.index(split)).astype(np.int64)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``json.dumps`` it, or nest it in a larger document)."""
        return {"files": list(self.files), "words": list(self.words), "speakers": list(self.speakers), "splits": list(self.splits)}

    @classmethod
    def from_json(cls, data: dict[str, Any] | str) -> "ClipIndex":
        """Inverse of ``to_json``; also accepts the dict already dumped to a JSON string."""
        if isinstance(data, str):
            data = json.loads(data)
        return cls(
            files=tuple(data["files"]),
            words=tuple(data["words"]),
            speakers=tuple(data["speakers"]),
            splits=tuple(data["splits"]),
        )

    def subset(self, rows: Sequence[int] | np.ndarray) -> "ClipIndex":
        rows = np.asarray(rows, dtype=np.int64)
        pick = lambda values: tuple(values[i] for i in rows)  # noqa: E731
        return ClipIndex(files=pick(self.files), words=pick(self.words), speakers=pick(self.speakers), splits=pick(self.splits))


def check_split(split: str) -> None:
    """Raise DistillError unless ``split`` is one of ``SPLITS``."""
    if split not in SPLITS:
        raise DistillError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")


@dataclass(frozen=True)
class FileStat:
    """A wav (or list) file a scan found, with what the cache fingerprint needs of it."""

    rel: str  # posix path relative to the audio root
    path: Path
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Tree:
    """What a scan of a Speech Commands tree found (before any decoding)."""

    root: Path  # as given
    audio_root: Path  # where the word folders are (root, or root/audio for Kaggle's train/)
    clips: tuple[FileStat, ...]  # sorted by rel
    noise: tuple[FileStat, ...]  # sorted by rel
    noise_missing: bool
    list_files: tuple[FileStat, ...]  # validation list, testing list (when both exist)
    words: tuple[str, ...]  # every word folder, including empty ones


def _resolve_layout(root: Path) -> tuple[Path, Path]:
    """(folder with the word folders, folder with the list files).

    Speech Commands archives keep both in one folder; Kaggle's ``train.7z`` puts the
    word folders in ``train/audio/`` and the lists in ``train/``, so either
    ``train/`` or ``train/audio/`` works as the root.
    """
    audio = root / "audio"
    if audio.is_dir() and not (root / BACKGROUND_NOISE_DIR).is_dir() and not _has_word_folders(root, exclude="audio"):
        return audio, root
    if root.name == "audio" and not (root / VALIDATION_LIST).exists() and (root.parent / VALIDATION_LIST).exists():
        return root, root.parent
    return root, root


def _has_word_folders(root: Path, *, exclude: str) -> bool:
    for entry in os.scandir(root):
        if entry.is_dir() and entry.name != exclude and not entry.name.startswith(("_", ".")):
            return True
    return False


def is_wav(name: str) -> bool:
    """A ``.wav`` name (any case) that is not a hidden file."""
    return name.lower().endswith(".wav") and not name.startswith(".")


def scan_wavs(folder: Path, prefix: str) -> list[FileStat]:
    """The wav files directly in ``folder`` (unsorted), their ``rel`` names prefixed with ``prefix``."""
    found = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if is_wav(entry.name) and entry.is_file():
                st = entry.stat()
                found.append(FileStat(f"{prefix}{entry.name}", Path(entry.path), st.st_size, st.st_mtime_ns))
    return found


def scan_tree(root: Path) -> Tree:
    """Find the word folders, clips, noise recordings and list files of a Speech Commands tree (no decoding)."""
    root = Path(root)
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise DistillError(
            f"{root}: dataset folder {what}; point --data at an extracted Speech Commands tree, "
            f"or create one with `distill data fetch` (the real data) or `distill data synth` (a small demo set)"
        )
    audio_root, list_dir = _resolve_layout(root)
    clips: list[FileStat] = []
    words: list[str] = []
    noise: list[FileStat] = []
    noise_missing = True
    with os.scandir(audio_root) as entries:
        subdirs = sorted(e.name for e in entries if e.is_dir())
    for name in subdirs:
        if name == BACKGROUND_NOISE_DIR:
            noise = scan_wavs(audio_root / name, f"{name}/")
            noise_missing = not noise
        elif not name.startswith(("_", ".")):
            words.append(name)
            clips.extend(scan_wavs(audio_root / name, f"{name}/"))
    if not words:
        raise DistillError(
            f"{audio_root}: no word folders (subfolders like yes/, no/, unknown words...) found; "
            f"is this the root of an extracted Speech Commands tree? (`distill data fetch` downloads one)"
        )
    if not clips:
        raise DistillError(f"{audio_root}: the word folders ({', '.join(words[:5])}...) hold no .wav files")
    lists = [list_dir / VALIDATION_LIST, list_dir / TESTING_LIST]
    present = [p.exists() for p in lists]
    if any(present) and not all(present):
        have, missing = (lists[0], lists[1]) if present[0] else (lists[1], lists[0])
        raise DistillError(
            f"{have} exists but {missing} does not: the split lists come in pairs; restore the missing list, "
            f"or remove both to split speakers by the hash rule"
        )
    list_stats = tuple(FileStat(p.name, p, p.stat().st_size, p.stat().st_mtime_ns) for p in lists) if all(present) else ()
    clips.sort(key=lambda f: f.rel)
    noise.sort(key=lambda f: f.rel)
    return Tree(root, audio_root, tuple(clips), tuple(noise), noise_missing, list_stats, tuple(words))


def _read_list(path: Path) -> set[str]:
    entries = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        entry = line.strip().replace("\\", "/")
        while entry.startswith("./"):
            entry = entry[2:]
        if entry:
            entries.add(entry)
    return entries


def check_percentages(validation_percentage: float, testing_percentage: float) -> None:
    """Raise DistillError unless the hash rule's split percentages are usable."""
    if not (0 <= validation_percentage and 0 <= testing_percentage and validation_percentage + testing_percentage <= 100):
        raise DistillError(
            f"split percentages validation={validation_percentage} testing={testing_percentage} must be >= 0 "
            f"and add up to at most 100"
        )


@dataclass(frozen=True)
class Splitting:
    """The index of a scanned tree, where its splits came from, and list entries with no file."""

    index: ClipIndex
    source: str  # "lists" or "hash"
    missing_list_entries: int


def split_tree(tree: Tree, *, validation_percentage: float, testing_percentage: float) -> Splitting:
    """Index a scanned tree, with splits from its list files when it has them, else from the hash rule."""
    rels = [c.rel for c in tree.clips]
    missing = 0
    if tree.list_files:
        # The official lists are what every published result is measured on, so they
        # win over the hash rule (which reproduces them only for 10/10 on the full set).
        validation, testing = (_read_list(f.path) for f in tree.list_files)
        on_disk = set(rels)
        missing = len((validation | testing) - on_disk)
        splits = [VALIDATION if r in validation else TESTING if r in testing else TRAINING for r in rels]
        source = "lists"
    else:
        splits = [which_set(r, validation_percentage, testing_percentage) for r in rels]
        source = "hash"
    index = ClipIndex(
        files=tuple(rels),
        words=tuple(r.split("/", 1)[0] for r in rels),
        speakers=tuple(speaker_of(r) for r in rels),
        splits=tuple(splits),
    )
    return Splitting(index, source, missing)


def index_dataset(root: Path, *, validation_percentage: float = 10.0, testing_percentage: float = 10.0) -> ClipIndex:
    """Index a Speech Commands tree (v0.01 or v0.02) without decoding anything.

    Word folders are all subfolders not starting with ``_`` (or ``.``). Splits come
    from ``validation_list.txt``/``testing_list.txt`` when both exist (list entries
    with no file on disk are ignored, with a warning), otherwise from the
    speaker-hash rule of ``splits.which_set`` with the given percentages.
    """
    check_percentages(validation_percentage, testing_percentage)
    tree = scan_tree(Path(root))
    splitting = split_tree(tree, validation_percentage=validation_percentage, testing_percentage=testing_percentage)
    warn_about(tree, splitting)
    return splitting.index


def warn_about(tree: Tree, splitting: Splitting) -> None:
    """Warn (for the caller's caller) about list entries with no file and a missing background noise folder."""
    if splitting.missing_list_entries:
        warnings.warn(
            f"{tree.root}: {splitting.missing_list_entries} entries of {VALIDATION_LIST}/{TESTING_LIST} have no file "
            f"on disk and were ignored (expected for a partial copy of the dataset)",
            stacklevel=3,
        )
    if tree.noise_missing:
        warnings.warn(f"{tree.root}: {NO_NOISE_NOTE}", stacklevel=3)
