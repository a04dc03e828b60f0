"""The decoded cache: a dataset tree decoded once into an int16 memmap (``audio.npy``) plus ``index.json``.

The cache lives outside the dataset tree (which may be read-only) and is keyed by a
fingerprint of the tree, so an edited tree rebuilds and an unchanged one opens in a
fraction of a second.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from distill import __version__
from distill.core.errors import BadAudioError, DistillError
from distill.core.io import atomic_folder, load_archive, write_json, write_text
from distill.core.labels import (
    CLIP_SAMPLES,
)
from distill.core.progress import track
from distill.data.index import NO_NOISE_NOTE, TESTING_LIST, VALIDATION_LIST, ClipIndex, FileStat, Tree, check_percentages, scan_tree, split_tree, warn_about
from distill.data.wav import int16_to_float32, read_many, read_wav

# Bumped whenever the cache layout or decoding changes, so old caches rebuild.
CACHE_FORMAT = 1
_AUDIO_FILE = "audio.npy"
_INDEX_FILE = "index.json"
_NOISE_FILE = "noise.npz"
_BAD_FILE = "bad_files.tsv"


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


def cache_fingerprint(kind: str, files: Iterable[FileStat], **settings: Any) -> str:
    """What a cache of ``kind`` was built from: the format, ``settings`` and every file's name, size and mtime."""
    h = hashlib.sha1()
    h.update(f"distill-cache {kind} format={CACHE_FORMAT}\n".encode())
    for key in sorted(settings):
        h.update(f"{key}={settings[key]!r}\n".encode())
    for f in files:
        h.update(f"{f.rel}\t{f.size}\t{f.mtime_ns}\n".encode())
    return h.hexdigest()


def rows_digest(audio: np.ndarray, block: int = 1024) -> str:
    """SHA-256 of decoded int16 rows (little-endian bytes, row after row), read ``block`` rows at a time."""
    h = hashlib.sha256()
    for start in range(0, len(audio), block):
        h.update(np.ascontiguousarray(audio[start : start + block]).astype("<i2", copy=False).tobytes())
    return h.hexdigest()


@dataclass
class Cache:
    """An opened decode cache: its folder, ``index.json`` and the audio rows."""

    dir: Path
    meta: dict[str, Any]
    audio: np.ndarray  # int16 memmap (N, CLIP_SAMPLES), read-only


def open_cache(cache_dir: Path, *, kind: str, fingerprint: str) -> Cache | None:
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
    return Cache(cache_dir, meta, audio)


def _is_ours(folder: Path) -> bool:
    try:
        return folder.is_dir() and (not any(folder.iterdir()) or (folder / _INDEX_FILE).exists() or (folder / _AUDIO_FILE).exists())
    except OSError:
        return False


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
    results = read_many(paths)
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


def build_cache(
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
) -> Cache:
    """Decode ``paths`` into a new cache and move it into place atomically.

    Everything is written into a temp folder beside ``cache_dir`` (``atomic_folder``)
    and renamed at the end, ``index.json`` (the file that makes a cache loadable)
    last; a crash at any point leaves either the old cache or none. ``finish(tmp, kept, bad)``
    writes the caller's extra files and returns extra ``index.json`` fields.
    """
    cache_dir = Path(cache_dir)
    if cache_dir.exists() and not _is_ours(cache_dir):
        raise DistillError(
            f"{cache_dir}: exists and is not a distill decode cache; remove it or pass another --cache-dir"
        )
    with atomic_folder(cache_dir) as tmp:
        audio = np.lib.format.open_memmap(tmp / _AUDIO_FILE, mode="w+", dtype=np.int16, shape=(len(paths), CLIP_SAMPLES))
        try:
            kept, bad = _decode_into(paths, names, audio, skip_bad=skip_bad, progress=progress, description=description)
            audio.flush()
            audio_sha256 = rows_digest(audio[: len(kept)])  # the kept rows are the first ones; read back while in the page cache
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
            "audio_sha256": audio_sha256,
            "bad_files": [list(b) for b in bad],
            **extra,
        }
        write_json(tmp / _INDEX_FILE, meta)
    # a concurrent build of the same tree may have won the rename: its cache is as good as ours
    opened = open_cache(cache_dir, kind=kind, fingerprint=fingerprint)
    if opened is None:  # another process replaced it between our rename and this load
        raise DistillError(f"{cache_dir}: the decode cache changed while it was being written; run the command again")
    return opened


