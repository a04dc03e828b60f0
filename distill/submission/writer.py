"""The Kaggle submission CSV from a frozen graph: :func:`write_submission`, resumable and validated.

It streams a test folder (``distill.data.unlabeled.iter_unlabeled``, every clip
with its audio or the reason it is bad) as a pipeline: the next batch is read
and predicted while this one's rows are written (docs/submission-speed.md).
It appends one row per clip to ``<out>.part`` as it goes (flushed every
batch, fsynced every few seconds), resumes after the last complete row of a matching partial file, and writes the
final ``fname,label`` CSV atomically, sorted, then validates it. A second
writer of the same CSV is refused while the first runs (``<out>.lock``).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import csv
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from distill.core.errors import DistillError
from distill.core.io import atomic_path, check_output, exclusive_lock, sha256_file
from distill.core.labels import CLASSES, CLIP_SAMPLES
from distill.core.progress import track
from distill.data.unlabeled import iter_unlabeled, list_unlabeled
from distill.submission.predictor import DEFAULT_CHUNK, DEFAULT_METHOD, LABELS_FILE, GraphPredictor, model_labels, open_predictor, resolve_model
from distill.submission.scoring import HEADER, parse_submission, read_answer_key, score_submission, validate_submission

__all__ = ["SubmissionResult", "write_submission"]

_PART_MAGIC = "# distill-submission-part v1 "
_FSYNC_SECONDS = 5.0


@dataclass
class SubmissionResult:
    """What :func:`write_submission` did.

    ``counts``: rows per label (CLASSES order); ``bad``: ``(fname, reason)`` of
    clips predicted as digital silence because they could not be read;
    ``resumed_rows``: rows taken from an earlier interrupted run;
    ``predicted_rows``: this run's; ``seconds``: the whole call (model load
    included); ``stream_seconds``: reading, predicting and writing the rows
    (``stream_cpu_seconds``: the process's CPU time meanwhile, all threads);
    ``clips_per_second`` = predicted_rows / stream_seconds; ``predict_seconds``:
    the part of it spent waiting for the graph (it runs while the rows of the
    batch before are written, so a share near 1 means the graph is the
    bottleneck). ``score``: with an ``answer_key``, the submission scored
    against it (:func:`distill.submission.scoring.score_submission`).
    """

    out: Path
    clips: int
    counts: dict[str, int]
    bad: list[tuple[str, str]]
    bad_report: Path | None
    probs: Path | None
    resumed_rows: int
    predicted_rows: int
    seconds: float
    stream_seconds: float
    stream_cpu_seconds: float
    clips_per_second: float
    predict_seconds: float
    method: str
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    score: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "clips": self.clips, "counts": self.counts, "bad": [list(b) for b in self.bad],
                "bad_report": str(self.bad_report) if self.bad_report else None,
                "probs": str(self.probs) if self.probs else None, "resumed_rows": self.resumed_rows,
                "predicted_rows": self.predicted_rows, "seconds": self.seconds,
                "stream_seconds": self.stream_seconds, "stream_cpu_seconds": self.stream_cpu_seconds, "predict_seconds": self.predict_seconds,
                "clips_per_second": self.clips_per_second, "method": self.method, "notes": list(self.notes),
                "timings": dict(self.timings), "score": self.score}



def write_submission(*, model: str | os.PathLike, test_dir: str | os.PathLike, out: str | os.PathLike,
                     batch_size: int = 256, resume: bool = True, progress: bool = True, skip_bad: bool = False,
                     probs: bool = False, method: str = DEFAULT_METHOD, chunk: int = DEFAULT_CHUNK,
                     workers: int | None = None, predictor: GraphPredictor | None = None,
                     answer_key: str | os.PathLike | None = None) -> SubmissionResult:
    """Predict every clip of ``test_dir`` with the frozen ``model`` and write the Kaggle CSV ``out``.

    Streams the folder in batches of ``batch_size`` (never holding all clips),
    appending rows to ``<out>.part`` (flushed every batch, fsynced every few
    seconds). One process writes ``out`` at a time: a second is refused at once
    (a DistillError naming ``out`` and the holder's pid; the lock is an ``flock``
    on ``<out>.lock``, dropped by the kernel if the holder dies, the file removed
    when it finishes). With ``resume`` a partial file from an interrupted run for the
    same model and clip list is continued after its last complete row;
    anything else starts over. The final ``fname,label`` CSV (sorted by fname,
    one row per clip) is written atomically and validated against the clip
    list, then the partial file is removed.

    Bad clips raise BadAudioError, or with ``skip_bad`` are predicted as
    digital silence (zeros: Kaggle needs a row for every clip), listed with
    their reason in ``<out>.bad.tsv`` and warned about on stderr. ``probs``
    also saves ``<out>.probs.npz`` (``names``, float16 ``probs`` (N, 12) in
    CSV row order, ``classes``). ``method``, ``chunk``, ``workers``: see
    :class:`GraphPredictor`; ``predictor`` reuses a loaded one instead.
    ``answer_key``: a ``fname,label`` CSV of the clips' true labels, read and
    checked against the clip list before any clip is predicted, and scored into
    the result's ``score``. ``out`` is checked before any work too: a folder, a
    path under a file or in a read-only folder, or one of the inputs (the model,
    its labels.txt, the answer key) is refused.
    """
    t0 = time.perf_counter()
    out, test_dir = Path(out), Path(test_dir)
    if batch_size < 1:
        raise DistillError(f"batch_size must be >= 1, got {batch_size}")
    if not test_dir.is_dir():
        raise DistillError(f"{test_dir}: test folder {'is not a folder' if test_dir.exists() else 'does not exist'}")
    source = resolve_model(model)
    check_output(out, kind="file", inputs=(source, source.with_name(LABELS_FILE), test_dir, answer_key))
    names = list_unlabeled(test_dir)
    named = model_labels(source) if predictor is None else predictor.labels  # the model's classes (labels.txt; Kaggle's without one)
    classes = named.classes if named is not None else CLASSES
    if answer_key is not None:  # a missing or wrong key stops here, not after every clip is predicted
        read_answer_key(answer_key, names=names, source=str(test_dir), classes=classes)
    # one writer per CSV: held from before the .part file is opened until after the final rename
    with exclusive_lock(_sidecar(out, ".lock"), what=out, doing="written", remove=True,
                        advice="wait for that `distill submit` to finish or stop it, then run this again (or choose another --out)"):
        own = predictor is None
        if own:
            predictor = open_predictor(model, method=method, chunk=chunk, workers=workers)  # a .tflite runs in LiteRT
        model_path = predictor.path if own else resolve_model(model)
        try:
            result = _write_submission(predictor=predictor, model_path=model_path, test_dir=test_dir, out=out, names=names,
                                       batch_size=batch_size, resume=resume, progress=progress, skip_bad=skip_bad,
                                       probs=probs, t0=t0)
        finally:
            if own:
                predictor.close()
    if answer_key is not None:
        result.score = score_submission(result.out, answer_key, classes=classes)
    return result


def _write_submission(*, predictor: GraphPredictor, model_path: Path, test_dir: Path, out: Path, names: list[str],
                      batch_size: int, resume: bool, progress: bool, skip_bad: bool, probs: bool,
                      t0: float) -> SubmissionResult:
    notes = list(predictor.notes)
    part = _sidecar(out, ".part")
    out.parent.mkdir(parents=True, exist_ok=True)
    state = _open_part(part, _part_meta(sha256_file(model_path), names, probs=probs, classes=predictor.classes), names, resume=resume,
                       skip_bad=skip_bad, notes=notes)
    done = len(state.rows)
    rows, prob_rows = state.rows, state.probs  # (fname, label, bad reason) and probabilities, in clip order
    bad_now: list[str] = []  # this run's unreadable clips
    silence: np.ndarray | None = None  # the graph's probabilities of digital silence, for unreadable clips
    predict_seconds = 0.0
    t_stream, cpu_stream = time.perf_counter(), time.process_time()
    last_sync = time.perf_counter()
    batches = iter_unlabeled(test_dir, batch_size=batch_size, names=names[done:], skip_bad=skip_bad)
    bar = track(batches, total=len(names), completed=done, size=len, description=f"predicting {len(names):,} clips",
                disable=not progress)
    # A pipeline: the reader decodes batch k+1 and the graph runs it while this thread writes batch k's rows,
    # so the cores never wait for the rows or the files. GraphPredictor queues chunks on its own workers
    # (submit); another predictor (LiteRT) runs one predict() at a time on a thread of its own.
    solo = None if hasattr(predictor, "submit") else concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="distill-submit")

    def start(waveforms: np.ndarray):
        return predictor.submit(waveforms) if solo is None else solo.submit(predictor.predict, waveforms)

    pending: collections.deque[tuple[Any, Any]] = collections.deque()  # (batch, its prediction or None)
    with open(part, "a", encoding="utf-8", newline="") as fh, contextlib.closing(bar):
        writer = csv.writer(fh, lineterminator="\n")

        def write_rows(batch, running) -> None:
            nonlocal silence, predict_seconds, last_sync
            ok = batch.ok
            batch_probs = np.empty((len(batch), predictor.num_classes), np.float32)
            if running is not None:
                t = time.perf_counter()
                batch_probs[ok] = running.result()
                predict_seconds += time.perf_counter() - t
            if not ok.all():
                if silence is None:
                    silence = start(np.zeros((1, CLIP_SAMPLES), np.float32)).result()[0]
                batch_probs[~ok] = silence
            labels = [predictor.classes[i] for i in batch_probs.argmax(axis=1)]  # row by row argmax, at once
            for name, label, p, err in zip(batch.names, labels, batch_probs, batch.errors):
                reason = "" if err is None else _clean_reason(err.reason)
                line = [name, label, reason]
                if probs:
                    text = [f"{v:.6g}" for v in p]
                    line += text
                    # kept as written, so a resumed run's probabilities equal an uninterrupted run's bit for bit
                    prob_rows.append(np.array([float(v) for v in text], dtype=np.float32))
                writer.writerow(line)
                rows.append((name, label, reason))
                if err is not None:
                    bad_now.append(name)
            fh.flush()
            if time.perf_counter() - last_sync >= _FSYNC_SECONDS:
                os.fsync(fh.fileno())
                last_sync = time.perf_counter()

        try:
            for batch in bar:
                ok = batch.ok
                pending.append((batch, start(batch.waveforms if ok.all() else batch.waveforms[ok]) if ok.any() else None))
                if len(pending) > 1:
                    write_rows(*pending.popleft())
            while pending:
                write_rows(*pending.popleft())
        finally:
            for _, running in pending:  # an error: the batches still queued are not wanted
                if running is not None:
                    running.cancel()
            if solo is not None:
                solo.shutdown(wait=True)
        fh.flush()
        os.fsync(fh.fileno())
    stream_seconds = time.perf_counter() - t_stream
    stream_cpu_seconds = time.process_time() - cpu_stream

    if len(rows) != len(names) or any(r[0] != n for r, n in zip(rows, names)):
        raise DistillError(f"internal error: {len(rows)} rows for {len(names)} clips; {part} is kept for inspection")
    if bad_now:
        print(f"warning: {len(bad_now)} clip(s) could not be read and were predicted as digital silence "
              f"(all zeros); see {_sidecar(out, '.bad.tsv')}", file=sys.stderr)
    bad, bad_report, probs_path = _finish(out, rows, prob_rows if probs else None, names, notes, classes=predictor.classes)
    part.unlink()
    counts = {c: 0 for c in predictor.classes}
    for _, label, _ in rows:
        counts[label] += 1
    seconds = time.perf_counter() - t0
    predicted = len(rows) - done
    return SubmissionResult(out=out, clips=len(rows), counts=counts, bad=bad, bad_report=bad_report,
                            probs=probs_path, resumed_rows=done, predicted_rows=predicted, seconds=seconds,
                            stream_seconds=stream_seconds, stream_cpu_seconds=stream_cpu_seconds,
                            clips_per_second=predicted / max(stream_seconds, 1e-9),
                            predict_seconds=predict_seconds, method=predictor.method, notes=notes,
                            timings=dict(predictor.timings))


def _finish(out: Path, rows: list[tuple[str, str, str]], prob_rows: list[np.ndarray] | None, names: Sequence[str],
            notes: list[str], classes: Sequence[str] = CLASSES) -> tuple[list[tuple[str, str]], Path | None, Path | None]:
    """Write the sorted CSV (validated), ``<out>.bad.tsv`` and ``<out>.probs.npz``; (bad clips, their report, the npz)."""
    order = sorted(range(len(rows)), key=lambda i: rows[i][0])
    text = HEADER + "\n" + "".join(f"{rows[i][0]},{rows[i][1]}\n" for i in order)
    parse_submission(out, text, classes)  # never rename an invalid file into place
    with atomic_path(out) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="")
    validate_submission(out, names=names, classes=classes)

    bad = [(name, reason) for name, _, reason in rows if reason]
    bad_report = _sidecar(out, ".bad.tsv")
    if bad:
        with atomic_path(bad_report) as tmp:
            tmp.write_text("fname\treason\n" + "".join(f"{n}\t{r}\n" for n, r in bad), encoding="utf-8")
    elif bad_report.exists():
        bad_report.unlink()
        notes.append(f"removed {bad_report} of an earlier run (no bad clips now)")
    probs_path = None
    if prob_rows is not None:
        probs_path = _sidecar(out, ".probs.npz")
        with atomic_path(probs_path) as tmp:
            with open(tmp, "wb") as pf:
                np.savez(pf, names=np.array([rows[i][0] for i in order]),
                         probs=np.stack([prob_rows[i] for i in order]).astype(np.float16),
                         classes=np.array(classes))
    return bad, bad_report if bad else None, probs_path


# --------------------------------------------------------------------------- the partial file


def _sidecar(out: Path, suffix: str) -> Path:
    return out.with_name(out.name + suffix)


def _clean_reason(reason: str) -> str:
    return " ".join(str(reason).split())  # one line, no tabs: it goes into a CSV field and a TSV


def _part_meta(model_sha: str, names: Sequence[str], *, probs: bool, classes: Sequence[str] = CLASSES) -> dict[str, Any]:
    meta = {"model_sha256": model_sha, "clips": len(names),
            "names_sha256": hashlib.sha256("\n".join(names).encode("utf-8")).hexdigest(), "probs": bool(probs)}
    if tuple(classes) != CLASSES:
        meta["classes"] = list(classes)  # a model of another word list (Kaggle partial files stay as they were)
    return meta


def _part_header(probs: bool, classes: Sequence[str] = CLASSES) -> list[str]:
    return ["fname", "label", "bad_reason", *([f"p_{c}" for c in classes] if probs else [])]


@dataclass
class _Resume:
    rows: list[tuple[str, str, str]]  # (fname, label, bad reason)
    probs: list[np.ndarray]
    offset: int  # bytes of the part file that hold the meta line, header and those rows


def _read_part(part: Path, meta: dict[str, Any], names: Sequence[str], *, skip_bad: bool) -> tuple[_Resume | None, str]:
    """The reusable prefix of a partial file, or (None, why it cannot be used)."""
    try:
        data = part.read_bytes()
    except OSError as err:
        return None, f"unreadable ({err.strerror or err})"
    first, sep, rest = data.partition(b"\n")
    if not sep or not first.startswith(_PART_MAGIC.encode()):
        return None, "not a distill partial submission"
    try:
        old = json.loads(first[len(_PART_MAGIC):].decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None, "its first line is damaged"
    if old != meta:
        changed = sorted(k for k in set(old) | set(meta) if old.get(k) != meta.get(k))
        return None, f"it was written for a different {', '.join(changed)}"
    offset = len(first) + 1
    header, sep, rest = rest.partition(b"\n")
    probs = meta["probs"]
    classes = tuple(meta.get("classes", CLASSES))
    if not sep or header.decode("utf-8", "replace") != ",".join(_part_header(probs, classes)):
        return None, "its header is damaged"
    offset += len(header) + 1
    want_fields = 3 + (len(classes) if probs else 0)
    rows: list[tuple[str, str, str]] = []
    prob_rows: list[np.ndarray] = []
    for raw in rest.split(b"\n")[:-1]:  # the piece after the last newline is an incomplete row
        try:
            fields = next(csv.reader([raw.decode("utf-8")]))
        except (UnicodeDecodeError, StopIteration, csv.Error):
            return None, f"row {len(rows) + 1} is damaged"
        i = len(rows)
        if len(fields) != want_fields or i >= len(names) or fields[0] != names[i] or fields[1] not in classes:
            return None, f"row {i + 1} ({raw[:60]!r}) is not clip {i + 1} of the sorted clip list"
        if probs:
            try:
                prob_rows.append(np.array([float(v) for v in fields[3:]], dtype=np.float32))
            except ValueError:
                return None, f"row {i + 1} has a damaged probability"
        if fields[2] and not skip_bad:
            return None, f"row {i + 1} is an unreadable clip predicted as silence (--skip-bad), and skip_bad is off now"
        rows.append((fields[0], fields[1], fields[2]))
        offset += len(raw) + 1
    return _Resume(rows, prob_rows, offset), ""



def _open_part(part: Path, meta: dict[str, Any], names: Sequence[str], *, resume: bool, skip_bad: bool,
               notes: list[str]) -> _Resume:
    """The rows an earlier run left in ``part`` (the file cut after them), or a new part file with none."""
    state = None
    if part.exists():
        if resume:
            state, why = _read_part(part, meta, names, skip_bad=skip_bad)
            if state is None:
                notes.append(f"{part}: not resumed ({why}); starting over")
            elif state.rows:
                notes.append(f"{part}: resumed after {len(state.rows)} of {len(names)} rows")
        else:
            notes.append(f"{part}: discarded (resume is off); starting over")
    if state is None:
        with open(part, "w", encoding="utf-8", newline="") as fh:
            fh.write(_PART_MAGIC + json.dumps(meta, sort_keys=True) + "\n")
            csv.writer(fh, lineterminator="\n").writerow(_part_header(meta["probs"], tuple(meta.get("classes", CLASSES))))
        return _Resume([], [], part.stat().st_size)
    with open(part, "r+b") as fh:
        fh.truncate(state.offset)  # drop an incomplete last row
    return state
