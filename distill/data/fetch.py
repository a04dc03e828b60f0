"""Download, verify and extract the Speech Commands archive (``distill data fetch``).

``version`` 1 is the v0.01 release (30 word folders), 2 is v0.02 (35: the same
thirty plus backward, follow, forward, learn and visual); both unpack to the
same layout, which ``index.py`` reads. The v0.01 archive is 1.4 GB and the
v0.02 one 2.4 GB: the download resumes a partial ``.part`` file
(HTTP ``Range``, or a seek for ``file://``), is checked against a known SHA-256
before anything is extracted, and is extracted into a temp folder that is
renamed to ``out`` only when complete, so ``out`` existing means the data is
all there and a re-run is a no-op.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Iterable, Iterator

from distill.core.errors import DistillError
from distill.core.io import atomic_folder, read_blocks, sha256_file, write_json
from distill.core.progress import track

# The official archives. The SHA-256 values are the ones torchaudio pins for the
# same URLs (``_CHECKSUMS`` in pytorch/audio ``torchaudio/datasets/speechcommands.py``);
# the v0.02 value also matches TensorFlow Datasets' pinned checksum
# (tensorflow/datasets ``tensorflow_datasets/url_checksums/speech_commands.txt``,
# 2,428,923,189 bytes).
V001_URL = "http://download.tensorflow.org/data/speech_commands_v0.01.tar.gz"
V001_SHA256 = "743935421bb51cccdb6bdd152e04c5c70274e935c82119ad7faeec31780d811d"
V002_URL = "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz"
V002_SHA256 = "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58"

# version -> (URL, SHA-256, the default output folder's name)
RELEASES: dict[int, tuple[str, str, str]] = {
    1: (V001_URL, V001_SHA256, "speech_commands_v0.01"),
    2: (V002_URL, V002_SHA256, "speech_commands_v0.02"),
}

MARKER = ".distill-fetch.json"  # written into ``out`` last: its presence means "complete"
_TIMEOUT_S = 60


def fetch_dataset(
    *,
    out: Path | None = None,
    version: int = 1,
    url: str | None = None,
    sha256: str | None = None,
    download_dir: Path | None = None,
    progress: bool = True,
    keep_archive: bool = False,
) -> Path:
    """Download ``url`` (resuming), verify ``sha256``, extract it safely into ``out``; return ``out``.

    ``version`` (1 or 2) picks the official Speech Commands release: its URL, its
    SHA-256 and the default ``out`` (``data/speech_commands_v0.0<version>``). An
    explicit ``url`` wins, and is verified only against ``sha256`` (``None`` skips
    verification, for a mirror whose checksum you do not know; the digest found is
    recorded); without ``url``, ``sha256`` may still override the pinned value.
    ``download_dir`` (default: the folder that will hold ``out``) keeps the archive
    and its ``.part`` while downloading; the archive is deleted after a successful
    extraction unless ``keep_archive``. ``out/.distill-fetch.json`` records the URL,
    digest and version. Re-running when ``out`` is complete does nothing.
    """
    url, sha256, default_out = release_source(version=version, url=url, sha256=sha256)
    out = Path(out) if out is not None else Path("data") / default_out
    expected = _normalise_sha256(sha256)
    done = _completed(out)
    if done is not None:
        if expected is not None and done.get("sha256") not in (None, expected):
            held = f"Speech Commands v0.0{done['version']}, " if done.get("version") in RELEASES else ""
            raise DistillError(
                f"{out}: already holds a fetched archive ({held}SHA-256 {done.get('sha256')}, {done.get('url')}), "
                f"not SHA-256 {expected}; choose another --out or remove the folder"
            )
        return out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DistillError(
            f"{out}: exists and was not written by `distill data fetch` (no {MARKER}); "
            f"choose another --out, or remove it if it is an interrupted extraction"
        )
    download_dir = Path(download_dir) if download_dir is not None else out.absolute().parent
    download_dir.mkdir(parents=True, exist_ok=True)
    name = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name or "download.tar.gz"
    archive = download_dir / name
    if not archive.exists():
        _download(url, archive, progress=progress)
    digest = sha256_file(archive, wrap=lambda blocks: _bytes_progress(
        blocks, total=archive.stat().st_size, done=0, label=f"verifying {archive.name}", disable=not progress))
    if expected is not None and digest != expected:
        archive.unlink()
        raise DistillError(
            f"{url}: SHA-256 mismatch: expected {expected}, got {digest}; the downloaded file {archive} was removed. "
            f"Run the command again to download it afresh; if it keeps failing, the server or a proxy is "
            f"serving something else (or pass the right --sha256 for a different archive)"
        )
    _extract(archive, out, progress=progress, provenance={"url": url, "sha256": digest, "archive": name, "version": version})
    if not keep_archive:
        archive.unlink()
    return out


def release_source(*, version: int = 1, url: str | None = None, sha256: str | None = None) -> tuple[str, str | None, str]:
    """(URL, expected SHA-256 or None, default output folder name) for ``version``, ``url`` and ``sha256`` as given.

    The pinned checksum only goes with the official URL: a ``url`` of your own is
    checked against ``sha256`` alone, since a mirror may serve another packing.
    """
    if isinstance(version, bool) or version not in RELEASES:
        raise DistillError(
            f"--version {version!r}: Speech Commands releases are 1 (v0.01, 30 words) and 2 (v0.02, 35 words); "
            f"pass --version 1 or --version 2"
        )
    official_url, official_sha256, folder = RELEASES[version]
    if url is None:
        return official_url, sha256 or official_sha256, folder
    return url, sha256, folder


def _normalise_sha256(sha256: str | None) -> str | None:
    if sha256 is None or sha256 == "":
        return None
    value = sha256.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise DistillError(f"--sha256 {sha256!r} is not a SHA-256 hex digest (64 hex digits)")
    return value


def _completed(out: Path) -> dict | None:
    try:
        with open(out / MARKER, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------- download


def _download(url: str, archive: Path, *, progress: bool) -> None:
    """Fetch ``url`` into ``archive``, appending to ``archive.part`` if an earlier try left one."""
    part = archive.with_name(archive.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    scheme = urllib.parse.urlparse(url).scheme.lower()
    if scheme == "file":
        source, total, start = _open_file_url(url, start)
    elif scheme in ("http", "https"):
        source, total, start = _open_http(url, start)
        if source is None:  # the server says the range is past the end: the .part is already whole
            os.replace(part, archive)
            return
    else:
        raise DistillError(f"{url}: unsupported URL scheme {scheme!r}; use http://, https:// or file://")
    written = start
    try:
        with source, open(part, "ab" if start else "wb") as sink:
            chunks = _bytes_progress(read_blocks(source), total=total, done=start, label=f"downloading {archive.name}", disable=not progress)
            for chunk in chunks:
                sink.write(chunk)
                written += len(chunk)
            sink.flush()
            os.fsync(sink.fileno())
    except (OSError, urllib.error.URLError, http.client.HTTPException) as err:
        raise DistillError(
            f"{url}: download interrupted after {written / 2**20:.1f} MiB ({err}); run the same command again "
            f"to resume from {part}"
        ) from err
    if total is not None and written != total:
        raise DistillError(
            f"{url}: download ended after {written:,} of {total:,} bytes; run the same command again to resume from {part}"
        )
    os.replace(part, archive)


def _open_file_url(url: str, start: int) -> tuple[BinaryIO, int, int]:
    path = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
    try:
        source = open(path, "rb")
    except OSError as err:
        raise DistillError(f"{url}: cannot read {path} ({err.strerror or err})") from err
    total = os.fstat(source.fileno()).st_size
    if start > total:  # a .part longer than the file cannot be a prefix of it
        start = 0
    source.seek(start)
    return source, total, start


def _open_http(url: str, start: int) -> tuple[BinaryIO | None, int | None, int]:
    headers = {"User-Agent": "distill-fetch"}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as err:
        if err.code == 416 and start:
            return None, None, start
        raise DistillError(f"{url}: HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise DistillError(
            f"{url}: cannot connect ({reason}); check the network, or download the archive another way and "
            f"pass it as --url file:///path/to/archive.tar.gz"
        ) from err
    length = response.headers.get("Content-Length")
    size = int(length) if length and length.isdigit() else None
    if start and response.status == 206 and (response.headers.get("Content-Range") or "").startswith(f"bytes {start}-"):
        return response, (start + size if size is not None else None), start
    # 200: the server ignored the range (or this is a fresh download); start over.
    return response, size, 0


def _bytes_progress(chunks: Iterable[bytes], *, total: int | None, done: int, label: str, disable: bool) -> Iterator[bytes]:
    """A byte-counting bar (``progress.track`` counts items; a download wants MB and MB/s)."""
    if disable:
        yield from chunks
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(file=sys.stderr)) as bar:
        task = bar.add_task(label, total=total, completed=done)
        for chunk in chunks:
            yield chunk
            bar.advance(task, len(chunk))


# --------------------------------------------------------------------------- extraction


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    """Refuse members that would land outside the target folder or are not plain files/folders."""
    name = member.name
    parts = PurePosixPath(name.replace("\\", "/")).parts
    why = None
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        why = "an absolute path"
    elif ".." in parts:
        why = "a '..' path component"
    elif member.issym() or member.islnk():
        target = member.linkname.replace("\\", "/")
        if target.startswith("/") or ".." in PurePosixPath(target).parts:
            why = f"a link pointing outside the archive ({member.linkname!r})"
    elif not (member.isfile() or member.isdir()):
        why = "a device, fifo or other special file"
    if why:
        raise DistillError(
            f"{archive}: refusing to extract member {name!r}: {why}; the archive is corrupt or not a "
            f"Speech Commands archive, nothing was extracted into the output folder"
        )


def _extract(archive: Path, out: Path, *, progress: bool, provenance: dict) -> None:
    # built beside ``out`` and renamed into place; an ``out`` already there is empty (checked by the caller)
    with atomic_folder(out.absolute()) as tmp:
        try:
            with tarfile.open(archive, "r:*") as tar:
                for member in track(tar, description=f"extracting {archive.name}", disable=not progress):
                    _check_member(member, archive)
                    # The 'data' filter (Python >= 3.11.4) re-checks the same things and drops
                    # permissions/owners from the archive; the check above names the member.
                    if hasattr(tarfile, "data_filter"):
                        tar.extract(member, tmp, filter="data")
                    else:
                        tar.extract(member, tmp)
        except (tarfile.TarError, EOFError, OSError) as err:
            raise DistillError(f"{archive}: not a readable .tar.gz archive ({err}); delete it and run the command again") from err
        write_json(tmp / MARKER, {**provenance, "files": sum(1 for _ in tmp.rglob("*.wav"))})