class DecodedAudio:
    """What every decoded cache holds, row for row: ``audio`` (read-only int16 memmap ``(N, 16000)``),
    ``bad_files`` (``(name, reason)`` pairs left out with ``skip_bad``), ``cache_dir`` and ``fingerprint``.

    ``DecodedDataset`` (a labeled tree) and ``DecodedUnlabeled`` (a folder of clips) add what rows mean.

    ``fingerprint`` is the cache's key (file names, sizes and modification times: cheap to check, but
    another for a copy of the same files); ``content_fingerprint`` is what artefacts record of their data.
    """

    def __init__(self, *, source: Path, cache: Cache):
        self._source = Path(source)
        self.cache_dir = cache.dir
        self.fingerprint: str = cache.meta["fingerprint"]
        self._kind: str = cache.meta["kind"]
        self._audio_sha256: str | None = cache.meta.get("audio_sha256")  # caches built before it existed: hashed on demand
        self.audio = cache.audio
        self.bad_files: tuple[tuple[str, str], ...] = tuple((p, r) for p, r in cache.meta["bad_files"])

    def __len__(self) -> int:
        return len(self.audio)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self._source)!r}, clips={len(self)}, cache={str(self.cache_dir)!r})"

    def waveforms(self, rows: Any) -> np.ndarray:
        """float32 ``(len(rows), 16000)`` in [-1, 1] for clip rows (an int gives ``(16000,)``)."""
        return int16_to_float32(self.audio[rows])

    @functools.cached_property
    def content_fingerprint(self) -> str:
        """SHA-256 of what the data is, wherever it lies: the decoded samples of every row and what each row
        means (``_content``: names relative to the folder, labels, splits, background noise), never a path or
        a time. A copied or moved folder keeps it; a changed clip, name or split changes it."""
        h = hashlib.sha256(f"distill-content {self._kind}\n".encode())
        h.update(f"audio {self._audio_sha256 or rows_digest(self.audio)}\n".encode())
        h.update(json.dumps(self._content(), sort_keys=True, separators=(",", ":")).encode())
        return h.hexdigest()

    def _content(self) -> dict[str, Any]:
        """What the rows mean, JSON-ready, for ``content_fingerprint``."""
        return {}


class DecodedDataset(DecodedAudio):
    """A decoded Speech Commands tree: ``audio[i]`` is ``index.files[i]`` as int16 samples.

    Attributes, besides ``DecodedAudio``'s: ``root`` (as given), ``audio_root``
    (folder with the word folders), ``index`` (ClipIndex), ``noise`` (float32
    background recordings, full length), ``noise_names``, ``split_source``
    (``"lists"`` or ``"hash"``), ``missing_list_entries``, ``notes`` (things the
    user should know, e.g. no background noise), ``word_folders``.
    """

    def __init__(self, *, root: Path, audio_root: Path, cache: Cache, noise: tuple[np.ndarray, ...]):
        super().__init__(source=root, cache=cache)
        meta = cache.meta
        self.root = Path(root)
        self.audio_root = Path(audio_root)
        self.index = ClipIndex.from_json(meta["index"])
        self.noise = noise
        self.noise_names: tuple[str, ...] = tuple(meta["noise_names"])
        self.split_source: str = meta["split_source"]
        self.missing_list_entries: int = meta["missing_list_entries"]
        self.notes: tuple[str, ...] = tuple(meta["notes"])
        self.word_folders: tuple[str, ...] = tuple(meta["word_folders"])

    def _content(self) -> dict[str, Any]:
        noise = [hashlib.sha256(np.ascontiguousarray(a, dtype="<f4").tobytes()).hexdigest() for a in self.noise]
        return {"index": self.index.to_json(), "noise": dict(zip(self.noise_names, noise))}


def data_difference(recorded: str, recorded_content: str | None, dataset: DecodedDataset, *, cache_dir: Path | None = None) -> str | None:
    """None when ``dataset`` holds the data an artefact recorded (``recorded`` path and ``recorded_content``,
    its ``content_fingerprint``), else a sentence saying how it differs.

    Content decides, so a copied or moved tree is the same data. An artefact made before content was recorded
    (``recorded_content`` None) can only be matched by path. When the recorded tree is still readable, the
    sentence names the clips that differ.
    """
    if recorded_content is None:
        if Path(recorded).resolve() == Path(dataset.root).resolve():
            return None
        return f"made from {recorded}, not {dataset.root} (it predates content fingerprints, so only the path can tell)"
    if recorded_content == dataset.content_fingerprint:
        return None
    head = f"made from other data than {dataset.root} holds (content {recorded_content[:12]} there, {dataset.content_fingerprint[:12]} here)"
    if Path(recorded).resolve() == Path(dataset.root).resolve():
        return f"{head}: {recorded} has changed since"
    try:
        if not Path(recorded).is_dir():
            raise DistillError(f"{recorded} does not exist")
        then = open_dataset(Path(recorded), cache_dir=cache_dir, progress=False)
    except (DistillError, OSError) as err:
        return f"{head}; the tree it was made from, {recorded}, cannot be read to compare clip by clip ({err})"
    return f"{head}: {recorded} and {dataset.root} differ in {describe_difference(then, dataset)}"


