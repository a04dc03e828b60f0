"""The data layer: wav decoding, the Speech Commands index, a decoded on-disk cache, example sets.

Every later stage (teacher training and prediction, student distillation,
evaluation) works on rows of one decoded array instead of on wav files:

* ``open_dataset`` decodes a Speech Commands tree once into an int16 memmap
  (``audio.npy``, one 16,000-sample row per clip) plus an ``index.json`` that says
  which file, word, speaker and split each row is. The cache lives outside the
  dataset tree (which may be read-only) and is keyed by a fingerprint of the
  tree, so an edited tree rebuilds and an unchanged one opens in a fraction of a
  second.
* ``make_examples`` composes a split the way the TensorFlow tutorial's
  ``input_data.py`` does (every target-word clip, a ``ceil``-rounded share of
  ``unknown`` clips and of generated ``silence``), as aligned integer arrays;
  saved with ``ExampleSet.save`` it is the unit that soft labels, logits and
  metrics of later stages line up with, row for row.
* ``materialize`` turns (part of) an example set into float32 waveforms.

Unlabeled folders (the Kaggle test set) get the same cache machinery
(``open_unlabeled``) and a streaming reader (``iter_unlabeled``).
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import hashlib
import json
import math
import os
import shutil
import socket
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from . import __version__
from .errors import BadAudioError, DistillError
from .io import atomic_path, write_json, write_text
from .labels import (
    BACKGROUND_NOISE_DIR,
    CLASSES,
    CLIP_SAMPLES,
    SAMPLE_RATE,
    SILENCE_INDEX,
    UNKNOWN_INDEX,
    word_to_class,
)
from .progress import track
from .splits import SPLITS, TESTING, TRAINING, VALIDATION, speaker_of, which_set

__all__ = [
    "ClipIndex",
    "DatasetStats",
    "DecodedDataset",
    "DecodedUnlabeled",
    "ExampleSet",
    "MixConfig",
    "dataset_stats",
    "decode_wav",
    "default_cache_dir",
    "index_dataset",
    "iter_unlabeled",
    "list_unlabeled",
    "make_examples",
    "materialize",
    "open_dataset",
    "open_unlabeled",
    "read_wav",
    "silence_waveform",
]

# int16 -> float32 in [-1, 1): a power of two, so multiplying by the reciprocal is
# bit-identical to dividing (and to TensorFlow's decode_wav).
SCALE = np.float32(1.0 / 32768.0)
VALIDATION_LIST = "validation_list.txt"
TESTING_LIST = "testing_list.txt"
# Bumped whenever the cache layout or decoding changes, so old caches rebuild.
CACHE_FORMAT = 1
_AUDIO_FILE = "audio.npy"
_INDEX_FILE = "index.json"
_NOISE_FILE = "noise.npz"
_BAD_FILE = "bad_files.tsv"
# Silence examples: log-uniform gain over this range, and this share fully silent.
SILENCE_GAIN_DB = (-40.0, 0.0)
SILENCE_ZERO_FRACTION = 0.1
_NO_NOISE_NOTE = (
    f"no {BACKGROUND_NOISE_DIR}/ folder with usable recordings: silence examples are digital silence "
    f"(all zeros), which teaches the model less about real quiet rooms; add the folder from the "
    f"Speech Commands archive to train on recorded background noise"
)


# --------------------------------------------------------------------------- wav decoding


def read_wav(path: str | os.PathLike) -> np.ndarray:
    """The raw int16 samples of a 16 kHz, 16-bit PCM, mono wav (any length, unpadded).

    The RIFF chunks are parsed here rather than with the ``wave`` module so that
    every way a file can be unusable gets its own reason (``wave`` reports most of
    them as a bare ``EOFError`` or silently returns fewer frames), and so that a
    clip costs one ``read`` and one copy.
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as err:
        raise BadAudioError(path, f"unreadable: {err.strerror or err}") from err
    try:
        return _parse_wav(data, path)
    except BadAudioError:
        raise
    except (struct.error, ValueError) as err:  # a header field that points outside the file
        raise BadAudioError(path, f"unreadable: malformed RIFF header ({err})") from err


def decode_wav(path: str | os.PathLike) -> np.ndarray:
    """A clip as float32 ``(16000,)`` in [-1, 1]: int16 / 32768, zero-padded at the end or cropped.

    Same convention as TensorFlow's ``decode_wav`` with ``desired_samples=16000``,
    which the exported graph uses, so training and serving see identical input.
    """
    return _to_clip(read_wav(path))


def _to_clip(samples: np.ndarray) -> np.ndarray:
    out = np.zeros(CLIP_SAMPLES, dtype=np.float32)
    n = min(len(samples), CLIP_SAMPLES)
    np.multiply(samples[:n], SCALE, out=out[:n], dtype=np.float32)
    return out


