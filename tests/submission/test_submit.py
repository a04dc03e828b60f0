"""Submission stage: batch prediction with a frozen graph, resumable CSV writer, validation, scoring, label_wav."""

from __future__ import annotations

import re
import struct
import wave

import numpy as np
import pytest
from typer.testing import CliRunner  # noqa: E402

from distill.cli import app  # noqa: E402
from distill.core.errors import BadAudioError, DistillError  # noqa: E402
from distill.core.labels import CLASSES, NUM_CLASSES  # noqa: E402
from distill.data.wav import decode_wav  # noqa: E402
from distill.export.freeze import freeze_waveform_model, run_frozen_tf2, wav_bytes  # noqa: E402
from distill.layers.frontend import FrontendConfig, frontend_tf  # noqa: E402
from distill.submission import submit as submit_mod  # noqa: E402
from distill.submission.submit import (  # noqa: E402
    GraphPredictor,
    label_wav,
    read_submission,
    score_submission,
    validate_submission,
    write_submission,
)

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")



N_CLIPS = 20
MFCC = FrontendConfig(kind="mfcc", window_ms=40.0, stride_ms=20.0, num_mfcc=10)


def _toy_graph():
    """A tiny student with the real front-end ops (AudioSpectrogram, Mfcc), a conv, a depthwise conv, a dense layer."""
    keras.utils.set_random_seed(3)
    inp = keras.Input((16000,))
    x = keras.layers.Lambda(lambda w: frontend_tf(w, MFCC), output_shape=MFCC.output_shape)(inp)
    x = keras.layers.Reshape((*MFCC.output_shape, 1))(x)
    x = keras.layers.Conv2D(4, (5, 3), strides=2, activation="relu")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    pooled = keras.layers.GlobalAveragePooling2D()(x)
    bn = keras.layers.BatchNormalization()
    out = keras.layers.Dense(NUM_CLASSES, kernel_initializer=keras.initializers.RandomNormal(stddev=2.0))(bn(pooled))
    model = keras.Model(inp, out)
    # "train" the batch norm on the test clips so that their labels differ (a random net predicts one class)
    h = keras.Model(inp, pooled)(np.stack([_clip(i) for i in range(N_CLIPS)]).astype(np.float32)).numpy()
    bn.moving_mean.assign(h.mean(axis=0))
    bn.moving_variance.assign(h.var(axis=0) + 1e-6)
    return freeze_waveform_model(lambda w: model(w, training=False), name_prefix="student")


@pytest.fixture(scope="module")
def graph():
    return _toy_graph()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, graph):
    folder = tmp_path_factory.mktemp("model")
    (folder / "model.pb").write_bytes(graph.SerializeToString())
    (folder / "labels.txt").write_text("".join(c + "\n" for c in CLASSES))
    return folder


def _clip(i: int) -> np.ndarray:
    rng = np.random.default_rng(i)
    t = np.arange(16000) / 16000.0
    f0 = 150.0 + 90.0 * (i % 17)
    return 0.4 * np.sin(2 * np.pi * f0 * t) * np.exp(-((t - 0.4 - 0.02 * (i % 5)) ** 2) / 0.02) + 0.02 * rng.standard_normal(16000)


@pytest.fixture(scope="module")
def test_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kaggle_test")
    for i in range(N_CLIPS):
        (folder / f"clip_{(i * 7919) % 10**9:09d}.wav").write_bytes(wav_bytes(_clip(i)))
    return folder


@pytest.fixture(scope="module")
def predictor(model_dir):
    with GraphPredictor(model_dir, chunk=3, workers=2) as p:
        yield p


@pytest.fixture(scope="module")
def reference(model_dir, test_dir, tmp_path_factory):
    """An uninterrupted run with probabilities."""
    out = tmp_path_factory.mktemp("reference") / "submission.csv"
    result = write_submission(model=model_dir, test_dir=test_dir, out=out, batch_size=4, progress=False, probs=True)
    return result


