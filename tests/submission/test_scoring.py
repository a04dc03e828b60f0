"""Submission CSVs: validation (every problem named with its line) and scoring against an answer key."""

from __future__ import annotations

import pytest

from distill.core.errors import DistillError
from distill.submission.scoring import score_submission, validate_submission


def _write(path, text):
    path.write_text(text)
    return path


def test_validate_submission_rejects(tmp_path):
    names = ["clip_a.wav", "clip_b.wav", "clip_c.wav"]
    good = _write(tmp_path / "good.csv", "fname,label\nclip_a.wav,yes\nclip_b.wav,silence\nclip_c.wav,unknown\n")
    validate_submission(good, names=names)
    short = _write(tmp_path / "short.csv", "fname,label\nclip_a.wav,yes\nclip_b.wav,no\n")
    validate_submission(short)  # fine without a clip list
    with pytest.raises(DistillError, match=r"short.csv: 2 rows for 3 clips: 1 clip\(s\) .* no row \(e.g. clip_c.wav\)"):
        validate_submission(short, names=names)
    extra = _write(tmp_path / "extra.csv", "fname,label\nclip_a.wav,yes\nclip_b.wav,no\nclip_c.wav,no\nclip_z.wav,no\n")
    with pytest.raises(DistillError, match=r"1 row\(s\) name no clip .*clip_z.wav"):
        validate_submission(extra, names=names)
    bad_label = _write(tmp_path / "label.csv", "fname,label\nclip_a.wav,yes\nclip_b.wav,bed\n")
    with pytest.raises(DistillError, match=r"label.csv: line 3: label 'bed' of clip_b.wav is not one of the 12 classes"):
        validate_submission(bad_label)
    alias = _write(tmp_path / "alias.csv", "fname,label\nclip_a.wav,_silence_\n")
    with pytest.raises(DistillError, match=r"line 2: .*did you mean 'silence'"):
        validate_submission(alias)
    dup = _write(tmp_path / "dup.csv", "fname,label\nclip_a.wav,yes\nclip_b.wav,no\nclip_a.wav,up\n")
    with pytest.raises(DistillError, match=r"dup.csv: line 4: duplicate fname clip_a.wav \(first on line 2\)"):
        validate_submission(dup)
    header = _write(tmp_path / "header.csv", "file,label\nclip_a.wav,yes\n")
    with pytest.raises(DistillError, match=r"header.csv: line 1: the header is 'file,label'; it must be exactly 'fname,label'"):
        validate_submission(header)
    bom = _write(tmp_path / "bom.csv", "\ufefffname,label\nclip_a.wav,yes\n")
    with pytest.raises(DistillError, match="byte-order mark"):
        validate_submission(bom)
    fields = _write(tmp_path / "fields.csv", "fname,label\nclip_a.wav,yes,0.9\n")
    with pytest.raises(DistillError, match=r"line 2: 3 comma-separated fields"):
        validate_submission(fields)
    blank = _write(tmp_path / "blank.csv", "fname,label\nclip_a.wav,yes\n\nclip_b.wav,no\n")
    with pytest.raises(DistillError, match=r"line 3: empty line"):
        validate_submission(blank)
    with pytest.raises(DistillError, match="empty file"):
        validate_submission(_write(tmp_path / "empty.csv", ""))
    with pytest.raises(DistillError, match="cannot read"):
        validate_submission(tmp_path / "missing.csv")


def test_score_submission(tmp_path):
    key = _write(tmp_path / "key.csv", "fname,label\nclip_a.wav,yes\nclip_b.wav,no\nclip_c.wav,silence\nclip_d.wav,no\n")
    sub = _write(tmp_path / "sub.csv", "fname,label\nclip_d.wav,no\nclip_a.wav,yes\nclip_b.wav,up\nclip_c.wav,silence\n")
    score = score_submission(sub, key)
    assert score["count"] == 4 and score["accuracy"] == pytest.approx(0.75)
    assert score["per_class_recall"]["no"] == pytest.approx(0.5) and score["per_class_recall"]["yes"] == 1.0
    assert score["per_class_recall"]["go"] is None
    short = _write(tmp_path / "short.csv", "fname,label\nclip_a.wav,yes\n")
    with pytest.raises(DistillError, match="3 clip"):
        score_submission(short, key)
