"""The review web app: a stdlib ``ThreadingHTTPServer`` on a loopback address.

Routes (all answers to bad requests are JSON ``{"error": "..."}`` and change nothing)::

    GET  /                          the page (static/index.html)
    GET  /static/<file>             app.js, style.css
    GET  /api/clips                 {"clips": [...], "classes": [...], "keys": [...], "relabel": keys|search, ...}
    GET  /audio/<fname>             the clip's wav bytes
    GET  /spectrogram/<fname>.png   its log-power spectrogram (made once, cached)
    POST /api/decision              {"fname", "decision": accept|reject|relabel, "label"}

A decision is saved before the answer goes out: the review CSV
(``fname,decision,label,timestamp``, one row per clip, the last decision wins) is
rewritten atomically, so a crash or Ctrl-C never loses or half-writes it, and a
restarted server shows every decision made so far. One server at a time owns a
review CSV: the app holds ``distill.core.io.exclusive_lock`` on ``<review>.lock``
from before it reads the decisions until it is closed, so a second server on the
same file is refused at start instead of overwriting the first one's decisions.

The server only binds loopback addresses, and refuses requests whose ``Host``
header is not a loopback name (DNS rebinding) and cross-origin or non-JSON
POSTs (another web page in the same browser cannot record decisions).
"""

from __future__ import annotations

import collections
import contextlib
import http.server
import ipaddress
import json
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import unquote, urlsplit

import numpy as np

from distill.core.errors import BadAudioError, DistillError
from distill.core.io import exclusive_lock
from distill.core.labels import CLIP_SAMPLES
from distill.training.pseudo import (
    DECISIONS,
    RELABEL,
    PseudoRows,
    ReviewDecision,
    check_clip_name,
    default_review_path,
    now_timestamp,
    read_pseudo_csv,
    read_review,
    write_review,
)

STATIC_DIR = Path(__file__).with_name("static")
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".png": "image/png", ".svg": "image/svg+xml"}
# keys 1..9, 0, -, = relabel as classes[0..11] (the pseudo-label file's classes); the page shows this table.
# A word list of more than ten words has more classes than keys: its page relabels through a searchable
# list of every class instead (keys for only some classes would hide the rest).
RELABEL_KEYS: tuple[str, ...] = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "0", "-", "=")
MAX_BODY = 64 * 1024
SPECTROGRAM_CACHE = 256  # PNGs kept in memory (about 100 KB each: RGBA, as matplotlib writes them)
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
CSP = "default-src 'self'; img-src 'self'; media-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def _json(status: int, obj: Any) -> Response:
    return Response(status, json.dumps(obj).encode("utf-8"), headers={"Cache-Control": "no-store"})


def _error(status: int, message: str) -> Response:
    return _json(status, {"error": message})


class _RequestError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# ---------------------------------------------------------------- spectrogram images


def spectrogram_png(waveform: np.ndarray, *, floor_db: float = -100.0, range_db: float = 80.0) -> bytes:
    """A 1 s clip's log-power spectrogram as a PNG: time left to right, 0-8 kHz bottom to top.

    25 ms periodic-Hann windows every 5 ms (``features.numpy_spectrogram``), in dB of
    full scale, shown over ``range_db`` below the loudest bin (never above
    ``floor_db + range_db``, so digital silence stays dark).
    """
    from distill.layers.frontend import FrontendConfig, numpy_spectrogram

    config = FrontendConfig(window_ms=25.0, stride_ms=5.0)
    power = numpy_spectrogram(np.asarray(waveform, np.float32)[None, :], config)[0]  # (frames, bins)
    db = 10.0 * np.log10(power / (config.window_samples / 2.0) ** 2 + 1e-12)
    top = max(float(db.max()), floor_db + range_db)
    level = np.clip((db - (top - range_db)) / range_db, 0.0, 1.0)
    image = np.repeat(level.T[::-1], 2, axis=1)  # (bins, 2 * frames), high frequencies on top
    return _png(image)


def _png(level: np.ndarray) -> bytes:
    """A (height, width) array of levels in [0, 1] as a magma-coloured PNG, one pixel per value.

    ``matplotlib.image.imsave`` colours and encodes the array without a figure, so no
    pyplot state or GUI backend is involved (safe in the server's threads); it writes RGBA."""
    import io

    import matplotlib.image

    out = io.BytesIO()
    matplotlib.image.imsave(out, level, cmap="magma", vmin=0.0, vmax=1.0, format="png")
    return out.getvalue()