# --------------------------------------------------------------------------- GraphPredictor


@pytest.mark.parametrize("method", ["auto", "vectorized", "map_fn", "loop"])
def test_batch_equals_single_clip_runs(graph, method):
    clips = np.stack([_clip(i) for i in range(7)]).astype(np.float32)
    clips[3] = 0.0  # digital silence too
    with GraphPredictor(graph, method=method, chunk=3, workers=2) as p:
        assert not p.notes  # no fallback: every method passed its probe
        if method == "auto":
            assert set(p.timings) == {"vectorized", "map_fn"} and p.method == max(p.timings, key=p.timings.get)
        else:
            assert p.method == method and p.timings == {}
        got = p.predict(clips)
    single = np.stack([run_frozen_tf2(graph, c).reshape(NUM_CLASSES) for c in clips])
    assert got.shape == (7, NUM_CLASSES) and got.dtype == np.float32
    np.testing.assert_allclose(got, single, rtol=0, atol=1e-5)
    assert np.ptp(single, axis=1).min() > 1e-3  # the toy is not trivially uniform


def test_fast_path_failures_fall_back_to_map_fn(graph, monkeypatch):
    real_build, real_run = GraphPredictor._build, GraphPredictor._run_with

    def broken_build(self, method):
        if method == "vectorized":
            raise RuntimeError("no converter")
        return real_build(self, method)

    monkeypatch.setattr(GraphPredictor, "_build", broken_build)
    for method in ("auto", "vectorized"):
        p = GraphPredictor(graph, method=method)
        assert p.method == "map_fn" and "cannot run this graph (RuntimeError: no converter)" in p.notes[0]
    monkeypatch.setattr(GraphPredictor, "_build", real_build)

    def off_by_a_bit(self, method, waveforms):
        out = real_run(self, method, waveforms)
        return out + 1e-3 if method == "vectorized" else out

    monkeypatch.setattr(GraphPredictor, "_run_with", off_by_a_bit)
    p = GraphPredictor(graph, method="vectorized")
    assert p.method == "map_fn" and "rejected on the probe batch (max difference 1.00e-03" in p.notes[0]


def test_pfor_converters_are_scoped(graph):
    from tensorflow.python.ops.parallel_for import pfor

    before = dict(pfor._pfor_converter_registry)
    GraphPredictor(graph, method="vectorized")
    assert "AudioSpectrogram" not in pfor._pfor_converter_registry
    assert pfor._pfor_converter_registry == before


def test_model_folder_and_labels_file(tmp_path, graph, predictor):
    assert predictor.path.name == "model.pb"
    folder = tmp_path / "m"
    folder.mkdir()
    with pytest.raises(DistillError, match="no model.pb"):
        GraphPredictor(folder)
    (folder / "model.pb").write_bytes(graph.SerializeToString())
    (folder / "labels.txt").write_text("\n".join(["_silence_", "_unknown_", *CLASSES[2:]]) + "\n")  # tutorial spelling
    GraphPredictor(folder, method="loop", verify=False)
    swapped = list(CLASSES)
    swapped[2], swapped[3] = swapped[3], swapped[2]
    (folder / "labels.txt").write_text("\n".join(swapped) + "\n")
    with pytest.raises(DistillError, match=r"labels.txt: labels do not match.*line 3 is 'no', expected 'yes'"):
        GraphPredictor(folder)
    (tmp_path / "junk.pb").write_bytes(b"not a graph")
    with pytest.raises(DistillError, match="not a frozen GraphDef"):
        GraphPredictor(tmp_path / "junk.pb")


# --------------------------------------------------------------------------- write_submission


