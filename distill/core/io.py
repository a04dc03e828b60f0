"""Atomic file writes: an interrupted command never leaves a half-written artefact.

Every artefact is written to a temporary file in the same folder, flushed,
fsynced and renamed over the target, so a reader sees either the old file or the
complete new one; ``atomic_folder`` does the same for a whole folder (a decode
cache, an extracted archive, a synthesized tree). ``exclusive_lock`` keeps two
processes from writing one output at once (a resumed run beside a still-running
one would interleave checkpoints; two ``submit`` runs would share one ``.part``
file); ``exclusive_folder`` is that lock for a run folder. ``sha256_file`` hashes a file
in blocks.

Reading back: ``read_json``, ``load_array`` and ``load_archive`` turn an artefact that is cut short or
not what its name says into a DistillError naming the file and what to do, and ``check_output`` refuses,
before any work, an output path that cannot be written or is one of the command's inputs.
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

from distill.core.errors import DamagedFileError, DistillError

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


# --------------------------------------------------------------------------- reading artefacts back

REDO = "delete it and re-run the command that wrote it"


def read_json(path: str | os.PathLike, *, fix: str = REDO) -> Any:
    """The JSON document in ``path``; one that is not valid JSON (cut short, edited by hand) is a
    DamagedFileError naming the file and ``fix``, what to do about it. A missing file raises as ``open`` does."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except ValueError as err:  # json.JSONDecodeError, UnicodeDecodeError
        raise DamagedFileError(f"{path}: damaged, not valid JSON ({err}); {fix}") from None


def load_array(path: str | os.PathLike, *, mmap_mode: str | None = None, fix: str = REDO):
    """The array in the ``.npy`` file ``path`` (memory-mapped with ``mmap_mode``, e.g. "r").

    A missing file, or one cut short or not written by NumPy, is a DistillError naming the file and
    ``fix``, what to do about it; a memory map's size is checked against the file's here, not at first use.
    """
    import numpy as np

    try:
        array = np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except FileNotFoundError:
        raise DistillError(f"{path}: missing; {fix}") from None
    except (ValueError, OSError, EOFError) as err:  # "mmap length is greater than file size", a bad header, no data
        raise DamagedFileError(f"{path}: damaged or cut short ({err}); {fix}") from None
    if not isinstance(array, np.ndarray):
        array.close()
        raise DamagedFileError(f"{path}: an .npz archive where one .npy array was expected; {fix}")
    return array


def load_archive(path: str | os.PathLike, *, fix: str = REDO) -> dict[str, Any]:
    """Every array of the ``.npz`` archive ``path``, read in full, by name.

    Reading it all at once makes any damage (a truncated zip, a bad member) show here, as a DistillError
    naming the file and ``fix``, instead of half way through restoring a model. A missing file is one too.
    """
    import zipfile
    import zlib

    import numpy as np

    try:
        archive = np.load(path, allow_pickle=False)
        if not hasattr(archive, "files"):
            raise ValueError("one .npy array, not an .npz archive")
        with archive:
            return {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        raise DistillError(f"{path}: missing; {fix}") from None
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError) as err:
        raise DamagedFileError(f"{path}: damaged or cut short ({type(err).__name__}: {err}); {fix}") from None


# --------------------------------------------------------------------------- checking outputs before any work


def check_output(path: str | os.PathLike, *, kind: str = "folder", inputs: Iterable[str | os.PathLike | None] = (), option: str = "--out") -> Path:
    """Refuse an output the command could not, or must not, write, before it does any work; returns ``path``.

    ``kind`` is "folder" (a folder the command fills, made if missing) or "file" (one file, written
    atomically beside its final name). Refused with a DistillError naming ``path`` and ``option``: a
    folder output where a file is, a file output where a folder is; a path under a file; a path whose
    nearest existing folder cannot be written (a read-only file system, no write permission); and an
    output that is one of ``inputs``, the files and folders the command reads (compared resolved), which
    writing it would destroy.
    """
    if kind not in ("folder", "file"):
        raise ValueError(f"kind must be 'folder' or 'file', got {kind!r}")
    path = Path(path)
    if kind == "folder" and (path.exists() or path.is_symlink()) and not path.is_dir():
        raise DistillError(f"{path}: exists and is not a folder; {option} names the folder to write into, choose another")
    if kind == "file" and path.is_dir():
        raise DistillError(f"{path}: is a folder; {option} names the file to write, choose another")
    target = path.resolve()
    for source in inputs:
        if source is not None and Path(source).resolve() == target:
            raise DistillError(f"{path}: {option} is one of this command's inputs ({source}); writing it would destroy what is being read, "
                               f"choose another {option}")
    folder = (path if kind == "folder" else path.parent).absolute()
    nearest = next(p for p in (folder, *folder.parents) if p.exists() or p.is_symlink())
    if not nearest.is_dir():
        raise DistillError(f"{path}: {nearest} is a file, not a folder, so nothing can be written under it; choose another {option}")
    if not _writable(nearest):
        raise DistillError(f"{path}: cannot write in {nearest} (a read-only file system, or no permission to write there); choose another {option}")
    return path


def _writable(folder: Path) -> bool:
    # access(2) answers EROFS for a read-only file system even to root, for whom permission bits never refuse
    return os.access(folder, os.W_OK | os.X_OK)


def _json_default(value: Any) -> Any:
    # numpy scalars and paths turn up in metrics and configs
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# --------------------------------------------------------------------------- exclusive writers

LOCK_ADVICE = "wait for it to finish or stop it, then run this again (or choose another --out)"


@contextlib.contextmanager
def exclusive_lock(lock_path: str | os.PathLike, *, what: str | os.PathLike, doing: str, advice: str = LOCK_ADVICE,
                   remove: bool = False) -> Iterator[Path]:
    """Hold an advisory lock on ``lock_path`` (created if missing) while the block runs, or refuse at once.

    The one lock every writer of a shared output takes (a run folder, a submission CSV, a review
    decisions file): an ``flock``, so the kernel drops it when its process dies and a killed writer
    never leaves a stale lock behind. The holder writes ``pid N on HOST since TIME`` into the file; a
    second writer gets a DistillError ``"<what> is being <doing> by <holder>; <advice>"`` without
    waiting. With ``remove`` the holder deletes ``lock_path`` before releasing it (a waiter that opened
    the deleted file notices and locks the new one), so no lock file outlives its writer.
    Where ``fcntl`` is missing (Windows) no lock is taken.
    """
    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - POSIX everywhere this runs
        yield lock_path
        return
    while True:
        handle = open(lock_path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise DistillError(f"{what} is being {doing} by {holder}; {advice}") from None
        except BaseException:
            handle.close()
            raise
        try:  # a holder that removed the file on release may have done so after we opened it
            on_disk, held = os.stat(lock_path), os.fstat(handle.fileno())
            if (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino):
                break
        except FileNotFoundError:
            pass
        handle.close()
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        try:
            yield lock_path
        finally:
            if remove:
                lock_path.unlink(missing_ok=True)  # still locked: nobody can take the old file meanwhile
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        handle.close()


@contextlib.contextmanager
def exclusive_folder(folder: str | os.PathLike, *, doing: str) -> Iterator[Path]:
    """Hold :func:`exclusive_lock` on ``folder/.lock`` (``folder`` created if missing) while the block runs, or refuse at once.

    A killed run never leaves a stale lock behind, so ``--resume`` can follow straight away.
    ``doing`` completes the error, e.g. "trained": "<folder> is being trained by pid N on HOST since ...".
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(folder / LOCK_FILE, what=folder, doing=doing):
        yield folder