def _parse_wav(data: bytes, path: Any) -> np.ndarray:
    if len(data) == 0:
        raise BadAudioError(path, "empty file (0 bytes), not a RIFF/WAVE file")
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        if data[:4] == b"RIFX":
            raise BadAudioError(path, "big-endian RIFX wav; convert it to a little-endian 16-bit PCM RIFF/WAVE file")
        if data[:4] == b"RIFF":
            raise BadAudioError(path, f"not a RIFF/WAVE file (RIFF form type {data[8:12]!r}, expected b'WAVE')")
        raise BadAudioError(path, f"not a RIFF/WAVE file (starts with {data[:4]!r}, expected b'RIFF')")
    fmt: tuple[int, int, int, int] | None = None
    data_at: tuple[int, int] | None = None
    pos = 12
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body = pos + 8
        if chunk_id == b"fmt ":
            if size < 16 or body + 16 > len(data):
                raise BadAudioError(path, f"truncated: 'fmt ' chunk has {min(size, len(data) - body)} bytes, needs 16")
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", data, body)
            if tag == 0xFFFE and size >= 40 and body + 26 <= len(data):
                # WAVE_FORMAT_EXTENSIBLE: the real format is the first two bytes of the sub-format GUID
                (tag,) = struct.unpack_from("<H", data, body + 24)
            fmt = (tag, channels, rate, bits)
        elif chunk_id == b"data":
            data_at = (body, size)
            if fmt is not None:
                break  # nothing after the samples matters
        pos = body + size + (size & 1)  # chunks are word-aligned
    if fmt is None:
        raise BadAudioError(path, "truncated or malformed: no 'fmt ' chunk before the end of the file")
    tag, channels, rate, bits = fmt
    if tag != 1:
        kind = "IEEE float samples" if tag == 3 else f"format tag 0x{tag:04x}"
        raise BadAudioError(path, f"not PCM ({kind}); convert it to 16-bit PCM")
    if bits != 16:
        raise BadAudioError(path, f"not 16-bit: {bits}-bit PCM samples; convert it to 16-bit PCM")
    if channels != 1:
        what = "stereo (2 channels)" if channels == 2 else f"{channels} channels"
        raise BadAudioError(path, f"{what}, expected mono; mix it down to one channel")
    if rate != SAMPLE_RATE:
        raise BadAudioError(
            path, f"sample rate is {rate} Hz, not {SAMPLE_RATE} Hz; the data must be resampled to 16 kHz"
        )
    if data_at is None:
        raise BadAudioError(path, "truncated: no 'data' chunk (the file ends after its header)")
    offset, size = data_at
    available = len(data) - offset
    if size == 0xFFFFFFFF:  # written by a streaming recorder that never patched the size
        size = available - (available & 1)
    if size > available:
        raise BadAudioError(path, f"truncated: the data chunk claims {size} bytes but only {available} are in the file")
    if size & 1:
        raise BadAudioError(path, f"truncated: the data chunk has an odd size ({size} bytes), half a 16-bit sample")
    if size == 0:
        raise BadAudioError(path, "empty: the data chunk holds no samples")
    return np.frombuffer(data, dtype="<i2", count=size // 2, offset=offset).astype(np.int16)


def _try_read(path: Path) -> np.ndarray | BadAudioError:
    # Workers hand the error back instead of raising, so the caller decides
    # (raise the first one, or record it with --skip-bad) in file order.
    try:
        return read_wav(path)
    except BadAudioError as err:
        return err


def _read_many(paths: Sequence[Path], *, workers: int | None = None, ahead: int = 64) -> Iterator[np.ndarray | BadAudioError]:
    """``_try_read`` over ``paths`` in order, on a few threads with a bounded read-ahead.

    File reads release the GIL, so two threads overlap the I/O of one file with
    the parsing of another; the bound keeps memory flat on a 100k-file tree.
    """
    if workers is None:
        workers = max(1, min(4, os.cpu_count() or 1))
    if workers <= 1 or len(paths) < 2 * ahead:
        for path in paths:
            yield _try_read(path)
        return
    pending: collections.deque[concurrent.futures.Future] = collections.deque()
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="distill-read") as pool:
        it = iter(paths)
        try:
            for path in it:
                pending.append(pool.submit(_try_read, path))
                if len(pending) >= ahead * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


# --------------------------------------------------------------------------- the index


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

    @functools.cached_property
    def _split_codes(self) -> np.ndarray:
        return np.fromiter((SPLITS.index(s) for s in self.splits), dtype=np.int8, count=len(self.splits))

    def positions(self, split: str) -> np.ndarray:
        """Rows of ``split`` (ascending int64)."""
        _check_split(split)
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


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DistillError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")


@dataclass(frozen=True)
class _FileStat:
    rel: str  # posix path relative to the audio root
    path: Path
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class _Tree:
    """What a scan of a Speech Commands tree found (before any decoding)."""

    root: Path  # as given
    audio_root: Path  # where the word folders are (root, or root/audio for Kaggle's train/)
    clips: tuple[_FileStat, ...]  # sorted by rel
    noise: tuple[_FileStat, ...]  # sorted by rel
    noise_missing: bool
    list_files: tuple[_FileStat, ...]  # validation list, testing list (when both exist)
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


def _is_wav(name: str) -> bool:
    return name.lower().endswith(".wav") and not name.startswith(".")


def _scan_wavs(folder: Path, prefix: str) -> list[_FileStat]:
    found = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if _is_wav(entry.name) and entry.is_file():
                st = entry.stat()
                found.append(_FileStat(f"{prefix}{entry.name}", Path(entry.path), st.st_size, st.st_mtime_ns))
    return found


def _scan_tree(root: Path) -> _Tree:
    root = Path(root)
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise DistillError(
            f"{root}: dataset folder {what}; point --data at an extracted Speech Commands tree, "
            f"or create one with `distill data fetch` (the real data) or `distill data synth` (a small demo set)"
        )
    audio_root, list_dir = _resolve_layout(root)
    clips: list[_FileStat] = []
    words: list[str] = []
    noise: list[_FileStat] = []
    noise_missing = True
    with os.scandir(audio_root) as entries:
        subdirs = sorted(e.name for e in entries if e.is_dir())
    for name in subdirs:
        if name == BACKGROUND_NOISE_DIR:
            noise = _scan_wavs(audio_root / name, f"{name}/")
            noise_missing = not noise
        elif not name.startswith(("_", ".")):
            words.append(name)
            clips.extend(_scan_wavs(audio_root / name, f"{name}/"))
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
    list_stats = tuple(_FileStat(p.name, p, p.stat().st_size, p.stat().st_mtime_ns) for p in lists) if all(present) else ()
    clips.sort(key=lambda f: f.rel)
    noise.sort(key=lambda f: f.rel)
    return _Tree(root, audio_root, tuple(clips), tuple(noise), noise_missing, list_stats, tuple(words))


def _read_list(path: Path) -> set[str]:
    entries = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        entry = line.strip().replace("\\", "/")
        while entry.startswith("./"):
            entry = entry[2:]
        if entry:
            entries.add(entry)
    return entries


