"""Atomic file writes: an interrupted command never leaves a half-written artefact.

Every artefact is written to a temporary file in the same folder, flushed,
fsynced and renamed over the target, so a reader sees either the old file or the
complete new one; ``atomic_folder`` does the same for a whole folder (a decode
cache, an extracted archive, a synthesized tree). ``exclusive_folder`` keeps two
processes from writing one run folder at once (a resumed run beside a
still-running one would interleave checkpoints). ``sha256_file`` hashes a file
in blocks.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator

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


def sibling_prefix(path: str | os.PathLike, what: str) -> str:
    """``.<name>.<what>-<host>-``: how the temporary siblings of ``path`` that ``atomic_folder`` makes start.

    ``what`` is ``building`` (the folder being built) or ``old`` (the folder being
    replaced); the process id and a random tag follow, so a leftover of a process
    that died can be told from a build still running.
    """
    return f".{Path(path).name}.{what}-{socket.gethostname()}-"


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike, *, replace: bool = True) -> Iterator[Path]:
    """Yield a new empty folder beside ``path`` to build in; rename it to ``path`` if the block succeeds.

    A reader sees the old folder or the complete new one, never a mix; a block that
    fails leaves ``path`` as it was and its temporary folder is removed (one left by a
    process killed outright is removed by the next build of the same ``path`` on this host).
    With ``replace`` an existing ``path`` is renamed aside just before the swap and deleted
    after it; without, an existing non-empty ``path`` is kept and the new folder discarded.
    If another process puts a folder at ``path`` meanwhile, the rename fails and theirs is
    kept: a caller for whom that matters checks what is at ``path`` after the block.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_siblings(target)
    tmp = _new_sibling(target, "building")
    tmp.mkdir()
    try:
        yield tmp
        _swap_in(tmp, target, replace=replace)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _new_sibling(target: Path, what: str) -> Path:
    return target.parent / f"{sibling_prefix(target, what)}{os.getpid()}-{os.urandom(4).hex()}"


def _swap_in(tmp: Path, target: Path, *, replace: bool) -> None:
    old = None
    if replace and (target.exists() or target.is_symlink()):
        old = _new_sibling(target, "old")
        try:
            os.rename(target, old)
        except FileNotFoundError:  # another process moved it meanwhile
            old = None
    try:
        os.rename(tmp, target)
    except OSError:
        if not target.exists():
            if old is not None:
                os.rename(old, target)  # put the old folder back
            raise
        # another process (or, without ``replace``, an earlier run) put a folder there: it is kept
    if old is not None:
        _remove(old)
    try:  # make the renames themselves durable
        fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _remove_stale_siblings(target: Path) -> None:
    # A build killed outright (SIGKILL, power loss) leaves its temporary folder (or the
    # old folder it was replacing); the pid in the name tells whether its process is
    # still alive on this host.
    prefixes = (sibling_prefix(target, "building"), sibling_prefix(target, "old"))
    try:
        candidates = [(p, pre) for p in target.parent.iterdir() for pre in prefixes if p.name.startswith(pre)]
    except OSError:
        return
    for path, prefix in candidates:
        try:
            pid = int(path.name[len(prefix) :].split("-", 1)[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            _remove(path)
        except (ValueError, OSError):  # not our naming, or alive but not ours to signal
            continue


BLOCK_BYTES = 1 << 20


def read_blocks(fh: IO[bytes], size: int = BLOCK_BYTES) -> Iterator[bytes]:
    """The bytes of an open binary file (or response) in blocks of ``size``, until the end."""
    while True:
        block = fh.read(size)
        if not block:
            return
        yield block


def sha256_file(path: str | os.PathLike, *, wrap: Callable[[Iterator[bytes]], Iterable[bytes]] | None = None) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks; ``wrap`` sees the blocks pass (e.g. a byte progress bar)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        blocks = read_blocks(fh)
        for block in wrap(blocks) if wrap is not None else blocks:
            h.update(block)
    return h.hexdigest()


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
