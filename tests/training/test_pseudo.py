"""Pseudo-label selection (thresholds, agreement, cap, view 0 only), the CSV format, review decisions, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pseudo_fixtures import CLIPS, TEACHERS, expected_probs, make_pseudo, make_soft_labels, read_csv
from typer.testing import CliRunner

from distill.core.errors import DistillError
from distill.core.labels import CLASS_INDEX, CLASSES
from distill.training.pseudo import PSEUDO_COLUMNS, load_pseudo, read_review, select_pseudo_labels


@pytest.fixture()
def soft(tmp_path):
    return make_soft_labels(tmp_path)[0]


def test_default_selection_and_csv_format(soft, tmp_path):
    out = tmp_path / "sel" / "pseudo.csv"
    result = select_pseudo_labels(soft_labels=soft, out=out)
    assert result.path == out and result.candidates == 8 and result.selected == 6
    assert result.counts == {**{c: 0 for c in CLASSES}, "yes": 2, "unknown": 2, "silence": 1, "go": 1}
    lines = out.read_text().splitlines()
    assert lines[0] == "fname,label,confidence,agreement," + ",".join(f"p_{c}" for c in CLASSES)
    assert tuple(lines[0].split(",")) == PSEUDO_COLUMNS
    rows = read_csv(out)
    assert [r["fname"] for r in rows] == ["clip_000.wav", "clip_003.wav", "clip_004.wav", "clip_005.wav", "clip_006.wav", "clip_007.wav"]
    assert [r["label"] for r in rows] == ["yes", "unknown", "unknown", "yes", "silence", "go"]
    probs = expected_probs()
    for r in rows:
        m = list(CLIPS).index(r["fname"])
        p = np.array([float(r[f"p_{c}"]) for c in CLASSES])
        np.testing.assert_allclose(p, probs[m], atol=2e-4)  # float16 logits, 6 decimals
        assert float(r["confidence"]) == pytest.approx(probs[m].max(), abs=2e-4)
        assert float(r["agreement"]) == 1.0
    settings = json.loads((tmp_path / "sel" / "pseudo.json").read_text())
    assert settings["kind"] == "PseudoSelection" and settings["selected"] == 6 and settings["candidates"] == 8
    assert settings["unlabeled"] == str(tmp_path / "unlabeled") and settings["soft_labels"] == str(soft.resolve())
    assert settings["class_thresholds"]["go"] == 0.6 and settings["counts"]["yes"] == 2 and settings["teachers"] == list(TEACHERS)
    assert result.config_path == tmp_path / "sel" / "pseudo.json"
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".part")]


def _selected(soft, tmp_path, **kwargs) -> list[str]:
    out = tmp_path / "p.csv"
    select_pseudo_labels(soft_labels=soft, out=out, **kwargs)
    return [r["fname"][5:8] for r in read_csv(out)]


def test_thresholds_agreement_cap_and_temperature(soft, tmp_path):
    assert _selected(soft, tmp_path, min_agreement=0.6) == ["000", "002", "003", "004", "005", "006", "007"]
    rows = {r["fname"]: r for r in read_csv(tmp_path / "p.csv")}
    assert rows["clip_002.wav"]["label"] == "yes" and float(rows["clip_002.wav"]["agreement"]) == pytest.approx(2 / 3, abs=1e-6)
    assert _selected(soft, tmp_path, min_agreement=0.7) == ["000", "003", "004", "005", "006", "007"]
    assert _selected(soft, tmp_path, threshold=0.9) == ["000", "003", "004", "005", "006"]
    assert _selected(soft, tmp_path, class_thresholds={"unknown": 0.98, "go": 0.5}) == ["000", "003", "005", "006", "007"]
    assert _selected(soft, tmp_path, threshold=0.3) == ["000", "001", "003", "004", "005", "006", "007"]
    assert _selected(soft, tmp_path, max_per_class=1) == ["000", "003", "006", "007"]  # the most confident yes and unknown
    assert _selected(soft, tmp_path, max_per_class=0) == []
    assert read_csv(tmp_path / "p.csv") == [] and (tmp_path / "p.csv").read_text().count("\n") == 1
    # T=2 softens clip_005 (L=5 -> 0.53) below 0.6 and clip_004 (L=6 -> 0.65) stays
    assert _selected(soft, tmp_path, temperature=2.0) == ["000", "003", "004", "006"]


def test_selection_errors(soft, tmp_path):
    with pytest.raises(DistillError, match="unknown classes"):
        select_pseudo_labels(soft_labels=soft, out=tmp_path / "p.csv", class_thresholds={"cat": 0.5})
    with pytest.raises(DistillError, match="--threshold must be a probability"):
        select_pseudo_labels(soft_labels=soft, out=tmp_path / "p.csv", threshold=1.5)
    with pytest.raises(DistillError, match="--class-threshold yes=-0.1"):
        select_pseudo_labels(soft_labels=soft, out=tmp_path / "p.csv", class_thresholds={"yes": -0.1})
    with pytest.raises(DistillError, match="--max-per-class"):
        select_pseudo_labels(soft_labels=soft, out=tmp_path / "p.csv", max_per_class=-1)
    with pytest.raises(DistillError, match="min-agreement"):
        select_pseudo_labels(soft_labels=soft, out=tmp_path / "p.csv", min_agreement=2)
    with pytest.raises(DistillError, match=r"\.csv"):
        select_pseudo_labels(soft_labels=soft, out=tmp_path / "p.json")
    with pytest.raises(DistillError, match="not a soft-label folder"):
        select_pseudo_labels(soft_labels=tmp_path / "nowhere", out=tmp_path / "p.csv")
    (soft / "unlabeled" / "names.txt").unlink()
    with pytest.raises(DistillError, match="--unlabeled"):
        select_pseudo_labels(soft_labels=soft, out=tmp_path / "p.csv")
    assert not (tmp_path / "p.csv").exists()


def test_load_pseudo_applies_review_decisions(tmp_path):
    pseudo = make_pseudo(tmp_path)
    plain = load_pseudo(pseudo)
    assert len(plain) == 8 and plain.review is None and not plain.relabelled.any()
    assert plain.folder == tmp_path / "unlabeled" and plain.soft_labels == (tmp_path / "soft").resolve()
    assert plain.labels.dtype == np.int64 and plain.probs.dtype == np.float32 and plain.probs.shape == (8, 12)
    assert plain.labels.tolist() == [CLASS_INDEX[n] for n in ("yes", "no", "yes", "unknown", "unknown", "yes", "silence", "go")]
    assert plain.waveforms([0, 2]).shape == (2, 16000)

    (tmp_path / "pseudo.review.csv").write_text(
        "fname,decision,label,timestamp\n"
        "clip_000.wav,accept,yes,2024-01-01T00:00:00+00:00\n"
        "clip_001.wav,reject,no,2024-01-01T00:00:01+00:00\n"
        "clip_002.wav,relabel,left,2024-01-01T00:00:02+00:00\n"
        "clip_005.wav,relabel,off,2024-01-01T00:00:03+00:00\n"
        "clip_005.wav,relabel,no,2024-01-01T00:00:04+00:00\n"  # the later row wins
        "clip_999.wav,reject,,2024-01-01T00:00:05+00:00\n"  # not in the selection: ignored
    )
    ps = load_pseudo(pseudo)
    assert ps.review == tmp_path / "pseudo.review.csv" and ps.rejected == 1
    assert ps.names == ("clip_000.wav", "clip_002.wav", "clip_003.wav", "clip_004.wav", "clip_005.wav", "clip_006.wav", "clip_007.wav")
    assert [CLASSES[i] for i in ps.labels] == ["yes", "left", "unknown", "unknown", "no", "silence", "go"]
    assert ps.relabelled.tolist() == [False, True, False, False, True, False, False]
    np.testing.assert_array_equal(ps.probs[1], np.eye(12, dtype=np.float32)[CLASS_INDEX["left"]])
    np.testing.assert_array_equal(ps.probs[0], plain.probs[0])  # accepted: the teachers' probabilities
    assert ps.confidence[1] == plain.confidence[2] and ps.agreement[1] == plain.agreement[2]
    # an explicit review file overrides the default one
    other = tmp_path / "other.csv"
    other.write_text("fname,decision,label,timestamp\nclip_007.wav,reject,go,x\n")
    assert "clip_007.wav" not in load_pseudo(pseudo, review=other).names
    assert len(load_pseudo(pseudo, review=other)) == 7


def test_load_pseudo_errors_name_file_and_line(tmp_path):
    pseudo = make_pseudo(tmp_path)
    with pytest.raises(DistillError, match="does not exist"):
        load_pseudo(tmp_path / "missing.csv")
    with pytest.raises(DistillError, match="review file does not exist"):
        load_pseudo(pseudo, review=tmp_path / "nope.csv")
    good = pseudo.read_text().splitlines()

    bad = tmp_path / "bad.csv"
    (tmp_path / "bad.json").write_text((tmp_path / "pseudo.json").read_text())
    bad.write_text("fname,label,confidence\n")
    with pytest.raises(DistillError, match=r"bad\.csv:1: bad header"):
        load_pseudo(bad)
    bad.write_text("\n".join([good[0], good[1], good[2].replace(",no,", ",nope,", 1)]) + "\n")
    with pytest.raises(DistillError, match=r"bad\.csv:3: unknown label 'nope'"):
        load_pseudo(bad)
    bad.write_text("\n".join([good[0], good[1], good[1]]) + "\n")
    with pytest.raises(DistillError, match=r"bad\.csv:3: clip_000\.wav is listed twice"):
        load_pseudo(bad)
    bad.write_text("\n".join([good[0], "../etc/passwd" + good[1][len("clip_000.wav"):]]) + "\n")
    with pytest.raises(DistillError, match=r"bad\.csv:2: .*plain clip file name"):
        load_pseudo(bad)
    bad.write_text("\n".join([good[0], good[1].replace(",yes,", ",yes,abc,", 1)]) + "\n")
    with pytest.raises(DistillError, match=r"bad\.csv:2: 17 fields"):
        load_pseudo(bad)
    (tmp_path / "bad.json").unlink()
    bad.write_text("\n".join(good[:2]) + "\n")
    with pytest.raises(DistillError, match=r"bad\.json: missing"):
        load_pseudo(bad)

    review = tmp_path / "pseudo.review.csv"
    review.write_text("fname,decision,label,timestamp\nclip_000.wav,maybe,yes,x\n")
    with pytest.raises(DistillError, match=r"pseudo\.review\.csv:2: unknown decision 'maybe'"):
        load_pseudo(pseudo)
    review.write_text("fname,decision,label,timestamp\nclip_000.wav,accept,yes,x\nclip_001.wav,relabel,cat,x\n")
    with pytest.raises(DistillError, match=r"pseudo\.review\.csv:3: unknown label 'cat'"):
        load_pseudo(pseudo)
    review.write_text("fname,decision,label,timestamp\nclip_001.wav,relabel,,x\n")
    with pytest.raises(DistillError, match=r"pseudo\.review\.csv:2: relabel needs a label"):
        load_pseudo(pseudo)
    review.write_text("fname,decision\n")
    with pytest.raises(DistillError, match=r"pseudo\.review\.csv:1: bad header"):
        read_review(review)


def test_cli_select(soft, tmp_path):
    from distill.cli import app

    runner = CliRunner()
    out = tmp_path / "cli.csv"
    result = runner.invoke(app, ["pseudo", "select", str(soft), "--out", str(out), "--class-threshold", "unknown=0.98", "--max-per-class", "5"])
    assert result.exit_code == 0, result.output
    assert "selected 5 of 8" in result.output and out.exists() and (tmp_path / "cli.json").exists()
    result = runner.invoke(app, ["pseudo", "select", str(soft), "--out", str(out), "--class-threshold", "unknown"])
    assert isinstance(result.exception, DistillError) and "CLASS=PROBABILITY" in str(result.exception)