def _check_percentages(validation_percentage: float, testing_percentage: float) -> None:
    if not (0 <= validation_percentage and 0 <= testing_percentage and validation_percentage + testing_percentage <= 100):
        raise DistillError(
            f"split percentages validation={validation_percentage} testing={testing_percentage} must be >= 0 "
            f"and add up to at most 100"
        )


@dataclass(frozen=True)
class _Splitting:
    index: ClipIndex
    source: str  # "lists" or "hash"
    missing_list_entries: int


def _split_tree(tree: _Tree, *, validation_percentage: float, testing_percentage: float) -> _Splitting:
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
    return _Splitting(index, source, missing)


def index_dataset(root: Path, *, validation_percentage: float = 10.0, testing_percentage: float = 10.0) -> ClipIndex:
    """Index a Speech Commands tree (v0.01 or v0.02) without decoding anything.

    Word folders are all subfolders not starting with ``_`` (or ``.``). Splits come
    from ``validation_list.txt``/``testing_list.txt`` when both exist (list entries
    with no file on disk are ignored, with a warning), otherwise from the
    speaker-hash rule of ``splits.which_set`` with the given percentages.
    """
    _check_percentages(validation_percentage, testing_percentage)
    tree = _scan_tree(Path(root))
    splitting = _split_tree(tree, validation_percentage=validation_percentage, testing_percentage=testing_percentage)
    _warn_about(tree, splitting)
    return splitting.index


def _warn_about(tree: _Tree, splitting: _Splitting) -> None:
    if splitting.missing_list_entries:
        warnings.warn(
            f"{tree.root}: {splitting.missing_list_entries} entries of {VALIDATION_LIST}/{TESTING_LIST} have no file "
            f"on disk and were ignored (expected for a partial copy of the dataset)",
            stacklevel=3,
        )
    if tree.noise_missing:
        warnings.warn(f"{tree.root}: {_NO_NOISE_NOTE}", stacklevel=3)


# --------------------------------------------------------------------------- the decoded cache