def test_write_submission_valid_csv(reference, test_dir, predictor):
    out = reference.out
    names = sorted(p.name for p in test_dir.glob("clip_*.wav"))
    lines = out.read_text().splitlines()
    assert lines[0] == "fname,label" and len(lines) == N_CLIPS + 1
    rows = read_submission(out)
    assert [r[0] for r in rows] == names
    validate_submission(out, test_dir=test_dir)
    probs = predictor.predict(np.stack([decode_wav(test_dir / n) for n in names]))
    assert [r[1] for r in rows] == [CLASSES[i] for i in probs.argmax(axis=1)]
    saved = np.load(reference.probs)
    assert list(saved["names"]) == names and saved["probs"].dtype == np.float16
    np.testing.assert_allclose(saved["probs"].astype(np.float32), probs, atol=1e-3)
    assert tuple(saved["classes"]) == CLASSES
    assert sum(reference.counts.values()) == N_CLIPS and reference.resumed_rows == 0 and reference.bad == []
    assert not out.with_name(out.name + ".part").exists() and not out.with_name(out.name + ".bad.tsv").exists()
    assert sum(1 for c in reference.counts.values() if c) >= 3  # the toy gives varied labels


def test_interrupted_run_resumes_to_the_same_file(tmp_path, model_dir, test_dir, reference, monkeypatch):
    out = tmp_path / "sub.csv"
    part = tmp_path / "sub.csv.part"
    real_predict = GraphPredictor.predict
    calls = {"n": 0}

    def failing(self, waveforms):
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt
        return real_predict(self, waveforms)

    monkeypatch.setattr(GraphPredictor, "predict", failing)
    with pytest.raises(KeyboardInterrupt):
        write_submission(model=model_dir, test_dir=test_dir, out=out, batch_size=4, progress=False, probs=True)
    assert not out.exists() and part.exists()
    monkeypatch.setattr(GraphPredictor, "predict", real_predict)
    # a half-written row at the end (the process died mid-write) is dropped on resume
    with open(part, "a") as fh:
        fh.write("clip_00")
    result = write_submission(model=model_dir, test_dir=test_dir, out=out, batch_size=4, progress=False, probs=True)
    assert result.resumed_rows == 8 and result.predicted_rows == N_CLIPS - 8
    assert any("resumed after 8" in n for n in result.notes)
    assert out.read_bytes() == reference.out.read_bytes()
    np.testing.assert_array_equal(np.load(result.probs)["probs"], np.load(reference.probs)["probs"])
    assert not part.exists()


def test_partial_file_that_is_not_a_prefix_starts_over(tmp_path, model_dir, test_dir, reference, monkeypatch):
    out = tmp_path / "sub.csv"
    real_predict = GraphPredictor.predict
    calls = {"n": 0}

    def failing(self, waveforms):
        calls["n"] += 1
        if calls["n"] > 1:
            raise RuntimeError("killed")
        return real_predict(self, waveforms)

    monkeypatch.setattr(GraphPredictor, "predict", failing)
    with pytest.raises(RuntimeError):
        write_submission(model=model_dir, test_dir=test_dir, out=out, batch_size=4, progress=False)
    monkeypatch.setattr(GraphPredictor, "predict", real_predict)
    part = tmp_path / "sub.csv.part"
    lines = part.read_text().splitlines(keepends=True)
    lines[3], lines[4] = lines[4], lines[3]  # rows out of clip order
    part.write_text("".join(lines))
    result = write_submission(model=model_dir, test_dir=test_dir, out=out, batch_size=4, progress=False)
    assert result.resumed_rows == 0 and any("not resumed" in n and "starting over" in n for n in result.notes)
    assert out.read_bytes() == reference.out.read_bytes()


def test_skip_bad_predicts_silence_and_reports(tmp_path, model_dir, test_dir, predictor, capsys, monkeypatch):
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
    real_predict = GraphPredictor.predict
    calls = {"n": 0}

    def failing(self, waveforms):
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt
        return real_predict(self, waveforms)

    monkeypatch.setattr(GraphPredictor, "predict", failing)
    with pytest.raises(KeyboardInterrupt):
        write_submission(model=model_dir, test_dir=folder, out=out, batch_size=3, progress=False, skip_bad=True)
    monkeypatch.setattr(GraphPredictor, "predict", real_predict)
    part = tmp_path / "sub.csv.part"
    assert "\nclip_000000002.wav," in part.read_text()  # its silence row, with the reason
    with pytest.raises(BadAudioError, match="clip_000000002.wav"):
        write_submission(model=model_dir, test_dir=folder, out=out, batch_size=3, progress=False)
    assert "\nclip_000000002.wav," not in part.read_text()  # started over instead of keeping that row


