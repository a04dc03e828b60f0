"""The submission's streaming path (batch reader, plain-header wav fast path, pipelined writer) against the
sequential path it replaced: the same samples, the same errors, the same CSV bytes."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from distill.core.errors import BadAudioError
from distill.data.unlabeled import iter_unlabeled
from distill.data.wav import encode_wav, read_clip_into, read_wav, to_clip
from distill.submission.scoring import HEADER

tf = pytest.importorskip("tensorflow")


def _pcm(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-32768, 32767, n, dtype=np.int16)


def _with_chunk_before_data(samples: np.ndarray) -> bytes:  # a LIST chunk between 'fmt ' and 'data'
    plain = encode_wav(samples)
    chunks = plain[12:36] + b"LIST" + struct.pack("<I", 6) + b"abcdef" + plain[36:]
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def _streamed_size(samples: np.ndarray) -> bytes:  # a recorder that never patched the data size
    data = bytearray(encode_wav(samples))
    data[40:44] = struct.pack("<I", 0xFFFFFFFF)
    return bytes(data)


def _rate(samples: np.ndarray, rate: int) -> bytes:
    data = bytearray(encode_wav(samples))
    data[24:28] = struct.pack("<I", rate)
    return bytes(data)


CASES = {
    "plain": encode_wav(_pcm(16000)),
    "short": encode_wav(_pcm(1000, 1)),
    "long": encode_wav(_pcm(17000, 2)),
    "extremes": encode_wav(np.array([-32768, 32767, 0, 1, -1] * 3200, np.int16)),
    "chunk before data": _with_chunk_before_data(_pcm(16000, 3)),
    "streamed size": _streamed_size(_pcm(16000, 4)),
    "truncated": encode_wav(_pcm(16000, 5))[:-100],
    "odd size": encode_wav(_pcm(100, 6))[:40] + struct.pack("<I", 199) + encode_wav(_pcm(100, 6))[44:],
    "empty data": encode_wav(np.zeros(0, np.int16)),
    "8 kHz": _rate(_pcm(8000, 7), 8000),
    "header only": encode_wav(_pcm(10))[:44 - 8],
    "not riff": b"OggS" + bytes(100),
    "empty file": b"",
}


@pytest.mark.parametrize("case", list(CASES))
def test_fast_reader_matches_read_wav(tmp_path, case):
    path = tmp_path / f"{case.replace(' ', '_')}.wav"
    path.write_bytes(CASES[case])
    try:
        expected = to_clip(read_wav(path))
    except BadAudioError as err:
        with pytest.raises(BadAudioError) as got:
            read_clip_into(path, np.full(16000, 7.0, np.float32))
        assert got.value.reason == err.reason and str(got.value) == str(err)
        return
    out = np.full(16000, 7.0, np.float32)  # stale values from a previous clip must not survive
    read_clip_into(path, out)
    assert out.tobytes() == expected.tobytes()


def test_batch_reader_matches_the_file_by_file_reader(tmp_path):
    for i, (case, data) in enumerate(CASES.items()):
        (tmp_path / f"clip_{i:03d}.wav").write_bytes(data)
    names = sorted(p.name for p in tmp_path.glob("clip_*.wav"))
    batches = list(iter_unlabeled(tmp_path, batch_size=3, skip_bad=True))
    assert [n for b in batches for n in b.names] == names
    for batch in batches:
        for name, wave, err in zip(batch.names, batch.waveforms, batch.errors):
            try:
                expected = to_clip(read_wav(tmp_path / name))
            except BadAudioError as bad:
                assert err is not None and err.reason == bad.reason and not wave.any()
            else:
                assert err is None and wave.tobytes() == expected.tobytes()
    with pytest.raises(BadAudioError, match="clip_006.wav"):  # the first bad clip, in name order
        list(iter_unlabeled(tmp_path, batch_size=3))


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_pipelined_submission_equals_the_sequential_path(tmp_path, model_dir, test_dir, predictor, batch_size):
    from distill.submission.writer import write_submission

    names = sorted(p.name for p in test_dir.glob("clip_*.wav"))
    # the path before the pipeline: read each file, predict a batch and wait, argmax row by row
    probs = []
    for start in range(0, len(names), batch_size):
        batch = np.stack([to_clip(read_wav(test_dir / n)) for n in names[start:start + batch_size]])
        probs.append(predictor.predict(batch))
    probs = np.concatenate(probs)
    expected = HEADER + "\n" + "".join(f"{n},{predictor.classes[int(p.argmax())]}\n" for n, p in zip(names, probs))
    result = write_submission(model=model_dir, test_dir=test_dir, out=tmp_path / "sub.csv", batch_size=batch_size,
                              progress=False, probs=True, predictor=predictor)
    assert result.out.read_text() == expected
    saved = np.load(result.probs)["probs"]
    assert saved.tobytes() == np.array([[float(f"{v:.6g}") for v in p] for p in probs], np.float32).astype(np.float16).tobytes()