def _cache_home() -> Path:
    env = os.environ.get("DISTILL_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "distill"


def default_cache_dir(folder: Path, *, kind: str = "decoded", home: Path | None = None) -> Path:
    """Where the decoded cache of ``folder`` lives: ``<home>/<kind>/<sha1(realpath(folder))[:16]>``.

    ``home`` is the ``cache_dir`` a command was given, else ``$DISTILL_CACHE_DIR``,
    else ``~/.cache/distill`` (``$XDG_CACHE_HOME/distill`` when set). ``kind`` is
    ``decoded`` for labeled trees and ``unlabeled`` for unlabeled folders, so one
    ``--cache-dir`` serves any number of datasets without collisions. Outside the
    dataset tree on purpose: datasets are often on read-only or shared storage.
    """
    key = hashlib.sha1(os.path.realpath(folder).encode("utf-8")).hexdigest()[:16]
    return (Path(home).expanduser() if home is not None else _cache_home()) / kind / key


def _fingerprint(kind: str, files: Iterable[_FileStat], **settings: Any) -> str:
    h = hashlib.sha1()
    h.update(f"distill-cache {kind} format={CACHE_FORMAT}\n".encode())
    for key in sorted(settings):
        h.update(f"{key}={settings[key]!r}\n".encode())
    for f in files:
        h.update(f"{f.rel}\t{f.size}\t{f.mtime_ns}\n".encode())
    return h.hexdigest()


@dataclass
class _Cache:
    dir: Path
    meta: dict[str, Any]
    audio: np.ndarray  # int16 memmap (N, CLIP_SAMPLES), read-only


def _open_cache(cache_dir: Path, *, kind: str, fingerprint: str) -> _Cache | None:
    """The cache in ``cache_dir`` if it is complete and matches ``fingerprint``, else None."""
    index_path = cache_dir / _INDEX_FILE
    try:
        with open(index_path, encoding="utf-8") as fh:
            meta = json.load(fh)
        if meta.get("format") != CACHE_FORMAT or meta.get("kind") != kind or meta.get("fingerprint") != fingerprint:
            return None
        audio = np.load(cache_dir / _AUDIO_FILE, mmap_mode="r")
        if audio.dtype != np.int16 or audio.shape != (meta["rows"], CLIP_SAMPLES):
            return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return _Cache(cache_dir, meta, audio)


def _is_ours(folder: Path) -> bool:
    try:
        return folder.is_dir() and (not any(folder.iterdir()) or (folder / _INDEX_FILE).exists() or (folder / _AUDIO_FILE).exists())
    except OSError:
        return False


def _temp_prefix(cache_dir: Path, what: str) -> str:
    return f".{cache_dir.name}.{what}-{socket.gethostname()}-"


def _remove_stale_builds(cache_dir: Path) -> None:
    # A build killed outright (SIGKILL, power loss) leaves its temp folder (or the
    # old cache it was replacing); the pid in the name tells whether its process
    # is still alive on this host.
    prefixes = (_temp_prefix(cache_dir, "building"), _temp_prefix(cache_dir, "old"))
    try:
        candidates = [(p, pre) for p in cache_dir.parent.iterdir() for pre in prefixes if p.name.startswith(pre)]
    except OSError:
        return
    for path, prefix in candidates:
        try:
            pid = int(path.name[len(prefix) :].split("-", 1)[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except (ValueError, OSError):  # not our naming, or alive but not ours to signal
            continue


def _shrink_npy_rows(path: Path, rows: int) -> None:
    """Cut an ``(N, 16000)`` .npy down to its first ``rows`` rows in place.

    Rewrites the shape in the header (same header length, padded with spaces as
    numpy itself pads) and truncates the file, instead of copying gigabytes when
    ``--skip-bad`` dropped a few files.
    """
    with open(path, "r+b") as fh:
        major, _ = np.lib.format.read_magic(fh)
        if major == 1:
            np.lib.format.read_array_header_1_0(fh)
        else:
            np.lib.format.read_array_header_2_0(fh)
        data_offset = fh.tell()
        header_start = 10 if major == 1 else 12
        header_len = data_offset - header_start
        text = "{'descr': '<i2', 'fortran_order': False, 'shape': (%d, %d), }" % (rows, CLIP_SAMPLES)
        if len(text) + 1 > header_len:
            raise RuntimeError("npy header grew while shrinking; cannot happen for fewer rows")
        fh.seek(header_start)
        fh.write((text + " " * (header_len - len(text) - 1) + "\n").encode("latin1"))
        fh.truncate(data_offset + rows * CLIP_SAMPLES * 2)
        fh.flush()
        os.fsync(fh.fileno())


def _decode_into(
    paths: Sequence[Path], names: Sequence[str], audio: np.ndarray, *, skip_bad: bool, progress: bool, description: str
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Decode ``paths`` into consecutive rows of ``audio``; returns (kept positions, bad files)."""
    kept: list[int] = []
    bad: list[tuple[str, str]] = []
    row = 0
    results = _read_many(paths)
    for i, result in enumerate(track(results, total=len(paths), description=description, disable=not progress)):
        if isinstance(result, BadAudioError):
            if not skip_bad:
                raise result
            bad.append((names[i], result.reason))
            continue
        n = min(len(result), CLIP_SAMPLES)
        audio[row, :n] = result[:n]
        kept.append(i)
        row += 1
    return np.asarray(kept, dtype=np.int64), bad


def _build_cache(
    cache_dir: Path,
    *,
    kind: str,
    fingerprint: str,
    paths: Sequence[Path],
    names: Sequence[str],
    skip_bad: bool,
    progress: bool,
    description: str,
    finish: Callable[[Path, np.ndarray, list[tuple[str, str]]], dict[str, Any]],
) -> _Cache:
    """Decode ``paths`` into a new cache and move it into place atomically.

    Everything is written into a temp folder beside ``cache_dir`` and renamed at
    the end, ``index.json`` (the file that makes a cache loadable) last; a crash
    at any point leaves either the old cache or none. ``finish(tmp, kept, bad)``
    writes the caller's extra files and returns extra ``index.json`` fields.
    """
    cache_dir = Path(cache_dir)
    if cache_dir.exists() and not _is_ours(cache_dir):
        raise DistillError(
            f"{cache_dir}: exists and is not a distill decode cache; remove it or pass another --cache-dir"
        )
    cache_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_builds(cache_dir)
    tmp = cache_dir.parent / f"{_temp_prefix(cache_dir, 'building')}{os.getpid()}-{os.urandom(4).hex()}"
    tmp.mkdir()
    try:
        audio = np.lib.format.open_memmap(tmp / _AUDIO_FILE, mode="w+", dtype=np.int16, shape=(len(paths), CLIP_SAMPLES))
        try:
            kept, bad = _decode_into(paths, names, audio, skip_bad=skip_bad, progress=progress, description=description)
            audio.flush()
        finally:
            del audio  # unmap before resizing or renaming
        if not len(kept):
            raise DistillError(
                f"none of the {len(paths)} files could be decoded (the first, {bad[0][0]}: {bad[0][1]}); "
                f"is this the right folder? Fix or convert the files (16 kHz, 16-bit PCM, mono)"
            )
        if len(kept) < len(paths):
            _shrink_npy_rows(tmp / _AUDIO_FILE, len(kept))
        else:
            with open(tmp / _AUDIO_FILE, "rb+") as fh:
                os.fsync(fh.fileno())
        extra = finish(tmp, kept, bad)  # may append to ``bad`` (e.g. bad noise recordings)
        write_text(tmp / _BAD_FILE, "".join(f"{p}\t{r}\n" for p, r in bad))
        meta = {
            "format": CACHE_FORMAT,
            "kind": kind,
            "fingerprint": fingerprint,
            "distill_version": __version__,
            "rows": int(len(kept)),
            "bad_files": [list(b) for b in bad],
            **extra,
        }
        write_json(tmp / _INDEX_FILE, meta)
        _move_into_place(tmp, cache_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    opened = _open_cache(cache_dir, kind=kind, fingerprint=fingerprint)
    if opened is None:  # another process replaced it between our rename and this load
        raise DistillError(f"{cache_dir}: the decode cache changed while it was being written; run the command again")
    return opened


def _move_into_place(tmp: Path, cache_dir: Path) -> None:
    old = None
    if cache_dir.exists():
        old = cache_dir.parent / f"{_temp_prefix(cache_dir, 'old')}{os.getpid()}-{os.urandom(4).hex()}"
        os.rename(cache_dir, old)
    try:
        os.rename(tmp, cache_dir)
    except OSError:
        # A concurrent build of the same tree won the race; its cache is as good as ours.
        if not cache_dir.exists():
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    try:  # make the rename itself durable
        fd = os.open(cache_dir.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def _waveforms(audio: np.ndarray, rows: Any) -> np.ndarray:
    # cast, then scale in place: twice as fast as np.multiply(int16, float32, dtype=float32)
    clips = np.array(audio[rows], dtype=np.float32)
    clips *= SCALE
    return clips


class DecodedDataset:
    """A decoded Speech Commands tree: ``audio[i]`` is ``index.files[i]`` as int16 samples.

    Attributes: ``root`` (as given), ``audio_root`` (folder with the word folders),
    ``cache_dir``, ``index`` (ClipIndex), ``audio`` (read-only int16 memmap
    ``(N, 16000)``), ``noise`` (float32 background recordings, full length),
    ``noise_names``, ``bad_files`` (``(relpath, reason)`` pairs left out with
    ``skip_bad``), ``split_source`` (``"lists"`` or ``"hash"``),
    ``missing_list_entries``, ``notes`` (things the user should know, e.g. no
    background noise), ``fingerprint``.
    """

    def __init__(self, *, root: Path, audio_root: Path, cache: _Cache, noise: tuple[np.ndarray, ...]):
        meta = cache.meta
        self.root = Path(root)
        self.audio_root = Path(audio_root)
        self.cache_dir = cache.dir
        self.fingerprint: str = meta["fingerprint"]
        self.index = ClipIndex.from_json(meta["index"])
        self.audio = cache.audio
        self.noise = noise
        self.noise_names: tuple[str, ...] = tuple(meta["noise_names"])
        self.bad_files: tuple[tuple[str, str], ...] = tuple((p, r) for p, r in meta["bad_files"])
        self.split_source: str = meta["split_source"]
        self.missing_list_entries: int = meta["missing_list_entries"]
        self.notes: tuple[str, ...] = tuple(meta["notes"])
        self.word_folders: tuple[str, ...] = tuple(meta["word_folders"])

    def __len__(self) -> int:
        return len(self.index)

    def __repr__(self) -> str:
        return f"DecodedDataset({str(self.root)!r}, clips={len(self)}, cache={str(self.cache_dir)!r})"

    def waveforms(self, rows: Any) -> np.ndarray:
        """float32 ``(len(rows), 16000)`` in [-1, 1] for clip rows (an int gives ``(16000,)``)."""
        return _waveforms(self.audio, rows)


def open_dataset(
    root: Path,
    *,
    cache_dir: Path | None = None,
    skip_bad: bool = False,
    progress: bool = True,
    validation_percentage: float = 10.0,
    testing_percentage: float = 10.0,
) -> DecodedDataset:
    """Open a Speech Commands tree through its decoded cache, building the cache if needed.

    The first call decodes every clip (with a progress bar) into
    ``default_cache_dir(root, home=cache_dir)``, i.e. ``<cache_dir>/decoded/<key>``
    (``cache_dir`` is a cache home that any number of datasets and unlabeled
    folders can share; default ``$DISTILL_CACHE_DIR`` or ``~/.cache/distill``);
    the folder used is ``DecodedDataset.cache_dir``. Later calls only stat the tree to check
    the fingerprint and memory-map the cache. A file added, removed or modified,
    a changed list file, other split percentages or another ``skip_bad`` rebuild.
    Without ``skip_bad`` the first bad file raises its ``BadAudioError``; with it,
    bad files are left out of the index and listed in ``bad_files`` and in
    ``bad_files.tsv`` in the cache folder.
    """
    _check_percentages(validation_percentage, testing_percentage)
    root = Path(root)
    tree = _scan_tree(root)
    cache_dir = default_cache_dir(root, home=cache_dir)
    fingerprint = _fingerprint(
        "labeled",
        (*tree.clips, *tree.noise, *tree.list_files),
        validation_percentage=float(validation_percentage),
        testing_percentage=float(testing_percentage),
        skip_bad=bool(skip_bad),
    )
    cache = _open_cache(cache_dir, kind="labeled", fingerprint=fingerprint)
    if cache is None:
        splitting = _split_tree(tree, validation_percentage=validation_percentage, testing_percentage=testing_percentage)
        _warn_about(tree, splitting)

        # Noise first: a bad recording should fail before minutes of clip decoding.
        noise_names, noise_arrays, noise_bad = _read_noise(tree, skip_bad=skip_bad)

        def finish(tmp: Path, kept: np.ndarray, bad: list[tuple[str, str]]) -> dict[str, Any]:
            _write_noise(tmp, noise_arrays)
            bad.extend(noise_bad)
            notes = [] if noise_names else [_NO_NOISE_NOTE]
            if splitting.missing_list_entries:
                notes.append(
                    f"{splitting.missing_list_entries} entries of {VALIDATION_LIST}/{TESTING_LIST} have no file on disk "
                    f"and were ignored"
                )
            if bad:
                notes.append(f"{len(bad)} bad files were skipped (--skip-bad); see {_BAD_FILE} in the cache folder")
            return {
                "root": str(root),
                "audio_root": str(tree.audio_root),
                "index": splitting.index.subset(kept).to_json(),
                "noise_names": noise_names,
                "split_source": splitting.source,
                "missing_list_entries": splitting.missing_list_entries,
                "word_folders": list(tree.words),
                "notes": notes,
            }

        cache = _build_cache(
            cache_dir,
            kind="labeled",
            fingerprint=fingerprint,
            paths=[c.path for c in tree.clips],
            names=[c.rel for c in tree.clips],
            skip_bad=skip_bad,
            progress=progress,
            description=f"decoding {len(tree.clips)} clips",
            finish=finish,
        )
    return DecodedDataset(root=root, audio_root=tree.audio_root, cache=cache, noise=_load_noise(cache))


def _read_noise(tree: _Tree, *, skip_bad: bool) -> tuple[list[str], list[np.ndarray], list[tuple[str, str]]]:
    names: list[str] = []
    arrays: list[np.ndarray] = []
    bad: list[tuple[str, str]] = []
    for f in tree.noise:
        try:
            arrays.append(read_wav(f.path))  # int16: half the size of float32, converted on load
        except BadAudioError as err:
            if not skip_bad:
                raise
            bad.append((f.rel, err.reason))
            continue
        names.append(f.rel.split("/", 1)[1])
    return names, arrays, bad


def _write_noise(tmp: Path, arrays: Sequence[np.ndarray]) -> None:
    with open(tmp / _NOISE_FILE, "wb") as fh:
        np.savez(fh, **{f"noise_{i}": a for i, a in enumerate(arrays)})
        fh.flush()
        os.fsync(fh.fileno())


def _load_noise(cache: _Cache) -> tuple[np.ndarray, ...]:
    count = len(cache.meta["noise_names"])
    if not count:
        return ()
    with np.load(cache.dir / _NOISE_FILE, allow_pickle=False) as npz:
        return tuple(np.multiply(npz[f"noise_{i}"], SCALE, dtype=np.float32) for i in range(count))


# --------------------------------------------------------------------------- example sets


@dataclass(frozen=True)
class MixConfig:
    """How much ``silence`` and ``unknown`` to add, in percent of the split's target-word clips.

    The TensorFlow tutorial's defaults (``--silence_percentage 10 --unknown_percentage 10``).
    """

    silence_percentage: float = 10.0
    unknown_percentage: float = 10.0

    def __post_init__(self) -> None:
        if self.silence_percentage < 0 or self.unknown_percentage < 0:
            raise DistillError(f"MixConfig: percentages must be >= 0, got {self}")


@dataclass(frozen=True, eq=False)
class ExampleSet:
    """Aligned int64 arrays describing the examples of one split, one entry per example.

    ``rows``: row of ``DecodedDataset.audio``, or -1 for a generated silence example;
    ``labels``: class index (``labels.CLASSES`` order); ``seeds``: per-example
    non-negative seed (picks the silence window and gain; augmentation views
    derive from it), all distinct. Later stages store their outputs in this
    order, so save the set next to them.
    """

    rows: np.ndarray
    labels: np.ndarray
    seeds: np.ndarray
    split: str

    def __post_init__(self) -> None:
        arrays = {}
        for name in ("rows", "labels", "seeds"):
            value = np.array(getattr(self, name), dtype=np.int64, copy=True).reshape(-1)
            value.flags.writeable = False  # shared by subsets and callers; nobody may edit it in place
            arrays[name] = value
            object.__setattr__(self, name, value)
        if not (len(arrays["rows"]) == len(arrays["labels"]) == len(arrays["seeds"])):
            raise ValueError("ExampleSet: rows, labels and seeds must have the same length")
        if len(arrays["labels"]) and (arrays["labels"].min() < 0 or arrays["labels"].max() >= len(CLASSES)):
            raise ValueError("ExampleSet: labels must be class indices 0..11")
        _check_split(self.split)

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        counts = np.bincount(self.labels, minlength=len(CLASSES)) if len(self) else np.zeros(len(CLASSES), int)
        return f"ExampleSet(split={self.split!r}, n={len(self)}, silence={counts[SILENCE_INDEX]}, unknown={counts[UNKNOWN_INDEX]})"

    def subset(self, positions: Sequence[int] | np.ndarray) -> "ExampleSet":
        positions = np.asarray(positions)
        return ExampleSet(rows=self.rows[positions], labels=self.labels[positions], seeds=self.seeds[positions], split=self.split)

    def save(self, path: str | os.PathLike) -> Path:
        """Write an ``.npz`` atomically (the exact ``path``, no suffix added)."""
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, rows=self.rows, labels=self.labels, seeds=self.seeds, split=np.array(self.split), format=np.array(1))
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ExampleSet":
        try:
            with np.load(path, allow_pickle=False) as npz:
                return cls(rows=npz["rows"], labels=npz["labels"], seeds=npz["seeds"], split=str(npz["split"]))
        except FileNotFoundError as err:
            raise DistillError(f"{path}: no example set there (written by ExampleSet.save)") from err
        except (KeyError, ValueError, OSError) as err:
            raise DistillError(f"{path}: not an example set written by distill ({err})") from err


_MASK63 = np.uint64((1 << 63) - 1)


def _mix63(x: np.ndarray) -> np.ndarray:
    """A bijection of [0, 2**63): xorshift-multiply rounds (splitmix64's, cut to 63 bits).

    Each step (right xorshift, multiply by an odd constant mod 2**63) is invertible
    on 63-bit values, so distinct inputs give distinct, well-scrambled outputs.
    """
    x = np.asarray(x, dtype=np.uint64) & _MASK63
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = (x * np.uint64(0xBF58476D1CE4E5B9)) & _MASK63
        x = x ^ (x >> np.uint64(27))
        x = (x * np.uint64(0x94D049BB133111EB)) & _MASK63
        x = x ^ (x >> np.uint64(31))
    return x


def _split_code(split: str) -> int:
    return int.from_bytes(hashlib.sha1(split.encode()).digest()[:7], "little")


def _example_seeds(seed: int, split: str, n: int) -> np.ndarray:
    # Split in the base, so validation silence is not a copy of training silence.
    base = _mix63(np.array([(seed * 0x9E3779B97F4A7C15 + _split_code(split)) & ((1 << 63) - 1)], dtype=np.uint64))[0]
    with np.errstate(over="ignore"):
        x = (base + np.arange(n, dtype=np.uint64)) & _MASK63
    return _mix63(x).astype(np.int64)


def make_examples(
    dataset: DecodedDataset, *, split: str, mix: MixConfig = MixConfig(), seed: int = 0, all_unknown: bool = False
) -> ExampleSet:
    """The examples of ``split``, composed like the TensorFlow tutorial's ``input_data.py``.

    Every target-word clip of the split; ``ceil(n_target * unknown_percentage / 100)``
    clips drawn without replacement from the split's other words (all of them with
    ``all_unknown``, for teacher-prediction pools; fewer if the split has fewer);
    ``ceil(n_target * silence_percentage / 100)`` silence examples (row -1).
    Clip examples come in row order (cache-friendly reads), silence last; shuffle
    when you train. Deterministic in ``seed``.
    """
    _check_split(split)
    index = dataset.index
    positions = index.positions(split)
    labels = index.labels[positions]
    target = positions[labels != UNKNOWN_INDEX]
    others = positions[labels == UNKNOWN_INDEX]
    n_target = len(target)
    rng = np.random.default_rng([seed & ((1 << 63) - 1), _split_code(split), 1])
    if all_unknown:
        unknown = others
    else:
        n_unknown = min(math.ceil(n_target * mix.unknown_percentage / 100.0), len(others))
        unknown = np.sort(rng.choice(others, size=n_unknown, replace=False)) if n_unknown else others[:0]
    n_silence = math.ceil(n_target * mix.silence_percentage / 100.0)
    clip_rows = np.sort(np.concatenate([target, unknown]))
    rows = np.concatenate([clip_rows, np.full(n_silence, -1, dtype=np.int64)])
    example_labels = np.concatenate([index.labels[clip_rows], np.full(n_silence, SILENCE_INDEX, dtype=np.int64)])
    return ExampleSet(rows=rows, labels=example_labels, seeds=_example_seeds(seed, split, len(rows)), split=split)


def silence_waveform(noise: Sequence[np.ndarray], seed: int) -> np.ndarray:
    """A 1 s "silence" example: a window of a background recording at a random gain.

    The recording, offset and gain (log-uniform over ``SILENCE_GAIN_DB``) come from
    ``seed``; about ``SILENCE_ZERO_FRACTION`` of seeds give exact zeros, like the
    digital silence of a muted microphone. With no recordings: zeros.
    """
    rng = np.random.default_rng(int(seed) & ((1 << 64) - 1))
    out = np.zeros(CLIP_SAMPLES, dtype=np.float32)
    if rng.random() < SILENCE_ZERO_FRACTION or not len(noise):
        return out
    recording = noise[int(rng.integers(len(noise)))]
    start = int(rng.integers(0, max(len(recording) - CLIP_SAMPLES, 0) + 1))
    window = recording[start : start + CLIP_SAMPLES]
    gain = np.float32(10.0 ** (rng.uniform(*SILENCE_GAIN_DB) / 20.0))
    np.multiply(window, gain, out=out[: len(window)], dtype=np.float32)
    np.clip(out, -1.0, 1.0, out=out)
    return out


def materialize(dataset: DecodedDataset, examples: ExampleSet, positions: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
    """float32 ``(B, 16000)`` waveforms of ``examples`` (or of ``examples[positions]``).

    Clip rows are one vectorised gather from the memmap; silence rows are
    generated from their seeds.
    """
    rows, seeds = examples.rows, examples.seeds
    if positions is not None:
        positions = np.asarray(positions)
        rows, seeds = rows[positions], seeds[positions]
    is_clip = rows >= 0
    if is_clip.all():
        out = np.array(dataset.audio[rows], dtype=np.float32)
    else:
        out = np.zeros((len(rows), CLIP_SAMPLES), dtype=np.float32)
        out[is_clip] = dataset.audio[rows[is_clip]]
    out *= SCALE
    for i in np.flatnonzero(~is_clip):
        out[i] = silence_waveform(dataset.noise, int(seeds[i]))
    return out


# --------------------------------------------------------------------------- unlabeled folders


def _resolve_unlabeled(folder: Path) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise DistillError(f"{folder}: unlabeled folder {what}; point it at the extracted Kaggle test set (test/audio)")
    # Kaggle's test.7z extracts to test/audio/clip_*.wav; accept test/ as well.
    if not any(_is_wav(e.name) for e in os.scandir(folder)) and (folder / "audio").is_dir():
        return folder / "audio"
    return folder


def _unlabeled_stats(folder: Path) -> list[_FileStat]:
    files = _scan_wavs(folder, "")
    clips = [f for f in files if f.rel.startswith("clip_")]
    chosen = clips or files
    if not chosen:
        raise DistillError(f"{folder}: no .wav files (expected the Kaggle test clips, clip_*.wav)")
    chosen.sort(key=lambda f: f.rel)
    return chosen


def list_unlabeled(folder: Path) -> list[str]:
    """Sorted wav names in ``folder``: the ``clip_*.wav`` files, or every ``*.wav`` if none match."""
    return [f.rel for f in _unlabeled_stats(_resolve_unlabeled(folder))]


def iter_unlabeled(
    folder: Path,
    *,
    batch_size: int = 256,
    names: Sequence[str] | None = None,
    skip_bad: bool = False,
    bad_report: list | None = None,
) -> Iterator[tuple[list[str], np.ndarray]]:
    """Stream ``(names, float32 (b, 16000))`` batches of an unlabeled folder, in name order.

    Never holds more than a batch (plus a short read-ahead) in memory. Bad files
    raise, or with ``skip_bad`` are left out of their batch and appended to
    ``bad_report`` as ``(name, reason)``; a batch can then be shorter, and one
    with only bad files is not yielded.
    """
    if batch_size < 1:
        raise DistillError(f"batch_size must be >= 1, got {batch_size}")
    folder = _resolve_unlabeled(folder)
    names = list(names) if names is not None else list_unlabeled(folder)
    results = _read_many([folder / n for n in names])
    for start in range(0, len(names), batch_size):
        batch_names = names[start : start + batch_size]
        kept: list[str] = []
        out = np.zeros((len(batch_names), CLIP_SAMPLES), dtype=np.float32)
        for name in batch_names:
            result = next(results)
            if isinstance(result, BadAudioError):
                if not skip_bad:
                    raise result
                if bad_report is not None:
                    bad_report.append((name, result.reason))
                continue
            n = min(len(result), CLIP_SAMPLES)
            np.multiply(result[:n], SCALE, out=out[len(kept), :n], dtype=np.float32)
            kept.append(name)
        if kept:
            yield kept, out[: len(kept)]


class DecodedUnlabeled:
    """A decoded unlabeled folder: ``audio[i]`` is ``names[i]`` as int16 samples.

    Attributes: ``folder``, ``cache_dir``, ``names``, ``audio`` (read-only int16
    memmap ``(N, 16000)``), ``bad_files`` (``(name, reason)`` left out with ``skip_bad``).
    """

    def __init__(self, *, folder: Path, cache: _Cache):
        self.folder = Path(folder)
        self.cache_dir = cache.dir
        self.fingerprint: str = cache.meta["fingerprint"]
        self.names: tuple[str, ...] = tuple(cache.meta["names"])
        self.audio = cache.audio
        self.bad_files: tuple[tuple[str, str], ...] = tuple((p, r) for p, r in cache.meta["bad_files"])

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"DecodedUnlabeled({str(self.folder)!r}, clips={len(self)}, cache={str(self.cache_dir)!r})"

    def waveforms(self, rows: Any) -> np.ndarray:
        """float32 ``(len(rows), 16000)`` in [-1, 1]."""
        return _waveforms(self.audio, rows)


def open_unlabeled(folder: Path, *, cache_dir: Path | None = None, skip_bad: bool = False, progress: bool = True) -> DecodedUnlabeled:
    """Open an unlabeled folder (the Kaggle test set) through a decoded cache, like ``open_dataset``.

    Its cache: ``default_cache_dir(folder, kind="unlabeled", home=cache_dir)``, i.e.
    ``<cache_dir>/unlabeled/<key>``, so it can share a ``cache_dir`` with ``open_dataset``.
    """
    folder = _resolve_unlabeled(Path(folder))
    files = _unlabeled_stats(folder)
    cache_dir = default_cache_dir(folder, kind="unlabeled", home=cache_dir)
    fingerprint = _fingerprint("unlabeled", files, skip_bad=bool(skip_bad))
    cache = _open_cache(cache_dir, kind="unlabeled", fingerprint=fingerprint)
    if cache is None:
        names = [f.rel for f in files]

        def finish(tmp: Path, kept: np.ndarray, bad: list[tuple[str, str]]) -> dict[str, Any]:
            return {"folder": str(folder), "names": [names[i] for i in kept]}

        cache = _build_cache(
            cache_dir,
            kind="unlabeled",
            fingerprint=fingerprint,
            paths=[f.path for f in files],
            names=names,
            skip_bad=skip_bad,
            progress=progress,
            description=f"decoding {len(files)} unlabeled clips",
            finish=finish,
        )
    return DecodedUnlabeled(folder=folder, cache=cache)


# --------------------------------------------------------------------------- stats


@dataclass(frozen=True)
class DatasetStats:
    """What a Speech Commands tree holds, as decoded (so bad files are known).

    ``class_counts[split][class]`` counts clips (``silence`` is 0: silence examples
    are generated from the background noise); ``speaker_counts[split]`` distinct
    speakers; ``word_counts[word]`` clips per word folder; ``noise_files`` is
    ``(name, seconds)``; ``bad_files`` is ``(relpath, reason)``.
    """

    root: str
    cache_dir: str
    total_clips: int
    split_source: str
    class_counts: dict[str, dict[str, int]]
    speaker_counts: dict[str, int]
    word_counts: dict[str, int]
    noise_files: tuple[tuple[str, float], ...]
    bad_files: tuple[tuple[str, str], ...]
    missing_list_entries: int = 0
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_table(self) -> str:
        """An aligned plain-text report (what ``distill data stats`` prints)."""
        source = f"{VALIDATION_LIST} / {TESTING_LIST}" if self.split_source == "lists" else "speaker hash rule (no list files)"
        lines = [f"{self.root}: {self.total_clips:,} clips; splits from {source}", ""]
        header = ["class", *SPLITS, "total"]
        body = []
        for name in CLASSES:
            counts = [self.class_counts[s][name] for s in SPLITS]
            body.append([name, *map(_n, counts), _n(sum(counts))])
        totals = [sum(self.class_counts[s].values()) for s in SPLITS]
        body.append(["total", *map(_n, totals), _n(sum(totals))])
        body.append(["speakers", *(_n(self.speaker_counts[s]) for s in SPLITS), _n(sum(self.speaker_counts.values()))])
        lines += _align([header, *body], right_from=1)
        lines.append("(silence examples are generated from background noise, not read from word folders)")
        lines += ["", f"word folders ({len(self.word_counts)}):"]
        lines += _align(
            [["word", "class", "clips"], *([w, CLASSES[word_to_class(w)], _n(c)] for w, c in sorted(self.word_counts.items()))],
            right_from=2,
            indent="  ",
        )
        lines += ["", f"background noise ({len(self.noise_files)}):"]
        if self.noise_files:
            lines += _align([["file", "seconds"], *([n, f"{s:.1f}"] for n, s in self.noise_files)], right_from=1, indent="  ")
        else:
            lines.append("  none (silence examples will be digital silence)")
        lines += ["", f"bad files ({len(self.bad_files)}):"]
        lines += [f"  {p}\t{r}" for p, r in self.bad_files] or ["  none"]
        if self.notes:
            lines += ["", "notes:", *(f"  - {note}" for note in self.notes)]
        lines += ["", f"decoded cache: {self.cache_dir}"]
        return "\n".join(lines) + "\n"


def _n(value: int) -> str:
    return f"{value:,}"


def _align(rows: list[list[str]], *, right_from: int, indent: str = "") -> list[str]:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    out = []
    for row in rows:
        cells = [str(c).rjust(w) if i >= right_from else str(c).ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        out.append(indent + "  ".join(cells).rstrip())
    return out


def dataset_stats(*, root: Path, skip_bad: bool = False, cache_dir: Path | None = None, progress: bool = True) -> DatasetStats:
    """Counts per split, class, speaker and word folder, noise files and bad files of a tree.

    Opens (building if needed) the decoded cache, so bad files are found and the
    next command starts from a warm cache.
    """
    ds = open_dataset(Path(root), cache_dir=cache_dir, skip_bad=skip_bad, progress=progress)
    index = ds.index
    labels = index.labels
    class_counts: dict[str, dict[str, int]] = {}
    speaker_counts: dict[str, int] = {}
    for split in SPLITS:
        pos = index.positions(split)
        counts = np.bincount(labels[pos], minlength=len(CLASSES))
        class_counts[split] = {name: int(counts[i]) for i, name in enumerate(CLASSES)}
        speaker_counts[split] = len({index.speakers[i] for i in pos})
    word_counts = {w: 0 for w in ds.word_folders}
    word_counts.update(collections.Counter(index.words))
    return DatasetStats(
        root=str(ds.root),
        cache_dir=str(ds.cache_dir),
        total_clips=len(index),
        split_source=ds.split_source,
        class_counts=class_counts,
        speaker_counts=speaker_counts,
        word_counts=dict(sorted(word_counts.items())),
        noise_files=tuple((name, len(a) / SAMPLE_RATE) for name, a in zip(ds.noise_names, ds.noise)),
        bad_files=ds.bad_files,
        missing_list_entries=ds.missing_list_entries,
        notes=ds.notes,
    )

