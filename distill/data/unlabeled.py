"""Unlabeled folders (the Kaggle test set): listing, a streaming reader, and the decoded cache."""

from __future__ import annotations

import collections
import concurrent.futures
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from distill.core.errors import BadAudioError, DistillError
from distill.core.labels import (
    CLIP_SAMPLES,
)
from distill.data.cache import Cache, DecodedAudio, build_cache, cache_fingerprint, default_cache_dir, open_cache, report_skipped
from distill.data.index import FileStat, is_wav, scan_wavs
from distill.data.wav import read_clip_into


def resolve_unlabeled(folder: Path) -> Path:
    """The folder that holds the clips: ``folder`` itself, or ``folder/audio`` (Kaggle's ``test/`` extracts so)."""
    folder = Path(folder)
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise DistillError(f"{folder}: unlabeled folder {what}; point it at the extracted Kaggle test set (test/audio)")
    # Kaggle's test.7z extracts to test/audio/clip_*.wav; accept test/ as well.
    if not any(is_wav(e.name) for e in os.scandir(folder)) and (folder / "audio").is_dir():
        return folder / "audio"
    return folder


def _unlabeled_stats(folder: Path) -> list[FileStat]:
    files = scan_wavs(folder, "")
    clips = [f for f in files if f.rel.startswith("clip_")]
    chosen = clips or files
    if not chosen:
        raise DistillError(f"{folder}: no .wav files (expected the Kaggle test clips, clip_*.wav)")
    chosen.sort(key=lambda f: f.rel)
    return chosen


def list_unlabeled(folder: Path) -> list[str]:
    """Sorted wav names in ``folder``: the ``clip_*.wav`` files, or every ``*.wav`` if none match."""
    return [f.rel for f in _unlabeled_stats(resolve_unlabeled(folder))]


@dataclass(frozen=True)
class UnlabeledBatch:
    """Consecutive clips of an unlabeled folder, every one of them, good or bad.

    ``names[i]`` is clip ``i``; ``errors[i]`` is None when it decoded, else the
    BadAudioError saying why it cannot be read (``.reason``); ``waveforms[i]`` is
    its float32 ``(16000,)`` audio in [-1, 1], all zeros for a bad clip.
    """

    names: list[str]
    waveforms: np.ndarray
    errors: tuple[BadAudioError | None, ...]

    def __len__(self) -> int:
        return len(self.names)

    @property
    def ok(self) -> np.ndarray:
        """bool ``(len(names),)``: True for the clips that decoded."""
        return np.array([err is None for err in self.errors], dtype=bool)


def iter_unlabeled(
    folder: Path,
    *,
    batch_size: int = 256,
    names: Sequence[str] | None = None,
    skip_bad: bool = False,
    ahead: int = 2,
) -> Iterator[UnlabeledBatch]:
    """Stream an unlabeled folder in name order, ``batch_size`` clips at a time (the last batch may be shorter).

    Never holds more than ``ahead`` batches beyond the one yielded. A bad file
    raises its BadAudioError, or with ``skip_bad`` comes in its batch like any
    other clip, with its error (see ``UnlabeledBatch``): every clip of ``names``
    (default: ``list_unlabeled(folder)``) is in exactly one batch, in order.

    Each batch is read and decoded whole on a background thread while the
    caller works on the previous one (file reads release the GIL), one task per
    batch rather than per file, so the reader costs little CPU beside the
    decoding itself.
    """
    if batch_size < 1:
        raise DistillError(f"batch_size must be >= 1, got {batch_size}")
    folder = resolve_unlabeled(folder)
    names = list(names) if names is not None else list_unlabeled(folder)
    starts = range(0, len(names), batch_size)
    if ahead < 1 or len(starts) < 2:
        for start in starts:
            yield _checked(_read_batch(folder, names[start : start + batch_size]), skip_bad)
        return
    pending: collections.deque[concurrent.futures.Future] = collections.deque()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="distill-read") as pool:
        try:
            for start in starts:
                pending.append(pool.submit(_read_batch, folder, names[start : start + batch_size]))
                if len(pending) > ahead:
                    yield _checked(pending.popleft().result(), skip_bad)
            while pending:
                yield _checked(pending.popleft().result(), skip_bad)
        finally:
            for future in pending:
                future.cancel()


def _read_batch(folder: Path, names: list[str]) -> UnlabeledBatch:
    waveforms = np.empty((len(names), CLIP_SAMPLES), dtype=np.float32)
    errors: list[BadAudioError | None] = []
    for row, name in enumerate(names):
        try:
            read_clip_into(folder / name, waveforms[row])
        except BadAudioError as err:
            waveforms[row] = 0.0
            errors.append(err)
        else:
            errors.append(None)
    return UnlabeledBatch(names, waveforms, tuple(errors))


def _checked(batch: UnlabeledBatch, skip_bad: bool) -> UnlabeledBatch:
    if not skip_bad:
        bad = next((err for err in batch.errors if err is not None), None)
        if bad is not None:
            raise bad
    return batch


class DecodedUnlabeled(DecodedAudio):
    """A decoded unlabeled folder: ``audio[i]`` is ``names[i]`` as int16 samples.

    Attributes, besides ``DecodedAudio``'s: ``folder``, ``names``.
    """

    def __init__(self, *, folder: Path, cache: Cache):
        super().__init__(source=folder, cache=cache)
        self.folder = Path(folder)
        self.names: tuple[str, ...] = tuple(cache.meta["names"])

    def _content(self) -> dict[str, Any]:
        return {"names": list(self.names)}


def open_unlabeled(folder: Path, *, cache_dir: Path | None = None, skip_bad: bool = False, progress: bool = True) -> DecodedUnlabeled:
    """Open an unlabeled folder (the Kaggle test set) through a decoded cache, like ``open_dataset``.

    Its cache: ``default_cache_dir(folder, kind="unlabeled", home=cache_dir)``, i.e.
    ``<cache_dir>/unlabeled/<key>``, so it can share a ``cache_dir`` with ``open_dataset``.
    """
    folder = resolve_unlabeled(Path(folder))
    files = _unlabeled_stats(folder)
    cache_dir = default_cache_dir(folder, kind="unlabeled", home=cache_dir)
    fingerprint = cache_fingerprint("unlabeled", files, skip_bad=bool(skip_bad))
    cache = open_cache(cache_dir, kind="unlabeled", fingerprint=fingerprint)
    if cache is None:
        names = [f.rel for f in files]

        def finish(tmp: Path, kept: np.ndarray, bad: list[tuple[str, str]]) -> dict[str, Any]:
            return {"folder": str(folder), "names": [names[i] for i in kept]}

        cache = build_cache(
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
    unlabeled = DecodedUnlabeled(folder=folder, cache=cache)
    report_skipped(unlabeled, folder)
    return unlabeled
