"""The review server over real HTTP on port 0: clips, audio, spectrograms, decisions on disk, bad requests."""

from __future__ import annotations

import csv
import http.client
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pseudo_fixtures import CLIPS, SEVEN_WORDS, TEACHERS, TWENTY_WORDS, make_pseudo, make_pseudo_for_words, words_clips

from distill.core.errors import DistillError
from distill.core.labels import CLASS_INDEX
from distill.review import ReviewServer, make_app, serve_review, spectrogram_png
from distill.training.pseudo import load_pseudo


@pytest.fixture()
def pseudo(tmp_path) -> Path:
    return make_pseudo(tmp_path)


@pytest.fixture()
def server(pseudo):
    with ReviewServer(make_app(pseudo=pseudo), port=0).start() as srv:
        yield srv


def request(server, method: str, path: str, body: bytes | str | None = None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
    try:
        if isinstance(body, str):
            body = body.encode()
        conn.request(method, path, body=body, headers=headers or {})
        res = conn.getresponse()
        return res.status, dict(res.getheaders()), res.read()
    finally:
        conn.close()


def post(server, payload, headers=None):
    body = payload if isinstance(payload, (str, bytes)) else json.dumps(payload)
    return request(server, "POST", "/api/decision", body, {"Content-Type": "application/json", **(headers or {})})


def review_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_clips_listed_least_confident_first(server):
    status, headers, body = request(server, "GET", "/api/clips")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    data = json.loads(body)
    assert data["total"] == 8 and data["decided"] == 0 and len(data["clips"]) == 8
    assert data["classes"][0] == "silence" and data["keys"] == list("1234567890-=") and data["student"] is None
    assert data["relabel"] == "keys"
    assert data["teachers"] == list(TEACHERS)
    confidences = [c["confidence"] for c in data["clips"]]
    assert confidences == sorted(confidences)
    assert data["clips"][0]["fname"] == "clip_001.wav"  # the least confident clip
    clip = {c["fname"]: c for c in data["clips"]}["clip_002.wav"]
    assert clip["label"] == "yes" and clip["agreement"] == pytest.approx(2 / 3, abs=1e-6) and clip["decision"] is None
    assert [t["label"] for t in clip["top3"]][:2] == ["yes", "no"] and clip["top3"][0]["prob"] == pytest.approx(clip["confidence"], abs=1e-4)
    assert [(t["name"], t["label"]) for t in clip["teachers"]] == [("t_a", "yes"), ("t_b", "yes"), ("t_c", "no")]


def test_page_audio_and_spectrogram(server, pseudo):
    status, headers, body = request(server, "GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"Pseudo-label review" in body and b"/static/app.js" in body and b"<kbd>a</kbd>" in body
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    for name in ("app.js", "style.css"):
        assert request(server, "GET", f"/static/{name}")[0] == 200

    status, headers, body = request(server, "GET", "/audio/clip_003.wav")
    assert status == 200 and headers["Content-Type"] == "audio/wav"
    assert body == (pseudo.parent / "unlabeled" / "clip_003.wav").read_bytes()

    status, headers, png = request(server, "GET", "/spectrogram/clip_003.wav.png")
    assert status == 200 and headers["Content-Type"] == "image/png"
    image = decode_png(png)
    assert image.shape == (257, 2 * 196, 4)  # 25 ms windows every 5 ms, 0-8 kHz in 257 bins; RGBA
    assert np.all(image[..., 3] == 1.0) and image[..., :3].std() > 0.05  # opaque, and a picture rather than one colour
    assert request(server, "GET", "/spectrogram/clip_003.wav.png")[2] == png  # cached, same bytes
    assert request(server, "HEAD", "/audio/clip_003.wav")[0] == 200
    # a clip shorter than 1 s, and digital silence (stays dark: the colour map's bottom, near black)
    assert decode_png(request(server, "GET", "/spectrogram/clip_000.wav.png")[2]).shape == (257, 392, 4)
    silence = decode_png(spectrogram_png(np.zeros(16000, np.float32)))
    assert silence.shape == (257, 392, 4) and silence[..., :3].max() < 0.05


def decode_png(data: bytes) -> np.ndarray:
    """A PNG's pixels, (height, width, channels) floats in [0, 1]; fails unless ``data`` is a valid PNG."""
    import io

    import matplotlib.image

    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return matplotlib.image.imread(io.BytesIO(data), format="png")


def test_decisions_are_saved_at_once_and_survive_a_restart(server, pseudo):
    review = pseudo.parent / "pseudo.review.csv"
    assert not review.exists()
    status, _, body = post(server, {"fname": "clip_000.wav", "decision": "accept"})
    assert status == 200 and json.loads(body)["decided"] == 1
    assert review_rows(review) == [{"fname": "clip_000.wav", "decision": "accept", "label": "yes", "timestamp": review_rows(review)[0]["timestamp"]}]
    assert post(server, {"fname": "clip_002.wav", "decision": "relabel", "label": "left"})[0] == 200
    assert post(server, {"fname": "clip_001.wav", "decision": "reject", "label": "no"})[0] == 200
    status, _, body = post(server, {"fname": "clip_000.wav", "decision": "relabel", "label": "go"})  # last decision wins
    assert status == 200 and json.loads(body) == {"ok": True, "fname": "clip_000.wav", "decision": json.loads(body)["decision"], "decided": 3, "total": 8}

    rows = review_rows(review)
    assert [(r["fname"], r["decision"], r["label"]) for r in rows] == [
        ("clip_000.wav", "relabel", "go"), ("clip_001.wav", "reject", "no"), ("clip_002.wav", "relabel", "left"),
    ]
    assert all(r["timestamp"].endswith("+00:00") for r in rows)
    assert review.read_text().splitlines()[0] == "fname,decision,label,timestamp"
    assert not [p for p in review.parent.iterdir() if p.name.endswith(".part")]  # atomic rewrite leaves no temp files

    ps = load_pseudo(pseudo)
    assert "clip_001.wav" not in ps.names and ps.labels[ps.names.index("clip_000.wav")] == CLASS_INDEX["go"]

    server.close()
    with ReviewServer(make_app(pseudo=pseudo), port=0).start() as again:
        data = json.loads(request(again, "GET", "/api/clips")[2])
        assert data["decided"] == 3
        decisions = {c["fname"]: c["decision"] for c in data["clips"]}
        assert decisions["clip_000.wav"]["decision"] == "relabel" and decisions["clip_000.wav"]["label"] == "go"
        assert decisions["clip_001.wav"]["decision"] == "reject" and decisions["clip_005.wav"] is None
        assert post(again, {"fname": "clip_005.wav", "decision": "accept", "label": "yes"})[0] == 200
    assert len(review_rows(review)) == 4


def test_bad_requests_change_nothing(server, pseudo):
    review = pseudo.parent / "pseudo.review.csv"
    assert post(server, {"fname": "clip_000.wav", "decision": "accept"})[0] == 200
    before = review.read_bytes()
    decisions_before = dict(server.app.decisions)
    cases = [
        (404, post(server, {"fname": "clip_999.wav", "decision": "accept"})),
        (400, post(server, {"fname": "clip_003.wav", "decision": "maybe"})),
        (400, post(server, {"fname": "clip_003.wav", "decision": "relabel", "label": "cat"})),
        (400, post(server, {"fname": "clip_003.wav", "decision": "relabel"})),
        (400, post(server, {"fname": "clip_003.wav", "decision": "accept", "label": 3})),
        (400, post(server, {"fname": "clip_003.wav", "decision": "accept", "extra": 1})),
        (400, post(server, {"fname": 7, "decision": "accept"})),
        (400, post(server, {"fname": "../pseudo.csv", "decision": "accept"})),
        (400, post(server, '{"fname": "clip_003.wav", "decision": ')),
        (400, post(server, b"\xff\xfe not utf-8")),
        (400, post(server, "[1, 2]")),
        (415, request(server, "POST", "/api/decision", json.dumps({"fname": "clip_003.wav", "decision": "accept"}), {"Content-Type": "text/plain"})),
        (403, post(server, {"fname": "clip_003.wav", "decision": "accept"}, {"Origin": "http://evil.example"})),
        (403, post(server, {"fname": "clip_003.wav", "decision": "accept"}, {"Host": "evil.example"})),
        (413, post(server, json.dumps({"fname": "clip_003.wav", "decision": "accept", "label": "x" * 70000}))),
        (400, request(server, "GET", "/audio/../../etc/passwd")),
        (400, request(server, "GET", "/audio/%2e%2e%2f%2e%2e%2fetc%2fpasswd")),
        (400, request(server, "GET", "/audio/..%2Fpseudo.csv")),
        (400, request(server, "GET", "/audio/.hidden.wav")),
        (404, request(server, "GET", "/audio/clip_999.wav")),
        (400, request(server, "GET", "/audio/")),
        (400, request(server, "GET", "/spectrogram/../../etc/passwd.png")),
        (404, request(server, "GET", "/spectrogram/clip_999.wav.png")),
        (404, request(server, "GET", "/spectrogram/clip_003.wav")),
        (404, request(server, "GET", "/static/../server.py")),
        (404, request(server, "GET", "/static/%2e%2e%2fserver.py")),
        (404, request(server, "GET", "/etc/passwd")),
        (405, request(server, "GET", "/api/decision")),
        (405, request(server, "PUT", "/api/decision", "{}")),
        (404, request(server, "POST", "/api/clips", "{}", {"Content-Type": "application/json"})),
    ]
    for i, (expected, (status, headers, body)) in enumerate(cases):
        assert status == expected, (i, status, body)
        assert headers["Content-Type"].startswith("application/json"), i
        assert isinstance(json.loads(body)["error"], str) and json.loads(body)["error"], i
    assert "unknown clip" in json.loads(cases[0][1][2])["error"]
    assert "decision must be one of accept, reject, relabel" in json.loads(cases[1][1][2])["error"]
    assert "unknown label 'cat'" in json.loads(cases[2][1][2])["error"]
    assert "malformed JSON" in json.loads(cases[8][1][2])["error"]
    assert review.read_bytes() == before and server.app.decisions == decisions_before
    assert json.loads(request(server, "GET", "/api/clips")[2])["decided"] == 1
    # and nothing else was written (the lock is the running server's, removed when it stops)
    assert sorted(p.name for p in review.parent.iterdir() if p.is_file()) == ["pseudo.csv", "pseudo.json", "pseudo.review.csv", "pseudo.review.csv.lock"]


def test_loopback_only_and_bad_review_file(pseudo, tmp_path):
    app = make_app(pseudo=pseudo)
    for host in ("0.0.0.0", "", "::", "8.8.8.8", "192.168.1.10"):
        with pytest.raises(DistillError, match="loopback"):
            ReviewServer(app, host=host, port=0)
    with pytest.raises(DistillError, match="loopback"):
        serve_review(pseudo=pseudo, host="0.0.0.0", port=0)
    with ReviewServer(app, host="localhost", port=0).start() as srv:
        assert srv.host in ("127.0.0.1", "::1") and request(srv, "GET", "/api/clips")[0] == 200
    bad = tmp_path / "bad.review.csv"
    bad.write_text("fname,decision,label,timestamp\nclip_000.wav,maybe,,x\n")
    with pytest.raises(DistillError, match=r"bad\.review\.csv:2: unknown decision"):
        make_app(pseudo=pseudo, review=bad)
    with pytest.raises(DistillError, match="does not exist"):
        make_app(pseudo=tmp_path / "missing.csv")


def test_student_guesses_and_custom_review_path(pseudo, tmp_path, monkeypatch):
    import distill.training.fit

    seen = {}

    def fake_load_run(run_dir, **kwargs):
        seen["run"] = run_dir
        return None, "model"

    def fake_make_predictor(model, batch_size=256):
        def predict(waves):
            seen["shape"] = waves.shape
            logits = np.zeros((len(waves), 12), np.float32)
            logits[:, CLASS_INDEX["off"]] = 5.0
            return logits
        return predict

    monkeypatch.setattr(distill.training.fit, "load_run", fake_load_run)
    monkeypatch.setattr(distill.training.fit, "make_predictor", fake_make_predictor)
    review = tmp_path / "elsewhere" / "mine.csv"
    with ReviewServer(make_app(pseudo=pseudo, review=review, student=tmp_path / "student_run"), port=0).start() as srv:
        data = json.loads(request(srv, "GET", "/api/clips")[2])
        assert data["student"] == "student_run" and seen["shape"] == (len(CLIPS), 16000)
        assert all(c["student"]["label"] == "off" and c["student"]["prob"] == pytest.approx(0.931, abs=1e-3) for c in data["clips"])
        assert post(srv, {"fname": "clip_004.wav", "decision": "reject"})[0] == 200
    assert [r["fname"] for r in review_rows(review)] == ["clip_004.wav"]
    assert not (pseudo.parent / "pseudo.review.csv").exists()


def test_cli_review_refuses_public_host(pseudo):
    from typer.testing import CliRunner

    from distill.cli import app

    result = CliRunner().invoke(app, ["pseudo", "review", str(pseudo), "--host", "0.0.0.0", "--port", "0"])
    assert isinstance(result.exception, DistillError) and "loopback" in str(result.exception)


def test_a_second_server_on_the_same_decisions_is_refused(pseudo, tmp_path):
    review = pseudo.parent / "pseudo.review.csv"
    with ReviewServer(make_app(pseudo=pseudo), port=0).start() as first:
        assert post(first, {"fname": "clip_000.wav", "decision": "accept"})[0] == 200
        # in this process (another app on the same CSV, or the same decisions file by --review) ...
        holder = re.escape(f"{review} is being reviewed by pid {os.getpid()} on ")
        with pytest.raises(DistillError, match=holder):
            make_app(pseudo=pseudo)
        with pytest.raises(DistillError, match=holder):
            make_app(pseudo=pseudo, review=review)
        # ... and from another process: `distill pseudo review` exits 2 at start, naming the file and the holder
        proc = subprocess.run([sys.executable, "-m", "distill", "pseudo", "review", str(pseudo), "--port", "0"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
        assert f"{review} is being reviewed by pid {os.getpid()} on " in proc.stderr
        assert post(first, {"fname": "clip_003.wav", "decision": "reject"})[0] == 200
    assert [r["fname"] for r in review_rows(review)] == ["clip_000.wav", "clip_003.wav"]  # nothing lost
    assert not (pseudo.parent / "pseudo.review.csv.lock").exists()
    with ReviewServer(make_app(pseudo=pseudo), port=0).start() as again:  # the lock went with the first server
        assert json.loads(request(again, "GET", "/api/clips")[2])["decided"] == 2
    with ReviewServer(make_app(pseudo=pseudo, review=tmp_path / "other.csv"), port=0).start():  # another file: no conflict
        pass


def test_deeply_nested_json_is_answered_400(server, pseudo):
    for body in ("[" * 50_000, '{"a":' * 10_000 + "1" + "}" * 10_000):
        assert len(body) < 64 * 1024
        status, headers, raw = post(server, body)
        assert status == 400 and headers["Content-Type"].startswith("application/json"), (status, raw[:200])
        assert "nested too deeply" in json.loads(raw)["error"]
    assert post(server, "[" * 70_000)[0] == 413  # the body limit still comes first
    assert post(server, {"fname": "clip_000.wav", "decision": "accept"})[0] == 200  # the server still answers
    assert [r["fname"] for r in review_rows(pseudo.parent / "pseudo.review.csv")] == ["clip_000.wav"]


def test_cli_review_port_out_of_range_is_a_usage_error(pseudo):
    from typer.testing import CliRunner

    from distill.cli import app

    for port, bound in (("99999", "65535"), ("65536", "65535"), ("-1", "0")):
        result = CliRunner().invoke(app, ["pseudo", "review", str(pseudo), "--port", port])
        assert result.exit_code == 2, (port, result.exception, result.output)
        assert "Invalid value for '--port'" in result.output and f"equal to {bound}" in result.output, result.output
    with pytest.raises(DistillError, match="port"):
        ReviewServer(make_app(pseudo=pseudo), port=99999)


@pytest.mark.parametrize("words, keys", [(SEVEN_WORDS, list("1234567")), (TWENTY_WORDS, [])], ids=["7-classes", "20-classes"])
def test_any_number_of_classes(tmp_path, words, keys):
    pseudo = make_pseudo_for_words(tmp_path, words)
    classes = ["silence", "unknown", *words]
    expected = {name: tops[0] for name, (tops, _) in words_clips(words).items()}
    last = classes[-1]  # past the twelfth class for 20: only the searchable list reaches it
    with ReviewServer(make_app(pseudo=pseudo), port=0).start() as srv:
        data = json.loads(request(srv, "GET", "/api/clips")[2])
        assert data["classes"] == classes and data["keys"] == keys
        assert data["relabel"] == ("keys" if keys else "search")
        assert {c["fname"]: c["label"] for c in data["clips"]} == expected
        assert all(t["label"] in classes for c in data["clips"] for t in c["top3"] + c["teachers"])
        assert post(srv, {"fname": "clip_000.wav", "decision": "relabel", "label": last})[0] == 200
        assert post(srv, {"fname": "clip_001.wav", "decision": "accept"})[0] == 200
        status, _, body = post(srv, {"fname": "clip_002.wav", "decision": "relabel", "label": "yes"})  # not a class of this list
        assert status == 400 and f"classes are {', '.join(classes)}" in json.loads(body)["error"]
    rows = review_rows(pseudo.parent / "pseudo.review.csv")
    assert [(r["fname"], r["decision"], r["label"]) for r in rows] == [
        ("clip_000.wav", "relabel", last), ("clip_001.wav", "accept", expected["clip_001.wav"])]
    ps = load_pseudo(pseudo, review=pseudo.parent / "pseudo.review.csv")
    assert ps.classes == tuple(classes) and ps.labels[ps.names.index("clip_000.wav")] == len(classes) - 1
