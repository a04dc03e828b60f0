"""write_submission: the resumable, validated Kaggle CSV, unreadable clips with --skip-bad, probabilities, one writer at a time."""

from __future__ import annotations

import os
import re
import threading
import wave

import numpy as np
import pytest

from distill.core.errors import BadAudioError, DistillError
from distill.core.labels import CLASSES
from distill.data.wav import decode_wav
from distill.submission.scoring import read_submission, validate_submission
from distill.submission.writer import write_submission

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")


def test_write_submission_valid_csv(reference, test_dir, predictor, n_clips):
    out = reference.out
    names = sorted(p.name for p in test_dir.glob("clip_*.wav"))
    lines = out.read_text().splitlines()
    assert lines[0] == "fname,label" and len(lines) == n_clips + 1
    rows = read_submission(out)
    assert [r[0] for r in rows] == names
    validate_submission(out, test_dir=test_dir)
    probs = predictor.predict(np.stack([decode_wav(test_dir / n) for n in names]))
    assert [r[1] for r in rows] == [CLASSES[i] for i in probs.argmax(axis=1)]
    saved = np.load(reference.probs)
    assert list(saved["names"]) == names and saved["probs"].dtype == np.float16
    np.testing.assert_allclose(saved["probs"].astype(np.float32), probs, atol=1e-3)
    assert tuple(saved["classes"]) == CLASSES
    assert sum(reference.counts.values()) == n_clips and reference.resumed_rows == 0 and reference.bad == []
    assert not out.with_name(out.name + ".part").exists() and not out.with_name(out.name + ".bad.tsv").exists()
    assert sum(1 for c in reference.counts.values() if c) >= 3  # the toy gives varied labels


def test_interrupted_run_resumes_to_the_same_file(tmp_path, model_dir, test_dir, reference, on_prediction, n_clips):
    out = tmp_path / "sub.csv"
    part = tmp_path / "sub.csv.part"
    calls = {"n": 0}

    def failing():
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt

    on_prediction(failing)
    with pytest.raises(KeyboardInterrupt):
        write_submission(model=model_dir, test_dir=test_dir, out=out, batch_size=4, progress=False, probs=True)
    assert not out.exists() and part.exists()
    on_prediction(None)
    # a half-written row at the end (the process died mid-write) is dropped on resume
    with open(part, "a") as fh:
        fh.write("clip_00")
    result = write_submission(model=model_dir, test_dir=test_dir, out=out, batch_size=4, progress=False, probs=True)
    assert result.resumed_rows == 8 and result.predicted_rows == n_clips - 8
    assert any("resumed after 8" in n for n in result.notes)
    assert out.read_bytes() == reference.out.read_bytes()
    np.testing.assert_array_equal(np.load(result.probs)["probs"], np.load(reference.probs)["probs"])
    assert not part.exists()


def test_partial_file_that_is_not_a_prefix_starts_over(tmp_path, model_dir, test_dir, reference, on_prediction):
    out = tmp_path / "sub.csv"
    calls = {"n": 0}

    def failing():
        calls["n"] += 1
        if calls["n"] > 1:
            raise RuntimeError("killed")

    on_prediction(failing)
    with pytest.raises(RuntimeError):
        write_submission(model=model_dir, test_dir=test_dir, out=out, batch_size=4, progress=False)
    on_prediction(None)
    part = tmp_path / "sub.csv.part"
    lines = part.read_text().splitlines(keepends=True)
    lines[3], lines[4] = lines[4], lines[3]  # rows out of clip order
    part.write_text("".join(lines))
    result = write_submission(model=model_dir, test_dir=test_dir, out=out, batch_size=4, progress=False)
    assert result.resumed_rows == 0 and any("not resumed" in n and "starting over" in n for n in result.notes)
    assert out.read_bytes() == reference.out.read_bytes()


