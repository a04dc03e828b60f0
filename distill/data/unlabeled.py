"""Unlabeled folders (the Kaggle test set): listing, a streaming reader, and the decoded cache."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from distill.core.errors import BadAudioError, DistillError
from distill.core.labels import (
    CLIP_SAMPLES,
)
from distill.data.cache import _build_cache, _Cache, _fingerprint, _open_cache, _waveforms, default_cache_dir
from distill.data.index import _FileStat, _is_wav, _scan_wavs
from distill.data.wav import SCALE, _read_many


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
