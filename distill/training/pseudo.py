"""Pseudo-labels: pick confidently labelled unlabeled clips from the teachers' soft labels, read them back.

``select_pseudo_labels`` reads the ``unlabeled/`` part of a soft-label folder
(``distill teachers predict --unlabeled``), averages the teachers' tempered
softmax on the clean view (view 0) and keeps the clips that are confident and
that the teachers agree on. It writes two files::

    pseudo.csv     fname,label,confidence,agreement,p_silence,...,p_go   (sorted by fname)
    pseudo.json    how it was selected: soft-label folder, unlabeled folder,
                   thresholds, candidates and counts per class

A person can then check the selection in a browser (``distill pseudo review``,
:mod:`distill.review`), which records one decision per clip in
``pseudo.review.csv`` (``fname,decision,label,timestamp``; decisions are
``accept``, ``reject`` or ``relabel``). ``load_pseudo`` returns the selection
with those decisions applied: rejected clips are dropped, relabelled clips get
the person's label as a one-hot target, and accepted or undecided clips keep the
teachers' label and probabilities.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from distill import __version__
from distill.core.errors import DistillError
from distill.core.io import check_output, read_json, write_json, write_text
from distill.core.labels import CLASSES, CLIP_SAMPLES, LabelSet

__all__ = [
    "DECISIONS",
    "PSEUDO_COLUMNS",
    "REVIEW_COLUMNS",
    "PseudoRows",
    "PseudoSelection",
    "PseudoSet",
    "ReviewDecision",
    "default_review_path",
    "load_pseudo",
    "parse_class_thresholds",
    "read_pseudo_csv",
    "read_review",
    "selection_config_path",
    "select_pseudo_labels",
    "write_review",
]

PROB_COLUMNS: tuple[str, ...] = tuple(f"p_{c}" for c in CLASSES)
PSEUDO_COLUMNS: tuple[str, ...] = ("fname", "label", "confidence", "agreement", *PROB_COLUMNS)  # the Kaggle words' header


def pseudo_columns(classes: tuple[str, ...] = CLASSES) -> tuple[str, ...]:
    """The pseudo-label CSV header for a word list's classes (``PSEUDO_COLUMNS`` for the Kaggle twelve)."""
    return ("fname", "label", "confidence", "agreement", *(f"p_{c}" for c in classes))
REVIEW_COLUMNS: tuple[str, ...] = ("fname", "decision", "label", "timestamp")
ACCEPT, REJECT, RELABEL = "accept", "reject", "relabel"
DECISIONS: tuple[str, ...] = (ACCEPT, REJECT, RELABEL)
SELECTION_KIND = "PseudoSelection"
_BAD_NAME = re.compile(r"[/\\\x00-\x1f]")


# ---------------------------------------------------------------- paths


def selection_config_path(pseudo: Path) -> Path:
    """``<stem>.json`` beside a pseudo-label CSV."""
    pseudo = Path(pseudo)
    return pseudo.with_name(pseudo.stem + ".json")


def default_review_path(pseudo: Path) -> Path:
    """``<stem>.review.csv`` beside a pseudo-label CSV: where review decisions go by default."""
    pseudo = Path(pseudo)
    return pseudo.with_name(pseudo.stem + ".review.csv")


def check_clip_name(name: str) -> bool:
    """True for a plain file name inside the unlabeled folder (no folders, no ``..``, no hidden files)."""
    return bool(name) and not name.startswith(".") and not _BAD_NAME.search(name) and name == name.strip()


# ---------------------------------------------------------------- selection


@dataclass(frozen=True)
class PseudoSelection:
    path: Path  # the pseudo-label CSV
    config_path: Path  # its <stem>.json
    counts: dict[str, int]  # selected clips per class, CLASSES order
    candidates: int  # unlabeled clips considered
    selected: int

    def to_table(self) -> str:
        from distill.core.tables import aligned_table, plain_text

        table = aligned_table(["class", "selected"], [[name, f"{count:,}"] for name, count in self.counts.items()], right_from=1)
        return f"selected {self.selected} of {self.candidates} unlabeled clips -> {self.path}\n" + plain_text(table).rstrip("\n")


