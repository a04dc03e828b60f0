"""fetch_dataset: download (file:// and http), resume, checksum, safe extraction, idempotence, the v0.02 release."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import tarfile
import threading
from pathlib import Path

import pytest

from distill.core.errors import DistillError
from distill.data import fetch
from distill.data.fetch import MARKER, V001_SHA256, V001_URL, V002_SHA256, V002_URL, fetch_dataset, release_source
from distill.data.index import index_dataset


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


# ---------------------------------------------------------------- v0.02 (``--version 2``)

# What v0.02 adds to v0.01's layout: five more word folders, and stray files beside them
V002_FILES = {
    "./backward/0a7c2a8d_nohash_0.wav": hashlib.sha512(b"d").digest() * 40,
    "./learn/0a7c2a8d_nohash_0.wav": hashlib.sha512(b"e").digest() * 40,
    "./learn/1b2c3d4e_nohash_0.wav": hashlib.sha512(b"f").digest() * 40,
    "./yes/1b2c3d4e_nohash_0.wav": hashlib.sha512(b"g").digest() * 40,
    "./LICENSE": b"Creative Commons BY 4.0\n",
    "./README.md": b"Speech Commands v0.02\n",
    "./.DS_Store": b"\0\0\0\1Bud1",
    "./learn/.DS_Store": b"\0\0\0\1Bud1",
    "./_background_noise_/README.md": b"about the noise files\n",
    "./_background_noise_/white_noise.wav": hashlib.sha512(b"h").digest() * 40,
    "./validation_list.txt": b"learn/1b2c3d4e_nohash_0.wav\nyes/1b2c3d4e_nohash_0.wav\n",
    "./testing_list.txt": b"backward/0a7c2a8d_nohash_0.wav\n",
}


def _cli(*args):
    from typer.testing import CliRunner

    from distill.cli import app

    return CliRunner().invoke(app, ["data", "fetch", *map(str, args)])


def test_version_2_fetches_the_v002_archive(tmp_path, monkeypatch):
    path = tmp_path / "server" / "speech_commands_v0.02.tar.gz"
    digest = make_archive(path, V002_FILES)
    # --version 2 without --url: the pinned v0.02 source, pointed here at the local archive
    monkeypatch.setitem(fetch.RELEASES, 2, (path.as_uri(), digest, "speech_commands_v0.02"))
    monkeypatch.chdir(tmp_path)
    result = _cli("--version", "2")
    assert result.exit_code == 0, (result.output, result.exception)
    out = tmp_path / "data" / "speech_commands_v0.02"
    assert "dataset ready in data/speech_commands_v0.02" in result.output
    for name, payload in V002_FILES.items():
        assert (out / name).read_bytes() == payload
    marker = json.loads((out / MARKER).read_text())
    assert marker["version"] == 2 and marker["sha256"] == digest and marker["files"] == 5
    index = index_dataset(out)
    assert sorted(set(index.words)) == ["backward", "learn", "yes"]
    assert dict(zip(index.files, index.splits)) == {
        "backward/0a7c2a8d_nohash_0.wav": "testing", "learn/0a7c2a8d_nohash_0.wav": "training",
        "learn/1b2c3d4e_nohash_0.wav": "validation", "yes/1b2c3d4e_nohash_0.wav": "validation",
    }
    # the same folder asked for as v0.01 is refused, naming what it holds
    monkeypatch.setitem(fetch.RELEASES, 1, (path.as_uri(), V001_SHA256, "speech_commands_v0.01"))
    result = _cli("--version", "1", "--out", out)
    assert result.exit_code != 0 and "already holds a fetched archive (Speech Commands v0.02" in str(result.exception)


def test_explicit_url_and_checksum_win_over_version_2(archive, tmp_path):
    path, digest = archive
    out = tmp_path / "sc"
    result = _cli("--version", "2", "--url", path.as_uri(), "--sha256", digest, "--out", out)
    assert result.exit_code == 0, (result.output, result.exception)
    _check_extracted(out)
    assert json.loads((out / MARKER).read_text())["url"] == path.as_uri()


def test_version_2_selects_the_official_v002_source(tmp_path, monkeypatch):
    assert V002_URL == "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz"
    assert release_source(version=2) == (V002_URL, V002_SHA256, "speech_commands_v0.02")
    assert release_source(version=1) == (V001_URL, V001_SHA256, "speech_commands_v0.01")
    assert release_source(version=2, sha256="ab" * 32)[1] == "ab" * 32
    assert release_source(version=2, url="file:///mirror.tgz") == ("file:///mirror.tgz", None, "speech_commands_v0.02")
    asked = []

    def fake_download(url, archive, *, progress):
        asked.append((url, archive.name))
        archive.write_bytes(b"not the archive")

    monkeypatch.setattr(fetch, "_download", fake_download)
    result = _cli("--version", "2", "--out", tmp_path / "sc")
    assert asked == [(V002_URL, "speech_commands_v0.02.tar.gz")]
    assert result.exit_code != 0 and f"expected {V002_SHA256}" in str(result.exception)
    assert not (tmp_path / "sc").exists()
    for bad in ("3", "0"):
        result = _cli("--version", bad, "--out", tmp_path / "sc")
        assert result.exit_code != 0 and f"--version {bad}: Speech Commands releases are 1" in str(result.exception)
    assert len(asked) == 1
