"""label_wav: the TensorFlow tutorial's label_wav.py, raw wav bytes into wav_data:0."""

from __future__ import annotations

import re
import struct
import wave

import numpy as np
import pytest

from distill.core.errors import BadAudioError, DistillError
from distill.core.labels import CLASSES
from distill.data.wav import decode_wav
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
    # read_wav accepts WAVE_FORMAT_EXTENSIBLE, TensorFlow's DecodeWav does not: its reason is reported
    pcm = np.zeros(16000, "<i2").tobytes()
    fmt = struct.pack("<HHIIHHHHIH14s", 0xFFFE, 1, 16000, 32000, 2, 16, 22, 16, 4, 1, b"\0" * 14)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(pcm)) + pcm
    (tmp_path / "ext.wav").write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    with pytest.raises(BadAudioError, match=r"ext.wav: the graph's DecodeWav rejected it: .*format chunk size"):
        label_wav(model=model_dir, wavs=[tmp_path / "ext.wav"])
    with pytest.raises(DistillError, match="top_k"):
        label_wav(model=model_dir, wavs=wavs, top_k=13)