# ---------------------------------------------------------------- the app


def _softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    z = np.asarray(logits, np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _teacher_top1(rows: PseudoRows) -> tuple[tuple[str, ...], list[list[dict]], str | None]:
    """Each teacher's top class (clean view) per clip, from the soft-label folder; a note if unavailable."""
    from distill.training.soft_labels import UNLABELED, load_soft_labels

    empty: list[list[dict]] = [[] for _ in rows.names]
    try:
        soft = load_soft_labels(rows.soft_labels, UNLABELED)
    except (DistillError, OSError, ValueError) as err:
        return (), empty, f"per-teacher labels unavailable ({err})"
    where = {n: i for i, n in enumerate(soft.names or [])}
    temperature = float(rows.settings.get("temperature") or 1.0)
    out = []
    for name in rows.names:
        i = where.get(name)
        if i is None:
            out.append([])
            continue
        probs = _softmax(np.asarray(soft.logits[:, 0, i], np.float64), temperature)  # (teachers, 12)
        out.append([{"name": t, "label": rows.classes[int(p.argmax())], "prob": round(float(p.max()), 4)} for t, p in zip(soft.teachers, probs)])
    return tuple(soft.teachers), out, None


def _student_guesses(run_dir: Path, rows: PseudoRows) -> list[dict | None]:
    """The student's top class per clip, computed once (clips that cannot be read get None)."""
    from distill.data.wav import decode_wav
    from distill.training.fit import load_run, make_predictor

    _, model = load_run(Path(run_dir))
    predict = make_predictor(model)
    waves = np.zeros((len(rows.names), CLIP_SAMPLES), np.float32)
    readable = np.ones(len(rows.names), bool)
    for i, name in enumerate(rows.names):
        try:
            waves[i] = decode_wav(rows.folder / name)
        except BadAudioError:
            readable[i] = False
    probs = _softmax(predict(waves), 1.0) if len(waves) else np.zeros((0, len(rows.classes)))
    if probs.shape[1] != len(rows.classes):
        raise DistillError(f"--student {run_dir}: a {probs.shape[1]}-class model, but the pseudo-labels have {len(rows.classes)} classes "
                           f"({', '.join(rows.classes)}); give a student of the same word list")
    return [
        {"label": rows.classes[int(p.argmax())], "prob": round(float(p.max()), 4)} if ok else None
        for p, ok in zip(probs, readable)
    ]


def relabel_keys(classes: tuple[str, ...]) -> tuple[str, ...]:
    """The key that relabels as each class (``classes`` order); none when there are more classes than keys."""
    return RELABEL_KEYS[: len(classes)] if len(classes) <= len(RELABEL_KEYS) else ()


class ReviewApp:
    """State and request handling of one review session (independent of sockets: ``handle`` is testable alone).

    It owns its review CSV until :meth:`close` (``ReviewServer.close`` calls it): another app on the
    same file is refused with a DistillError naming the file and the holder's pid.
    """

    def __init__(self, *, pseudo: Path, review: Path | None = None, student: Path | None = None):
        self.pseudo = Path(pseudo)
        self.rows = read_pseudo_csv(self.pseudo)
        self.review_path = Path(review) if review is not None else default_review_path(self.pseudo)
        self._lock = threading.Lock()  # guards decisions and closed
        self.closed = False
        self._owner = contextlib.ExitStack()
        self._owner.enter_context(exclusive_lock(
            self.review_path.with_name(self.review_path.name + ".lock"), what=self.review_path, doing="reviewed",
            remove=True, advice="stop that `distill pseudo review` first (Ctrl-C), or pass another --review"))
        try:
            self._load(student)
        except BaseException:
            self._owner.close()
            raise

    def _load(self, student: Path | None) -> None:
        self.decisions: dict[str, ReviewDecision] = read_review(self.review_path, self.rows.classes) if self.review_path.exists() else {}
        self.index = {name: i for i, name in enumerate(self.rows.names)}
        self.teacher_names, self.teacher_top1, self.teacher_note = _teacher_top1(self.rows)
        self.student_name = Path(student).resolve().name if student is not None else None
        self.student = _student_guesses(Path(student), self.rows) if student is not None else None
        self.order = sorted(range(len(self.rows)), key=lambda i: (float(self.rows.confidence[i]), self.rows.names[i]))
        self.static = {p.name: p for p in STATIC_DIR.iterdir() if p.is_file() and p.suffix in STATIC_TYPES} if STATIC_DIR.is_dir() else {}
        self._png_lock = threading.Lock()
        self._png: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self.allowed_hosts: set[str] = set()  # "host:port" values of the Host header; set by ReviewServer

    def __len__(self) -> int:
        return len(self.rows)

    def close(self) -> None:
        """Give the review CSV up (its lock); decisions posted afterwards are refused. Idempotent."""
        with self._lock:
            self._owner.close()
            self.closed = True

    # ------------------------------------------------------------ data

    def decided(self) -> int:
        return sum(1 for n in self.rows.names if n in self.decisions)

    def clip(self, i: int) -> dict[str, Any]:
        rows = self.rows
        name = rows.names[i]
        probs = rows.probs[i]
        top = np.argsort(-probs, kind="stable")[:3]
        decision = self.decisions.get(name)
        return {
            "fname": name,
            "label": rows.classes[int(rows.labels[i])],
            "confidence": round(float(rows.confidence[i]), 6),
            "agreement": round(float(rows.agreement[i]), 6),
            "top3": [{"label": rows.classes[int(c)], "prob": round(float(probs[c]), 4)} for c in top],
            "teachers": self.teacher_top1[i],
            "student": self.student[i] if self.student is not None else None,
            "decision": decision.to_json() if decision is not None else None,
        }

    def clips_payload(self) -> dict[str, Any]:
        with self._lock:
            clips = [self.clip(i) for i in self.order]
            decided = self.decided()
        return {
            "classes": list(self.rows.classes),
            "keys": list(relabel_keys(self.rows.classes)),
            "relabel": "keys" if relabel_keys(self.rows.classes) else "search",
            "pseudo": str(self.pseudo),
            "review": str(self.review_path),
            "folder": str(self.rows.folder),
            "teachers": list(self.teacher_names),
            "teacher_note": self.teacher_note,
            "student": self.student_name,
            "total": len(clips),
            "decided": decided,
            "clips": clips,
        }

    def _clip_name(self, raw: str) -> str:
        name = unquote(raw)
        if not check_clip_name(name):
            raise _RequestError(400, f"bad clip name {name!r}: expected a plain file name from the pseudo-label list")
        if name not in self.index:
            raise _RequestError(404, f"unknown clip {name!r}: not in {self.pseudo.name}")
        return name

    def _clip_path(self, name: str) -> Path:
        path = self.rows.folder / name
        if not path.is_file():
            raise _RequestError(404, f"clip {name!r} is listed in {self.pseudo.name} but missing from {self.rows.folder}")
        return path

    def audio(self, name: str) -> Response:
        try:
            data = self._clip_path(name).read_bytes()
        except OSError as err:
            raise _RequestError(500, f"cannot read {name}: {err}") from None
        return Response(200, data, "audio/wav", {"Cache-Control": "private, max-age=3600"})

    def spectrogram(self, name: str) -> Response:
        with self._png_lock:
            png = self._png.get(name)
            if png is not None:
                self._png.move_to_end(name)
        if png is None:
            from distill.data.wav import decode_wav

            try:
                png = spectrogram_png(decode_wav(self._clip_path(name)))
            except BadAudioError as err:
                raise _RequestError(422, f"cannot draw {name}: {err.reason}") from None
            with self._png_lock:
                self._png[name] = png
                while len(self._png) > SPECTROGRAM_CACHE:
                    self._png.popitem(last=False)
        return Response(200, png, "image/png", {"Cache-Control": "private, max-age=3600"})

    def decide(self, payload: Any) -> Response:
        if not isinstance(payload, dict):
            raise _RequestError(400, "expected a JSON object {fname, decision, label}")
        extra = sorted(set(payload) - {"fname", "decision", "label"})
        if extra:
            raise _RequestError(400, f"unknown fields {extra}; expected fname, decision, label")
        fname, decision, label = payload.get("fname"), payload.get("decision"), payload.get("label")
        if not isinstance(fname, str):
            raise _RequestError(400, "fname must be a string (a clip name from /api/clips)")
        name = self._clip_name(fname)
        if decision not in DECISIONS:
            raise _RequestError(400, f"decision must be one of {', '.join(DECISIONS)}, got {decision!r}")
        classes = self.rows.classes
        if label is not None and label != "" and (not isinstance(label, str) or label not in classes):
            raise _RequestError(400, f"unknown label {label!r}; classes are {', '.join(classes)}")
        if decision == RELABEL and not label:
            raise _RequestError(400, f"relabel needs a label; classes are {', '.join(classes)}")
        # accept and reject are about the teachers' label; relabel records the person's
        stored = label if decision == RELABEL else classes[int(self.rows.labels[self.index[name]])]
        record = ReviewDecision(decision, stored, now_timestamp())
        with self._lock:
            if self.closed:
                raise _RequestError(503, f"this review session has ended; {self.review_path} is no longer its to write")
            updated = dict(self.decisions)
            updated[name] = record
            try:
                write_review(self.review_path, updated)
            except OSError as err:
                raise _RequestError(500, f"could not save the decision to {self.review_path}: {err}") from None
            self.decisions = updated
            decided = self.decided()
        return _json(200, {"ok": True, "fname": name, "decision": record.to_json(), "decided": decided, "total": len(self.rows)})

    # ------------------------------------------------------------ requests

    def _static(self, name: str) -> Response:
        path = self.static.get(name)
        if path is None:
            raise _RequestError(404, f"no such page file {name!r}")
        return Response(200, path.read_bytes(), STATIC_TYPES[path.suffix], {"Cache-Control": "no-cache"})

    def _check_host(self, headers: Mapping[str, str]) -> None:
        host = headers.get("Host")
        if host is not None and self.allowed_hosts and host.lower() not in self.allowed_hosts:
            raise _RequestError(403, f"Host {host!r} is not this loopback server (open the address the server printed)")

    def _check_post(self, headers: Mapping[str, str]) -> None:
        origin = headers.get("Origin")
        if origin is not None and self.allowed_hosts:
            netloc = urlsplit(origin).netloc.lower()
            if not origin.lower().startswith("http://") or netloc not in self.allowed_hosts:
                raise _RequestError(403, f"cross-origin request from {origin!r} refused")
        content_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise _RequestError(415, "send the decision as Content-Type: application/json")

    def handle(self, method: str, target: str, headers: Mapping[str, str] | None = None, body: bytes = b"") -> Response:
        """Answer one request (``target`` is the raw request path, query included)."""
        headers = headers or {}
        try:
            self._check_host(headers)
            path = urlsplit(target).path
            if method == "GET":
                if path in ("/", "/index.html"):
                    return self._static("index.html")
                if path.startswith("/static/"):
                    return self._static(unquote(path[len("/static/"):]))
                if path == "/api/clips":
                    return _json(200, self.clips_payload())
                if path.startswith("/audio/"):
                    return self.audio(self._clip_name(path[len("/audio/"):]))
                if path.startswith("/spectrogram/"):
                    rest = path[len("/spectrogram/"):]
                    if not rest.endswith(".png"):
                        raise _RequestError(404, "spectrograms are at /spectrogram/<fname>.png")
                    return self.spectrogram(self._clip_name(rest[: -len(".png")]))
                if path == "/api/decision":
                    raise _RequestError(405, "POST decisions to /api/decision")
                raise _RequestError(404, f"no such page {path!r}")
            if method == "POST":
                if path != "/api/decision":
                    raise _RequestError(404, f"cannot POST to {path!r}; decisions go to /api/decision")
                self._check_post(headers)
                try:
                    payload = json.loads(body.decode("utf-8"))
                except (UnicodeDecodeError, ValueError) as err:
                    raise _RequestError(400, f"malformed JSON: {err}") from None
                except RecursionError:  # e.g. [[[[...: the body limit allows thousands of levels
                    raise _RequestError(400, "malformed JSON: nested too deeply (a decision is one flat object)") from None
                return self.decide(payload)
            raise _RequestError(405, f"method {method} not allowed")
        except _RequestError as err:
            return _error(err.status, err.message)


# ---------------------------------------------------------------- HTTP plumbing


def make_app(*, pseudo: Path, review: Path | None = None, student: Path | None = None) -> ReviewApp:
    """Load a pseudo-label CSV, its review decisions and (optionally) a student's guesses."""
    return ReviewApp(pseudo=pseudo, review=review, student=student)


def check_loopback(host: str) -> tuple[str, int]:
    """(address to bind, address family) of ``host``; a DistillError unless every address it names is loopback."""
    refuse = f"--host {host!r} is not a loopback address; the review page serves your data and records decisions, so it only listens on 127.0.0.1, ::1 or localhost"
    if not host or host.strip() in ("0.0.0.0", "::", "*"):
        raise DistillError(refuse)
    literal = host.strip("[]")
    try:
        infos = socket.getaddrinfo(literal, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise DistillError(f"--host {host!r}: cannot resolve it; use 127.0.0.1") from None
    addresses = [(info[4][0], info[0]) for info in infos]
    if not addresses or not all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a, _ in addresses):
        raise DistillError(refuse)
    addresses.sort(key=lambda af: af[1] != socket.AF_INET)  # prefer IPv4
    return addresses[0][0], addresses[0][1]


def _handler_class(app: ReviewApp, *, verbose: bool):
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "distill-review"
        protocol_version = "HTTP/1.1"
        timeout = 120  # idle keep-alive connections

        def _respond(self, response: Response, *, head: bool = False) -> None:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Security-Policy", CSP)
            self.send_header("Referrer-Policy", "no-referrer")
            for key, value in response.headers.items():
                self.send_header(key, value)
            self.end_headers()
            if not head:
                self.wfile.write(response.body)

        def _body(self) -> bytes | Response:
            length = self.headers.get("Content-Length")
            if length is None:
                self.close_connection = True
                return _error(411, "a POST needs a Content-Length")
            try:
                n = int(length)
            except ValueError:
                self.close_connection = True
                return _error(400, f"bad Content-Length {length!r}")
            if n < 0 or n > MAX_BODY:
                self.close_connection = True  # the unread body must not be taken for the next request
                return _error(413, f"request body of {n} bytes; at most {MAX_BODY}")
            return self.rfile.read(n)

        def _handle(self, method: str, body: bytes = b"") -> Response:
            try:
                return app.handle(method, self.path, self.headers, body)
            except Exception as err:  # an answer, never a dropped connection
                self.log_error("internal error on %s %s: %r", method, self.path, err)
                return _error(500, f"internal error: {type(err).__name__}")

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._respond(self._handle("GET"))

        def do_HEAD(self) -> None:  # noqa: N802
            self._respond(self._handle("GET"), head=True)

        def do_POST(self) -> None:  # noqa: N802
            body = self._body()
            if isinstance(body, Response):
                self._respond(body)
                return
            self._respond(self._handle("POST", body))

        def _not_allowed(self) -> None:
            self._respond(_error(405, f"method {self.command} not allowed"))

        do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            if verbose:
                super().log_message(format, *args)

    return Handler


class ReviewServer:
    """``app`` served on ``host:port`` (port 0: a free port); ``start()`` runs it in a daemon thread; ``close()`` closes ``app`` too."""

    def __init__(self, app: ReviewApp, *, host: str = "127.0.0.1", port: int = 0, verbose: bool = False):
        address, family = check_loopback(host)
        if not 0 <= port <= 65535:
            raise DistillError(f"--port {port}: a port is 0-65535 (0 picks a free one)")

        class _Server(http.server.ThreadingHTTPServer):
            address_family = family
            daemon_threads = True
            allow_reuse_address = True

        try:
            self.httpd = _Server((address, port), _handler_class(app, verbose=verbose))
        except OSError as err:
            raise DistillError(f"cannot listen on {host}:{port} ({err.strerror or err}); pass another --port (0 picks a free one)") from None
        self.app = app
        self.host = address
        self.port = int(self.httpd.server_address[1])
        shown = f"[{address}]" if family == socket.AF_INET6 else address
        self.url = f"http://{shown}:{self.port}/"
        app.allowed_hosts = {f"{name}:{self.port}" for name in (*LOOPBACK_NAMES, shown)}
        self._thread: threading.Thread | None = None

    def start(self) -> "ReviewServer":
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="distill-review", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def close(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join()
            self._thread = None
        self.httpd.server_close()
        self.app.close()

    def __enter__(self) -> "ReviewServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def serve_review(
    *,
    pseudo: Path,
    host: str = "127.0.0.1",
    port: int = 8765,
    review: Path | None = None,
    student: Path | None = None,
    open_browser: bool = False,
) -> None:
    """Serve the review page for ``pseudo`` until Ctrl-C; decisions go to ``review`` (default ``<stem>.review.csv``)."""
    check_loopback(host)  # before any slow loading
    app = make_app(pseudo=pseudo, review=review, student=student)
    try:
        server = ReviewServer(app, host=host, port=port)
    except BaseException:
        app.close()
        raise
    print(f"reviewing {len(app)} pseudo-labelled clips ({app.decided()} decided) at {server.url}", flush=True)
    print(f"decisions are saved to {app.review_path} as you make them; Ctrl-C stops the server", flush=True)
    if app.teacher_note:
        print(f"note: {app.teacher_note}", flush=True)
    if open_browser:
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
