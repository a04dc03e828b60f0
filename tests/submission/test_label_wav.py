"""label_wav: the TensorFlow tutorial's label_wav.py, wav bytes into wav_data:0, each file read by the one wav parser."""

from __future__ import annotations

import re
import struct
import wave

import numpy as np
import pytest

from distill.core.errors import BadAudioError, DistillError
from distill.core.labels import CLASSES
from distill.data.wav import decode_wav, read_wav
from distill.submission.label_wav import label_wav

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")


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
    with pytest.raises(DistillError, match="top_k"):
        label_wav(model=model_dir, wavs=wavs, top_k=13)


def _riff(*chunks: tuple[bytes, bytes]) -> bytes:
    body = b"WAVE" + b"".join(cid + struct.pack("<I", len(data)) + data + b"\0" * (len(data) & 1) for cid, data in chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_label_wav_reads_every_wav_the_data_layer_reads(model_dir, test_dir, predictor, tmp_path):
    """One wav parser: a LIST chunk before 'fmt ' (what many editors write) or an extensible header, both of which
    `distill data` and `distill submit` read, are labelled, not refused by the graph's stricter DecodeWav."""
    clip = sorted(test_dir.glob("clip_*.wav"))[0]
    pcm = read_wav(clip).astype("<i2").tobytes()
    info = b"INFO" + b"ISFT" + struct.pack("<I", 14) + b"Lavf58.76.100\0"
    plain_fmt = struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16)
    extensible = struct.pack("<HHIIHHHHIH14s", 0xFFFE, 1, 16000, 32000, 2, 16, 22, 16, 4, 1, b"\0" * 14)
    files = {"list_first.wav": _riff((b"LIST", info), (b"fmt ", plain_fmt), (b"data", pcm)),
             "extensible.wav": _riff((b"fmt ", extensible), (b"data", pcm))}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        np.testing.assert_array_equal(read_wav(tmp_path / name), read_wav(clip))  # what `data` and `submit` read
    results = label_wav(model=model_dir, wavs=[tmp_path / name for name in files] + [clip])
    expected = predictor.predict(decode_wav(clip)[None])[0]
    for result in results:
        np.testing.assert_allclose(result.probs, expected, atol=1e-5)
        assert result.top == results[-1].top
