"""Submission CSVs: read, validate (header, rows, labels, one row per clip) and score against an answer key.

Kaggle's format is ``fname,label``: the header line, then one row per test clip,
each label one of the 12 classes. Every problem is reported with the file, the
line and what is wrong.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from distill.core.errors import DistillError
from distill.core.labels import CLASSES

__all__ = ["HEADER", "LABEL_ALIASES", "parse_submission", "read_answer_key", "read_submission", "score_submission", "validate_submission"]

HEADER = "fname,label"
# the TensorFlow tutorial's conv_labels.txt spells the first two classes this way
LABEL_ALIASES = {"_silence_": "silence", "_unknown_": "unknown"}
_EXAMPLES = 5


def read_submission(path: str | os.PathLike) -> list[tuple[str, str]]:
    """The ``(fname, label)`` rows of a submission CSV, checked by :func:`validate_submission` (without a clip list)."""
    return parse_submission(Path(path), _read_text(Path(path), "submission"))


def _read_text(path: Path, what: str) -> str:
    if path.is_dir():
        raise DistillError(f"{path}: is a folder, expected a {what} CSV file")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DistillError(f"{path}: cannot read the {what} file ({err.strerror or err})") from err
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DistillError(f"{path}: line {line}: not UTF-8 text (byte 0x{data[err.start]:02x})") from err


def parse_submission(path: Path, text: str, classes: Sequence[str] = CLASSES) -> list[tuple[str, str]]:
    """The ``(fname, label)`` rows of submission ``text`` (read from ``path``, named in the errors), checked row by row;
    ``classes``: the allowed labels (the Kaggle twelve; a model of another word list, its own)."""
    allowed = {c: i for i, c in enumerate(classes)}
    if not text:
        raise DistillError(f"{path}: empty file; a submission starts with the header line {HEADER!r}")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the final newline
    header = lines[0].rstrip("\r")
    if header != HEADER:
        if header.startswith("\ufeff"):
            problem = "starts with a UTF-8 byte-order mark"
        else:
            problem = f"is {header[:80]!r}"
        raise DistillError(f"{path}: line 1: the header {problem}; it must be exactly {HEADER!r}")
    rows: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(lines[1:], start=2):
        line = raw.rstrip("\r")
        if not line.strip():
            raise DistillError(f"{path}: line {number}: empty line (every line after the header is fname,label)")
        fields = line.split(",")
        if len(fields) != 2:
            raise DistillError(f"{path}: line {number}: {len(fields)} comma-separated fields in {line[:80]!r}, expected 2 (fname,label)")
        fname, label = fields
        if not fname or fname != fname.strip():
            raise DistillError(f"{path}: line {number}: fname {fname!r} is empty or has surrounding spaces")
        if label not in allowed:
            near = LABEL_ALIASES.get(label.strip(), label.strip().lower())
            hint = f" (did you mean {near!r}?)" if near in allowed else ""
            raise DistillError(f"{path}: line {number}: label {label!r} of {fname} is not one of the {len(classes)} classes "
                               f"({', '.join(classes)}){hint}")
        if fname in seen:
            raise DistillError(f"{path}: line {number}: duplicate fname {fname} (first on line {seen[fname]})")
        seen[fname] = number
        rows.append((fname, label))
    return rows


def _examples(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_EXAMPLES])
    return shown + (f", ... ({len(items) - _EXAMPLES} more)" if len(items) > _EXAMPLES else "")


def _check_coverage(path: Path, rows: Sequence[tuple[str, str]], names: Sequence[str], source: str) -> None:
    have = {fname for fname, _ in rows}
    want = set(names)
    missing = sorted(want - have)
    extra = sorted(have - want)
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} clip(s) of {source} have no row (e.g. {_examples(missing)})")
        if extra:
            parts.append(f"{len(extra)} row(s) name no clip of {source} (e.g. {_examples(extra)})")
        raise DistillError(f"{path}: {len(rows)} rows for {len(want)} clips: " + "; ".join(parts)
                           + "; Kaggle needs exactly one row per test clip")


def validate_submission(path: str | os.PathLike, *, test_dir: str | os.PathLike | None = None,
                        names: Sequence[str] | None = None, classes: Sequence[str] = CLASSES) -> None:
    """Raise DistillError (naming the file, line and problem) unless ``path`` is a valid submission.

    Checks: header exactly ``fname,label``; two fields per row; every label one
    of the 12 classes; no duplicate fname; no blank lines. With ``test_dir``
    (its ``clip_*.wav`` names) or ``names``: exactly one row per clip (the
    missing and extra counts, with examples).
    """
    path = Path(path)
    rows = parse_submission(path, _read_text(path, "submission"), classes)
    if names is None and test_dir is not None:
        from distill.data.unlabeled import list_unlabeled

        names, source = list_unlabeled(Path(test_dir)), str(test_dir)
    else:
        source = "the clip list"
    if names is not None:
        _check_coverage(path, rows, names, source)


def read_answer_key(path: str | os.PathLike, *, names: Sequence[str] | None = None, source: str = "the clip list",
                    classes: Sequence[str] = CLASSES) -> list[tuple[str, str]]:
    """The ``(fname, label)`` rows of an answer key, checked as a submission is; with ``names``, exactly one
    row per clip of ``source``. A missing or malformed key is a DistillError naming it."""
    path = Path(path)
    if not path.exists():
        raise DistillError(f"{path}: no such answer key (--answer-key); give the fname,label CSV of the clips' true labels")
    rows = parse_submission(path, _read_text(path, "answer key"), classes)
    if names is not None:
        _check_coverage(path, rows, names, source)
    return rows


def score_submission(path: str | os.PathLike, answer_key: str | os.PathLike, *, classes: Sequence[str] = CLASSES) -> dict[str, Any]:
    """Accuracy, per-class recall, confusion and count of a submission against a ``fname,label`` answer key.

    Both files must be valid submissions (the key is checked with the same
    rules) over the same clips.
    """
    from distill.core.metrics import classification_report

    path, answer_key = Path(path), Path(answer_key)
    key = dict(read_answer_key(answer_key, classes=classes))
    rows = parse_submission(path, _read_text(path, "submission"), classes)
    _check_coverage(path, rows, list(key), f"the answer key {answer_key}")
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[key[fname]] for fname, _ in rows], dtype=np.int64)
    predicted = np.array([index[label] for _, label in rows], dtype=np.int64)
    report = classification_report(labels, predicted, classes=tuple(classes))
    return {**report.to_dict(), "submission": str(path), "answer_key": str(answer_key)}