def parse_class_thresholds(items: Iterable[str] | None) -> dict[str, float]:
    """``["yes=0.8", "unknown=0.9"]`` -> ``{"yes": 0.8, "unknown": 0.9}`` (the CLI's ``--class-threshold``)."""
    out: dict[str, float] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise DistillError(f"--class-threshold {item!r}: expected CLASS=PROBABILITY, e.g. yes=0.8")
        try:
            out[name] = float(value)
        except ValueError:
            raise DistillError(f"--class-threshold {item!r}: {value!r} is not a number") from None
    return out


def _class_thresholds(threshold: float, class_thresholds: Mapping[str, float] | None, classes: tuple[str, ...] = CLASSES) -> np.ndarray:
    if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
        raise DistillError(f"--threshold must be a probability in [0, 1], got {threshold}")
    given = dict(class_thresholds or {})
    unknown = sorted(set(given) - set(classes))
    if unknown:
        raise DistillError(f"class thresholds name unknown classes {unknown}; classes are {', '.join(classes)}")
    values = np.array([given.get(c, threshold) for c in classes], dtype=np.float64)
    for name, value in zip(classes, values):
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise DistillError(f"--class-threshold {name}={value}: must be a probability in [0, 1]")
    return values


def select_pseudo_labels(
    *,
    soft_labels: Path,
    out: Path,
    threshold: float = 0.6,
    class_thresholds: dict[str, float] | None = None,
    min_agreement: float = 1.0,
    max_per_class: int | None = None,
    temperature: float = 1.0,
) -> PseudoSelection:
    """Keep unlabeled clips whose ensemble confidence and teacher agreement pass; write ``out`` and ``<stem>.json``.

    confidence = the ensemble's top probability (clean view 0, softmax at
    ``temperature``); agreement = the fraction of teachers whose own top class is
    the ensemble's. A clip is kept when confidence >= the threshold of its class
    (``class_thresholds`` overrides ``threshold`` per class name) and agreement
    >= ``min_agreement``; with ``max_per_class`` only the most confident clips of
    each class are kept (ties broken by file name).
    """
    from distill.training.soft_labels import UNLABELED, ensemble_probabilities, load_soft_labels

    soft_labels, out = Path(soft_labels), Path(out)
    _class_thresholds(threshold, class_thresholds, tuple(class_thresholds or ()) or CLASSES)  # bad numbers fail before any reading
    if not (math.isfinite(min_agreement) and 0.0 <= min_agreement <= 1.0):
        raise DistillError(f"--min-agreement must be a fraction in [0, 1], got {min_agreement}")
    if max_per_class is not None and max_per_class < 0:
        raise DistillError(f"--max-per-class must be >= 0, got {max_per_class}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise DistillError(f"--temperature must be positive, got {temperature}")
    config_path = selection_config_path(out)
    if out.suffix.lower() != ".csv":
        raise DistillError(f"{out}: the pseudo-label file must end in .csv (its settings go to {config_path.name})")
    check_output(out, kind="file", inputs=(soft_labels,))  # before any work: a folder there, a read-only folder, an input
    if not (soft_labels / "config.json").exists():
        raise DistillError(f"{soft_labels}: not a soft-label folder (no config.json); write one with `distill teachers predict --unlabeled FOLDER`")
    if not (soft_labels / UNLABELED / "names.txt").exists():
        raise DistillError(f"{soft_labels}: holds no soft labels of an unlabeled folder; run `distill teachers predict` with --unlabeled FOLDER")
    soft = load_soft_labels(soft_labels, UNLABELED)
    classes = soft.config.labels.classes  # the teachers' word list
    thresholds = _class_thresholds(threshold, class_thresholds, classes)
    if soft.config.unlabeled is None:
        raise DistillError(f"{soft_labels}/config.json names no unlabeled folder; run `distill teachers predict` with --unlabeled FOLDER")
    names = list(soft.names or [])
    logits = np.asarray(soft.logits[:, 0], dtype=np.float64)  # (teachers, M, 12), clean view
    if logits.shape[1] != len(names):
        raise DistillError(f"{soft_labels}/{UNLABELED}: names.txt lists {len(names)} clips but the logits hold {logits.shape[1]}")

    probs = ensemble_probabilities(logits, temperature=temperature)  # (M, 12), the clean view only
    labels = probs.argmax(axis=1)
    confidence = probs.max(axis=1)
    agreement = (logits.argmax(axis=2) == labels[None, :]).mean(axis=0)

    keep = (confidence.astype(np.float64) >= thresholds[labels]) & (agreement >= min_agreement - 1e-9)
    chosen = np.flatnonzero(keep)
    if max_per_class is not None:
        capped = []
        for c in range(len(classes)):
            rows = chosen[labels[chosen] == c]
            order = sorted(rows.tolist(), key=lambda r: (-float(confidence[r]), names[r]))
            capped.extend(order[:max_per_class])
        chosen = np.array(sorted(capped), dtype=np.int64)
    chosen = sorted(chosen.tolist(), key=lambda r: names[r])

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(pseudo_columns(classes))
    for r in chosen:
        writer.writerow([names[r], classes[labels[r]], f"{confidence[r]:.6f}", f"{agreement[r]:.6f}", *(f"{p:.6f}" for p in probs[r])])
    write_text(out, buf.getvalue())

    counts = {c: 0 for c in classes}
    for r in chosen:
        counts[classes[labels[r]]] += 1
    from distill.data.unlabeled import resolve_unlabeled  # Kaggle's test/ -> test/audio, exactly as the soft labels read it

    try:
        folder = resolve_unlabeled(Path(soft.config.unlabeled))
    except DistillError:  # moved since prediction: keep the recorded path; load_pseudo says so when used
        folder = Path(soft.config.unlabeled)
    write_json(
        config_path,
        {
            "kind": SELECTION_KIND,
            "distill_version": __version__,
            "pseudo": out.name,
            "soft_labels": str(soft_labels.resolve()),
            "unlabeled": str(folder),
            "teachers": list(soft.teachers),
            "view": 0,
            "temperature": temperature,
            "threshold": threshold,
            "class_thresholds": dict(zip(classes, thresholds.tolist())),
            "words": list(classes[2:]),
            "min_agreement": min_agreement,
            "max_per_class": max_per_class,
            "candidates": len(names),
            "selected": len(chosen),
            "counts": counts,
        },
    )
    return PseudoSelection(path=out, config_path=config_path, counts=counts, candidates=len(names), selected=len(chosen))


# ---------------------------------------------------------------- reading


@dataclass(frozen=True, eq=False)
class PseudoRows:
    """A pseudo-label CSV as written (no review decisions applied), plus its selection settings."""

    path: Path
    names: tuple[str, ...]
    labels: np.ndarray  # int64 (N,)
    probs: np.ndarray  # float32 (N, 12)
    confidence: np.ndarray  # float32 (N,)
    agreement: np.ndarray  # float32 (N,)
    folder: Path  # the unlabeled folder the names are in
    soft_labels: Path
    settings: dict
    classes: tuple[str, ...] = CLASSES  # the word list's classes, from the CSV's p_<class> columns

    def __len__(self) -> int:
        return len(self.names)


def _float(value: str, *, where: str, column: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise DistillError(f"{where}: {column} {value!r} is not a number") from None
    if not math.isfinite(x):
        raise DistillError(f"{where}: {column} {value!r} is not a finite number")
    return x


def _read_rows(path: Path, expected: tuple[str, ...], what: str) -> Iterable[tuple[str, list[str]]]:
    """``(where, row)`` per data row of a CSV whose header must be ``expected``; ``where`` is ``file:line``."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # tolerate the BOM of a file saved by a spreadsheet
    except FileNotFoundError:
        raise DistillError(f"{path}: {what} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DistillError(f"{path}: cannot read {what}: {err}") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as err:
        raise DistillError(f"{path}:1: malformed CSV ({err})") from None
    if header is None:
        raise DistillError(f"{path}:1: empty file; expected the header {','.join(expected)}")
    if tuple(h.strip() for h in header) != expected:
        raise DistillError(f"{path}:1: bad header {','.join(header)!r}; expected {','.join(expected)}")
    try:
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(expected):
                raise DistillError(f"{where}: {len(row)} fields, expected {len(expected)} ({','.join(expected)})")
            yield where, [cell.strip() for cell in row]
    except csv.Error as err:
        raise DistillError(f"{path}:{reader.line_num}: malformed CSV ({err})") from None


def _label(value: str, *, where: str, column: str = "label", classes: tuple[str, ...] = CLASSES) -> int:
    if value not in classes:
        raise DistillError(f"{where}: unknown {column} {value!r}; classes are {', '.join(classes)}")
    return classes.index(value)


def _csv_classes(path: Path) -> tuple[str, ...]:
    """The classes a pseudo-label CSV's header names (its p_<class> columns); the Kaggle twelve when it names none."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            header = next(csv.reader(fh), None)
    except (OSError, UnicodeDecodeError, csv.Error):
        return CLASSES  # _read_rows names what is wrong
    if not header or tuple(h.strip() for h in header[:4]) != PSEUDO_COLUMNS[:4] or len(header) < 7:
        return CLASSES
    named = tuple(h.strip()[2:] for h in header[4:] if h.strip().startswith("p_"))
    if len(named) != len(header) - 4 or named[:2] != CLASSES[:2] or named == CLASSES:
        return CLASSES
    try:
        return LabelSet(named[2:]).classes
    except DistillError:
        return CLASSES


def read_pseudo_csv(path: Path) -> PseudoRows:
    """Read and validate a pseudo-label CSV and its ``<stem>.json`` (no review decisions applied)."""
    path = Path(path)
    config_path = selection_config_path(path)
    names: list[str] = []
    labels: list[int] = []
    numbers: list[list[float]] = []
    seen: dict[str, str] = {}
    classes = _csv_classes(path)
    for where, row in _read_rows(path, pseudo_columns(classes), "pseudo-label file"):
        fname = row[0]
        if not check_clip_name(fname):
            raise DistillError(f"{where}: {fname!r} is not a plain clip file name inside the unlabeled folder")
        if fname in seen:
            raise DistillError(f"{where}: {fname} is listed twice (first at {seen[fname]})")
        seen[fname] = where
        names.append(fname)
        labels.append(_label(row[1], where=where, classes=classes))
        numbers.append([_float(v, where=where, column=c) for c, v in zip(pseudo_columns(classes)[2:], row[2:])])
    if not config_path.exists():
        raise DistillError(f"{config_path}: missing; it records the unlabeled folder of {path.name} (written by `distill pseudo select`)")
    try:
        settings = read_json(config_path)
    except (OSError, ValueError) as err:
        raise DistillError(f"{config_path}: unreadable selection settings ({err})") from None
    if not isinstance(settings, dict) or settings.get("kind") != SELECTION_KIND or "unlabeled" not in settings:
        raise DistillError(f"{config_path}: not the settings of a pseudo-label selection (written by `distill pseudo select`)")
    table = np.asarray(numbers, dtype=np.float32).reshape(len(names), 2 + len(classes))
    arrays = {
        "labels": np.asarray(labels, dtype=np.int64),
        "confidence": np.ascontiguousarray(table[:, 0]),
        "agreement": np.ascontiguousarray(table[:, 1]),
        "probs": np.ascontiguousarray(table[:, 2:]),
    }
    for value in arrays.values():
        value.flags.writeable = False
    return PseudoRows(
        path=path, names=tuple(names), folder=Path(settings["unlabeled"]), soft_labels=Path(settings.get("soft_labels", "")),
        settings=settings, classes=classes, **arrays,
    )


@dataclass(frozen=True)
class ReviewDecision:
    decision: str  # accept | reject | relabel
    label: str  # the class the clip ends up with (for reject: the label that was rejected)
    timestamp: str  # ISO 8601, UTC

    def to_json(self) -> dict[str, str]:
        return {"decision": self.decision, "label": self.label, "timestamp": self.timestamp}


def now_timestamp() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_review(path: Path, classes: tuple[str, ...] = CLASSES) -> dict[str, ReviewDecision]:
    """Decisions of a review CSV, by clip name (a clip listed twice: the later row wins); ``classes``: the labels allowed."""
    out: dict[str, ReviewDecision] = {}
    for where, (fname, decision, label, timestamp) in _read_rows(Path(path), REVIEW_COLUMNS, "review file"):
        if not check_clip_name(fname):
            raise DistillError(f"{where}: {fname!r} is not a plain clip file name")
        if decision not in DECISIONS:
            raise DistillError(f"{where}: unknown decision {decision!r}; expected one of {', '.join(DECISIONS)}")
        if decision == RELABEL and not label:
            raise DistillError(f"{where}: relabel needs a label; classes are {', '.join(classes)}")
        if label:
            _label(label, where=where, classes=classes)
        out[fname] = ReviewDecision(decision, label, timestamp)
    return out


def write_review(path: Path, decisions: Mapping[str, ReviewDecision]) -> Path:
    """Atomically (re)write a review CSV: one row per clip, sorted by name."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(REVIEW_COLUMNS)
    for fname in sorted(decisions):
        d = decisions[fname]
        writer.writerow([fname, d.decision, d.label, d.timestamp])
    return write_text(path, buf.getvalue())


@dataclass(frozen=True, eq=False)
class PseudoSet:
    """Pseudo-labelled clips with review decisions applied, aligned arrays over ``names``."""

    names: tuple[str, ...]
    labels: np.ndarray  # int64 class indices (CLASSES order)
    probs: np.ndarray  # float32 (N, 12): the ensemble's probabilities, one-hot for relabelled clips
    confidence: np.ndarray  # float32 (N,): the ensemble's top probability (as selected)
    agreement: np.ndarray  # float32 (N,): fraction of teachers agreeing with the ensemble
    folder: Path  # the unlabeled folder holding the clips
    soft_labels: Path  # the soft-label folder they were selected from
    relabelled: np.ndarray  # bool (N,): a person replaced the teachers' label
    review: Path | None = None  # the review file applied, if any
    rejected: int = 0  # clips dropped by review
    classes: tuple[str, ...] = CLASSES  # the word list's classes (what ``labels`` index)

    def __len__(self) -> int:
        return len(self.names)

    def paths(self) -> list[Path]:
        return [self.folder / n for n in self.names]

    def waveforms(self, rows=None) -> np.ndarray:
        """float32 ``(len(rows), 16000)`` of the chosen clips (all by default), read from ``folder``."""
        from distill.data.wav import decode_wav

        rows = range(len(self.names)) if rows is None else np.atleast_1d(np.asarray(rows, dtype=np.int64))
        out = np.zeros((len(rows), CLIP_SAMPLES), np.float32)
        for i, r in enumerate(rows):
            out[i] = decode_wav(self.folder / self.names[int(r)])
        return out


def load_pseudo(path: Path, *, review: Path | None = None) -> PseudoSet:
    """A pseudo-label CSV with its review decisions applied.

    ``review`` defaults to ``<stem>.review.csv`` beside ``path`` when that file
    exists (a ``review`` path given explicitly must exist). ``reject`` drops the
    clip, ``relabel`` replaces its label and makes its probabilities one-hot,
    ``accept`` and undecided clips are kept as selected. Decisions about clips
    that are not in the file (e.g. from an earlier selection) are ignored.
    """
    rows = read_pseudo_csv(Path(path))
    if review is None:
        candidate = default_review_path(Path(path))
        review = candidate if candidate.exists() else None
    elif not Path(review).exists():
        raise DistillError(f"{review}: review file does not exist")
    decisions = read_review(Path(review), rows.classes) if review is not None else {}
    keep: list[int] = []
    labels = rows.labels.copy()
    probs = rows.probs.copy()
    relabelled = np.zeros(len(rows), dtype=bool)
    rejected = 0
    for i, fname in enumerate(rows.names):
        d = decisions.get(fname)
        if d is not None and d.decision == REJECT:
            rejected += 1
            continue
        if d is not None and d.decision == RELABEL:
            labels[i] = rows.classes.index(d.label)
            probs[i] = np.eye(len(rows.classes), dtype=np.float32)[labels[i]]
            relabelled[i] = True
        keep.append(i)
    idx = np.asarray(keep, dtype=np.int64)
    return PseudoSet(
        names=tuple(rows.names[i] for i in keep),
        labels=labels[idx],
        probs=probs[idx],
        confidence=rows.confidence[idx].copy(),
        agreement=rows.agreement[idx].copy(),
        folder=rows.folder,
        soft_labels=rows.soft_labels,
        relabelled=relabelled[idx],
        review=Path(review) if review is not None else None,
        rejected=rejected,
        classes=rows.classes,
    )