def describe_difference(a: DecodedDataset, b: DecodedDataset, *, limit: int = 3) -> str:
    """The first few clips, splits or noise recordings in which two decoded trees differ, in words."""
    rows_a = {name: i for i, name in enumerate(a.index.files)}
    rows_b = {name: i for i, name in enumerate(b.index.files)}
    found: list[str] = []
    only_a = [n for n in a.index.files if n not in rows_b]
    only_b = [n for n in b.index.files if n not in rows_a]
    if only_a:
        found.append(f"{len(only_a)} clip(s) only in the first (e.g. {only_a[0]})")
    if only_b:
        found.append(f"{len(only_b)} clip(s) only in the second (e.g. {only_b[0]})")
    shared = [n for n in a.index.files if n in rows_b]
    changed = [n for n in shared if not np.array_equal(a.audio[rows_a[n]], b.audio[rows_b[n]])]
    if changed:
        found.append(f"the audio of {len(changed)} clip(s): {', '.join(changed[:limit])}{', ...' if len(changed) > limit else ''}")
    moved = [n for n in shared if a.index.splits[rows_a[n]] != b.index.splits[rows_b[n]]]
    if moved:
        found.append(f"the split of {len(moved)} clip(s) (e.g. {moved[0]}: {a.index.splits[rows_a[moved[0]]]} / {b.index.splits[rows_b[moved[0]]]})")
    noise = a._content()["noise"], b._content()["noise"]
    if noise[0] != noise[1]:
        found.append(f"background noise ({', '.join(sorted(k for k in set(noise[0]) | set(noise[1]) if noise[0].get(k) != noise[1].get(k)))})")
    return "; ".join(found) or "what the clips mean (speakers or words)"


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
    check_percentages(validation_percentage, testing_percentage)
    root = Path(root)
    tree = scan_tree(root)
    cache_dir = default_cache_dir(root, home=cache_dir)
    fingerprint = cache_fingerprint(
        "labeled",
        (*tree.clips, *tree.noise, *tree.list_files),
        validation_percentage=float(validation_percentage),
        testing_percentage=float(testing_percentage),
        skip_bad=bool(skip_bad),
    )
    cache = open_cache(cache_dir, kind="labeled", fingerprint=fingerprint)
    if cache is None:
        splitting = split_tree(tree, validation_percentage=validation_percentage, testing_percentage=testing_percentage)
        warn_about(tree, splitting)

        # Noise first: a bad recording should fail before minutes of clip decoding.
        noise_names, noise_arrays, noise_bad = _read_noise(tree, skip_bad=skip_bad)

        def finish(tmp: Path, kept: np.ndarray, bad: list[tuple[str, str]]) -> dict[str, Any]:
            _write_noise(tmp, noise_arrays)
            bad.extend(noise_bad)
            notes = [] if noise_names else [NO_NOISE_NOTE]
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

        cache = build_cache(
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
    dataset = DecodedDataset(root=root, audio_root=tree.audio_root, cache=cache, noise=_load_noise(cache))
    report_skipped(dataset, root)
    return dataset


_REPORTED: set[Path] = set()


def report_skipped(audio: DecodedAudio, source: Path) -> None:
    """Say on stderr how many bad files ``--skip-bad`` left out of ``source`` and where they are listed,
    once per process and cache: a command that skips data says so every time it runs, not only when it decodes."""
    if not audio.bad_files or audio.cache_dir in _REPORTED:
        return
    _REPORTED.add(audio.cache_dir)
    print(f"warning: {len(audio.bad_files)} bad file(s) of {source} skipped (--skip-bad), e.g. {audio.bad_files[0][0]}; "
          f"all are listed in {Path(audio.cache_dir) / _BAD_FILE}", file=sys.stderr)


def _read_noise(tree: Tree, *, skip_bad: bool) -> tuple[list[str], list[np.ndarray], list[tuple[str, str]]]:
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


def _load_noise(cache: Cache) -> tuple[np.ndarray, ...]:
    count = len(cache.meta["noise_names"])
    if not count:
        return ()
    npz = load_archive(cache.dir / _NOISE_FILE, fix=f"delete the cache folder {cache.dir}; the next command rebuilds it")
    return tuple(int16_to_float32(npz[f"noise_{i}"]) for i in range(count))