# --------------------------------------------------------------------------- validate / score


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


# --------------------------------------------------------------------------- label_wav and the CLI


def test_label_wav_top_k_matches_graph(model_dir, test_dir, predictor, tmp_path):
    wavs = sorted(test_dir.glob("clip_*.wav"))[:3]
    results = label_wav(model=model_dir, wavs=wavs, top_k=3)
    expected = predictor.predict(np.stack([decode_wav(w) for w in wavs]))
    for result, probs in zip(results, expected):
        np.testing.assert_allclose(result.probs, probs, atol=1e-5)
        lines = result.lines()
        assert len(lines) == 3 and all(re.fullmatch(r"[a-z]+ \(score = [01]\.\d{5}\)", line) for line in lines)
        order = np.argsort(-probs)[:3]
        assert [label for label, _ in result.top] == [CLASSES[i] for i in order]
        assert lines[0] == f"{CLASSES[order[0]]} (score = {probs[order[0]]:.5f})"
    bad = tmp_path / "bad.wav"
    with wave.open(str(bad), "wb") as w:
        w.setnchannels(2), w.setsampwidth(2), w.setframerate(16000), w.writeframes(b"\0\0" * 3200)
    with pytest.raises(BadAudioError, match="stereo"):
        label_wav(model=model_dir, wavs=[bad])
    # read_wav accepts WAVE_FORMAT_EXTENSIBLE, TensorFlow's DecodeWav does not: its reason is reported
    pcm = np.zeros(16000, "<i2").tobytes()
    fmt = struct.pack("<HHIIHHHHIH14s", 0xFFFE, 1, 16000, 32000, 2, 16, 22, 16, 4, 1, b"\0" * 14)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(pcm)) + pcm
    (tmp_path / "ext.wav").write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    with pytest.raises(BadAudioError, match=r"ext.wav: the graph's DecodeWav rejected it: .*format chunk size"):
        label_wav(model=model_dir, wavs=[tmp_path / "ext.wav"])
    with pytest.raises(DistillError, match="top_k"):
        label_wav(model=model_dir, wavs=wavs, top_k=13)


def test_cli_submit_and_label_wav(tmp_path, model_dir, test_dir, reference, monkeypatch):
    monkeypatch.setattr(submit_mod, "configure_threads", lambda intra, inter: True)  # tests keep 1 thread
    key = tmp_path / "key.csv"
    rows = read_submission(reference.out)
    key.write_text("fname,label\n" + "".join(f"{n},{'yes' if i % 2 else label}\n" for i, (n, label) in enumerate(rows)))
    out = tmp_path / "cli.csv"
    runner = CliRunner()
    result = runner.invoke(app, ["submit", "--model", str(model_dir), "--test-dir", str(test_dir), "--out", str(out),
                                 "--batch-size", "8", "--quiet", "--threads", "1", "--answer-key", str(key)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == reference.out.read_bytes()
    assert f"wrote {out}: {N_CLIPS} rows" in result.output and "score against" in result.output
    agree = sum(1 for i, (_, label) in enumerate(rows) if not i % 2 or label == "yes")
    assert f"accuracy {100 * agree / N_CLIPS:.2f}%" in result.output
    wav = sorted(test_dir.glob("clip_*.wav"))[0]
    result = runner.invoke(app, ["label-wav", str(wav), "--model", str(model_dir / "model.pb"), "--top-k", "2"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 2 and all(re.fullmatch(r"[a-z]+ \(score = \d\.\d{5}\)", line) for line in lines)