def test_skip_bad_predicts_silence_and_reports(tmp_path, model_dir, test_dir, predictor, capsys, on_prediction):
    folder = tmp_path / "test"
    folder.mkdir()
    for p in sorted(test_dir.glob("clip_*.wav"))[:6]:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "clip_000000002.wav").write_bytes(b"RIFF")  # sorts between good clips
    with wave.open(str(folder / "clip_999999999.wav"), "wb") as w:  # last, and 8 kHz
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000), w.writeframes(b"\0\0" * 8000)
    out = tmp_path / "sub.csv"
    with pytest.raises(BadAudioError, match="clip_000000002.wav"):
        write_submission(model=model_dir, test_dir=folder, out=out, batch_size=3, progress=False)
    # the strict run's partial file (no rows: the bad clip is in its first batch) is resumed with skip_bad
    assert (tmp_path / "sub.csv.part").exists()
    result = write_submission(model=model_dir, test_dir=folder, out=out, batch_size=3, progress=False, skip_bad=True)
    assert not any("not resumed" in n for n in result.notes)
    rows = dict(read_submission(out))
    assert len(rows) == 8
    silence_label = CLASSES[int(predictor.predict(np.zeros((1, 16000), np.float32)).argmax())]
    assert rows["clip_000000002.wav"] == silence_label and rows["clip_999999999.wav"] == silence_label
    report = (tmp_path / "sub.csv.bad.tsv").read_text().splitlines()
    assert report[0] == "fname\treason" and len(report) == 3
    assert report[1].startswith("clip_000000002.wav\t") and "RIFF" in report[1]
    assert report[2].startswith("clip_999999999.wav\t") and "8000 Hz" in report[2]
    assert [b[0] for b in result.bad] == ["clip_000000002.wav", "clip_999999999.wav"]
    assert "2 clip(s) could not be read" in capsys.readouterr().err
    validate_submission(out, test_dir=folder)
    # a partial file holding silence rows of bad clips is not resumed by a strict run: it starts over and stops
    calls = {"n": 0}

    def failing():  # the first batch's rows (its silence row too) are written, then the run stops
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt

    on_prediction(failing)
    with pytest.raises(KeyboardInterrupt):
        write_submission(model=model_dir, test_dir=folder, out=out, batch_size=3, progress=False, skip_bad=True)
    on_prediction(None)
    part = tmp_path / "sub.csv.part"
    assert "\nclip_000000002.wav," in part.read_text()  # its silence row, with the reason
    with pytest.raises(BadAudioError, match="clip_000000002.wav"):
        write_submission(model=model_dir, test_dir=folder, out=out, batch_size=3, progress=False)
    assert "\nclip_000000002.wav," not in part.read_text()  # started over instead of keeping that row


def test_a_second_writer_of_the_same_csv_is_refused_at_once(tmp_path, model_dir, test_dir, reference, on_prediction):
    out = tmp_path / "sub.csv"
    started, release = threading.Event(), threading.Event()
    first: dict = {}

    def held():  # the first writer stops mid-file until released; others predict normally
        if threading.current_thread().name == "first-writer":
            started.set()
            release.wait(30)

    def run_first():
        try:
            first["result"] = write_submission(model=model_dir, test_dir=test_dir, out=out, batch_size=4, progress=False, probs=True)
        except BaseException as err:  # noqa: BLE001 - reported by the assertions below
            first["error"] = err

    on_prediction(held)
    thread = threading.Thread(target=run_first, name="first-writer")
    thread.start()
    try:
        assert started.wait(60)
        part_before = (tmp_path / "sub.csv.part").read_bytes()
        with pytest.raises(DistillError, match=re.escape(f"{out} is being written by pid {os.getpid()} on ")):
            write_submission(model=model_dir, test_dir=test_dir, out=out, batch_size=4, progress=False, probs=True)
        assert (tmp_path / "sub.csv.part").read_bytes() == part_before and not out.exists()  # the refused writer touched nothing
    finally:
        release.set()
        thread.join(60)
    assert "error" not in first, first.get("error")
    assert first["result"].resumed_rows == 0 and out.read_bytes() == reference.out.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub.csv", "sub.csv.probs.npz"]  # the lock went with its holder
    # once the first is done, the next writer of that file goes ahead
    again = write_submission(model=model_dir, test_dir=test_dir, out=out, batch_size=4, progress=False)
    assert again.clips == len(list(test_dir.glob("clip_*.wav"))) and out.read_bytes() == reference.out.read_bytes()
