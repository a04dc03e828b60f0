"""fetch_dataset: download (file:// and http), resume, checksum, safe extraction, idempotence."""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
from pathlib import Path

import pytest

from distill.core.errors import DistillError
from distill.data import fetch
from distill.data.fetch import MARKER, V001_SHA256, V001_URL, fetch_dataset


def make_archive(path: Path, members: dict[str, bytes], *, links: dict[str, str] | None = None) -> str:
    """A .tar.gz with the given files (and symlinks); returns its SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return hashlib.sha256(path.read_bytes()).hexdigest()


# incompressible payloads, so the archive is big enough to cut in the middle
FILES = {
    "./yes/0a7c2a8d_nohash_0.wav": bytes(range(256)) * 40 + hashlib.sha256(b"a").digest() * 300,
    "./bed/0a7c2a8d_nohash_0.wav": hashlib.sha512(b"b").digest() * 200,
    "./_background_noise_/white_noise.wav": hashlib.sha512(b"c").digest() * 300,
    "./validation_list.txt": b"yes/0a7c2a8d_nohash_0.wav\n",
    "./testing_list.txt": b"",
}


@pytest.fixture
def archive(tmp_path):
    path = tmp_path / "server" / "speech_commands_test.tar.gz"
    return path, make_archive(path, FILES)


def _check_extracted(out: Path) -> None:
    for name, payload in FILES.items():
        assert (out / name).read_bytes() == payload
    assert (out / MARKER).exists()


def test_the_official_checksum_is_pinned():
    assert V001_URL == "http://download.tensorflow.org/data/speech_commands_v0.01.tar.gz"
    assert len(V001_SHA256) == 64 and int(V001_SHA256, 16)


def test_fetch_file_url_then_rerun_is_a_no_op(archive, tmp_path, monkeypatch):
    path, digest = archive
    out = tmp_path / "data" / "speech_commands"
    assert fetch_dataset(out=out, url=path.as_uri(), sha256=digest.upper(), progress=False) == out
    _check_extracted(out)
    downloads = out.parent
    assert not (downloads / path.name).exists(), "archive removed after extraction by default"
    assert [p.name for p in downloads.iterdir()] == ["speech_commands"], "no temp folders left"

    def no_download(*args, **kwargs):
        raise AssertionError("downloaded again although the data is complete")

    monkeypatch.setattr(fetch, "_download", no_download)
    assert fetch_dataset(out=out, url=path.as_uri(), sha256=digest, progress=False) == out
    with pytest.raises(DistillError, match="already holds"):
        fetch_dataset(out=out, url=path.as_uri(), sha256="0" * 64, progress=False)


def test_resume_from_a_partial_download(archive, tmp_path):
    path, digest = archive
    original = path.read_bytes()
    half = len(original) // 2
    downloads = tmp_path / "dl"
    downloads.mkdir()
    (downloads / (path.name + ".part")).write_bytes(original[:half])
    # Spoil the source's first half: only a download that resumes (keeps the .part
    # and reads from the middle) can still produce the right checksum.
    path.write_bytes(b"\0" * half + original[half:])
    out = tmp_path / "sc"
    fetch_dataset(out=out, url=path.as_uri(), sha256=digest, download_dir=downloads, progress=False, keep_archive=True)
    _check_extracted(out)
    assert (downloads / path.name).read_bytes() == original
    assert not (downloads / (path.name + ".part")).exists()


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    payload = b""
    ranges: list = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        start = 0
        header = self.headers.get("Range")
        self.ranges.append(header)
        if header:
            start = int(header.split("=")[1].split("-")[0])
        body = self.payload[start:]
        self.send_response(206 if header else 200)
        if header:
            self.send_header("Content-Range", f"bytes {start}-{len(self.payload) - 1}/{len(self.payload)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_http_download_resumes_with_a_range_request(archive, tmp_path):
    path, digest = archive
    original = path.read_bytes()
    handler = type("Handler", (_RangeHandler,), {"payload": original, "ranges": []})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        downloads = tmp_path / "dl"
        downloads.mkdir()
        (downloads / "archive.tar.gz.part").write_bytes(original[:1000])
        url = f"http://127.0.0.1:{server.server_address[1]}/archive.tar.gz"
        fetch_dataset(out=tmp_path / "sc", url=url, sha256=digest, download_dir=downloads, progress=False)
    finally:
        server.shutdown()
        server.server_close()
    assert handler.ranges == ["bytes=1000-"]
    _check_extracted(tmp_path / "sc")


def test_checksum_mismatch_removes_the_download(archive, tmp_path):
    path, digest = archive
    wrong = "ab" * 32
    downloads = tmp_path / "dl"
    with pytest.raises(DistillError, match=f"expected {wrong}, got {digest}.*was removed"):
        fetch_dataset(out=tmp_path / "sc", url=path.as_uri(), sha256=wrong, download_dir=downloads, progress=False)
    assert list(downloads.iterdir()) == []
    assert not (tmp_path / "sc").exists()
    with pytest.raises(DistillError, match="not a SHA-256"):
        fetch_dataset(out=tmp_path / "sc", url=path.as_uri(), sha256="1234", progress=False)


@pytest.mark.parametrize(
    "evil",
    [
        {"members": {"../escape.txt": b"gotcha"}},
        {"members": {"/tmp/absolute-escape.txt": b"gotcha"}},
        {"members": {"yes/../../escape.txt": b"gotcha"}},
        {"members": {}, "links": {"yes/link": "../../escape.txt"}},
    ],
    ids=["dotdot", "absolute", "nested-dotdot", "symlink"],
)
def test_path_traversal_members_are_refused(tmp_path, evil):
    path = tmp_path / "server" / "evil.tar.gz"
    digest = make_archive(path, {**FILES, **evil["members"]}, links=evil.get("links"))
    out = tmp_path / "work" / "sc"
    with pytest.raises(DistillError, match="refusing to extract member"):
        fetch_dataset(out=out, url=path.as_uri(), sha256=digest, progress=False)
    assert not out.exists()
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "work" / "escape.txt").exists()
    assert [p.name for p in (tmp_path / "work").iterdir()] == ["evil.tar.gz"], "no half-extracted folder left"


def test_refuses_to_overwrite_a_foreign_folder(archive, tmp_path):
    path, digest = archive
    out = tmp_path / "sc"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(DistillError, match="not written by `distill data fetch`"):
        fetch_dataset(out=out, url=path.as_uri(), sha256=digest, progress=False)
    assert (out / "mine.txt").read_text() == "keep me"
