"""Atomic file writes: an interrupted command never leaves a half-written artefact.

Every artefact is written to a temporary file in the same folder, flushed,
fsynced and renamed over the target, so a reader sees either the old file or the
complete new one. ``exclusive_folder`` keeps two processes from writing one run
folder at once (a resumed run beside a still-running one would interleave checkpoints).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from distill.core.errors import DistillError

LOCK_FILE = ".lock"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix + ".part", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _json_default(value: Any) -> Any:
    # numpy scalars and paths turn up in metrics and configs
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


@contextlib.contextmanager
def exclusive_folder(folder: str | os.PathLike, *, doing: str) -> Iterator[Path]:
    """Hold an advisory lock on ``folder`` (created if missing) while the block runs, or refuse at once.

    The lock is an ``flock`` on ``folder/.lock``, so the kernel drops it when its process dies: a
    killed run never leaves a stale lock behind, and ``--resume`` can follow straight away.
    ``doing`` completes the error, e.g. "trained". Where ``fcntl`` is missing (Windows) no lock is taken.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - POSIX everywhere this runs
        yield folder
        return
    handle = open(folder / LOCK_FILE, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise DistillError(f"{folder} is being {doing} by {holder}; wait for it to finish or stop it, then run this again "
                               "(or choose another --out)") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        try:
            yield folder
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        handle.close()
