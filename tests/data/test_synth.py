"""Synthetic Speech Commands data: layout, determinism, the Kaggle-style test folder, safety."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from distill.core.config import load_config
from distill.core.errors import DistillError
from distill.core.io import read_json
from distill.core.labels import BACKGROUND_NOISE_DIR, CLASSES, SILENCE, TARGET_WORDS, UNKNOWN
from distill.data import synth
from distill.data.splits import SPLITS, TESTING, VALIDATION, which_set
from distill.data.synth import SynthConfig, synthesize_dataset

WORDS = ("yes", "no", "marvin", "sheila", "go")
CONFIG = SynthConfig(speakers=4, words=WORDS, noise_seconds=1.5, test_clips=40, seed=3)


def read_wav(path: Path) -> tuple[np.ndarray, int, int, int]:
    with wave.open(str(path), "rb") as w:
        frames = w.readframes(w.getnframes())
        x = np.frombuffer(frames, "<i2").astype(np.float64) / 32768.0
        return x, w.getframerate(), w.getnchannels(), w.getsampwidth()


def tree_bytes(*roots: Path) -> dict[str, bytes]:
    return {
        f"{i}/{p.relative_to(root)}": p.read_bytes()
        for i, root in enumerate(roots)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("synth")
    result = synthesize_dataset(out=base / "speech", config=CONFIG, jobs=2, progress=False)
    return result


def test_layout(built):
    out = built.out
    assert built.speakers == 4 and built.clips == 4 * len(WORDS)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted([*WORDS, BACKGROUND_NOISE_DIR])
    noise = sorted((out / BACKGROUND_NOISE_DIR).glob("*.wav"))
    assert len(noise) == len(synth.NOISE_TYPES) >= 5
    for path in noise:
        x, rate, channels, width = read_wav(path)
        assert (rate, channels, width, len(x)) == (16_000, 1, 2, 24_000)
        assert np.sqrt(np.mean(x**2)) > 0.005, path

    name = re.compile(r"[0-9a-f]{8}_nohash_0\.wav")
    clips = sorted(f"{p.parent.name}/{p.name}" for w in WORDS for p in (out / w).glob("*.wav"))
    assert len(clips) == built.clips
    speakers = set()
    for rel in clips:
        assert name.fullmatch(rel.split("/")[1]), rel
        speakers.add(rel.split("/")[1][:8])
        x, rate, channels, width = read_wav(out / rel)
        assert (rate, channels, width, len(x)) == (16_000, 1, 2, 16_000)
        # a spoken word: loud somewhere, and far louder there than in its quietest part
        frames = np.sqrt(np.mean(x.reshape(100, 160) ** 2, axis=1))
        assert x.max() - x.min() > 0.05, rel
        assert frames.max() > 5 * np.percentile(frames, 10), rel
    assert len(speakers) == 4

    listed = {}
    for split, fname in ((VALIDATION, "validation_list.txt"), (TESTING, "testing_list.txt")):
        for line in (out / fname).read_text().splitlines():
            assert (out / line).is_file(), line
            listed[line] = split
    for rel in clips:
        assert listed.get(rel, "training") == which_set(rel)
    # a tiny demo still has a speaker in every split
    assert set(built.split_speakers) == set(SPLITS) and min(built.split_speakers.values()) >= 1
    assert sum(built.split_speakers.values()) == 4
    assert load_config(SynthConfig, out / "synth_config.json") == CONFIG


def test_same_seed_is_byte_identical_across_jobs_and_reruns(built, tmp_path):
    before = tree_bytes(built.out, built.test_dir) | {"key": built.answer_key.read_bytes()}
    # same place again (replacing the previous synth output needs overwrite=True), other job count
    again = synthesize_dataset(out=built.out, config=CONFIG, jobs=1, overwrite=True, progress=False)
    after = tree_bytes(again.out, again.test_dir) | {"key": again.answer_key.read_bytes()}
    assert sorted(after) == sorted(before)
    assert [k for k in before if before[k] != after[k]] == []

    other_config = SynthConfig(speakers=4, words=WORDS, noise_seconds=1.5, seed=4)
    other = synthesize_dataset(out=tmp_path / "speech", config=other_config, jobs=2, progress=False)
    noise = f"{BACKGROUND_NOISE_DIR}/babble.wav"
    assert (other.out / noise).read_bytes() != (built.out / noise).read_bytes()
    assert {p.name for p in (other.out / "yes").iterdir()}.isdisjoint(p.name for p in (built.out / "yes").iterdir())


def test_kaggle_style_test_folder(built):
    test_dir, key = built.test_dir, built.answer_key
    assert test_dir == built.out.parent / "speech_test" and key == built.out.parent / "speech_test_answers.csv"
    assert test_dir not in key.parents and built.out not in key.parents
    clips = sorted(p.name for p in test_dir.glob("*.wav"))
    assert len(clips) == CONFIG.test_clips
    assert all(re.fullmatch(r"clip_[0-9a-f]{9}\.wav", c) for c in clips)
    with open(key, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["fname", "label"]
    names = [r["fname"] for r in rows]
    assert sorted(names) == clips and len(set(names)) == len(names)
    labels = {r["fname"]: r["label"] for r in rows}
    assert set(labels.values()) <= set(CLASSES)
    n = len(clips)
    share = {c: sum(1 for v in labels.values() if v == c) / n for c in (UNKNOWN, SILENCE)}
    assert abs(share[UNKNOWN] - CONFIG.test_unknown_share) <= 1 / n
    assert abs(share[SILENCE] - CONFIG.test_silence_share) <= 1 / n
    for name, label in labels.items():
        x, rate, channels, width = read_wav(test_dir / name)
        assert (rate, channels, width, len(x)) == (16_000, 1, 2, 16_000)
        if label == SILENCE:
            assert np.abs(x).max() < 0.1, name
        else:
            assert x.max() - x.min() > 0.05, name

    manifest = read_json(built.out / "synth_manifest.json")
    train_ids = {s["id"] for s in manifest["speakers"]}
    test_ids = {s["id"] for s in manifest["test_speakers"]}
    assert test_ids and train_ids.isdisjoint(test_ids)
    train_voices = {tuple(sorted(s["voice"].items())) for s in manifest["speakers"]}
    assert all(tuple(sorted(s["voice"].items())) not in train_voices for s in manifest["test_speakers"])


def test_existing_synth_output_needs_overwrite(built, tmp_path):
    before = tree_bytes(built.out, built.test_dir) | {"key": built.answer_key.read_bytes()}
    other = SynthConfig(speakers=4, words=WORDS, noise_seconds=1.5, test_clips=40, seed=9)
    with pytest.raises(DistillError, match=re.escape(f"{built.out}: ") + ".*--overwrite"):
        synthesize_dataset(out=built.out, config=other, progress=False)
    # the test folder and the answer key of an earlier run are refused the same way, each named
    with pytest.raises(DistillError, match=re.escape(f"{built.test_dir}: ") + ".*--overwrite"):
        synthesize_dataset(out=tmp_path / "fresh", config=other, test_dir=built.test_dir,
                           answer_key=tmp_path / "key.csv", progress=False)
    with pytest.raises(DistillError, match=re.escape(f"{built.answer_key}: ") + ".*--overwrite"):
        synthesize_dataset(out=tmp_path / "fresh", config=other, test_dir=tmp_path / "fresh_test",
                           answer_key=built.answer_key, progress=False)
    after = tree_bytes(built.out, built.test_dir) | {"key": built.answer_key.read_bytes()}
    assert sorted(after) == sorted(before) and [k for k in before if before[k] != after[k]] == []
    assert not (tmp_path / "fresh").exists() and not (tmp_path / "fresh_test").exists()
    assert not [p for p in built.out.parent.iterdir() if p.name.startswith(".")]  # nothing was even started
    # the command line: exit 2, the path and the flag named, nothing touched
    proc = subprocess.run([sys.executable, "-m", "distill", "data", "synth", "--out", str(built.out), "--speakers", "4",
                           "--test-clips", "40", "--seed", "9"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert str(built.out) in proc.stderr and "--overwrite" in proc.stderr
    after = tree_bytes(built.out, built.test_dir) | {"key": built.answer_key.read_bytes()}
    assert [k for k in before if before[k] != after.get(k)] == []


def test_test_mix_has_unseen_unknown_words():
    mix = synth._test_mix(SynthConfig(words=WORDS, test_clips=200), np.random.default_rng(0))
    unknown_words = {text for text, label in mix if label == UNKNOWN}
    assert unknown_words & set(synth.EXTRA_UNKNOWN_WORDS)  # never in training
    assert unknown_words & {"marvin", "sheila"}  # trained non-target words too
    targets = [label for _, label in mix if label in TARGET_WORDS]
    counts = [targets.count(w) for w in TARGET_WORDS]
    assert max(counts) - min(counts) <= 1


def test_refuses_foreign_folder(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    tiny = SynthConfig(speakers=1, words=("yes",), takes=2, noise_seconds=0.1)
    with pytest.raises(DistillError, match="overwrite"):
        synthesize_dataset(out=out, config=tiny, progress=False)
    assert (out / "notes.txt").read_text() == "keep me"
    with pytest.raises(DistillError, match="outside"):
        synthesize_dataset(out=tmp_path / "a", config=SynthConfig(speakers=1, words=("yes",), test_clips=2),
                           test_dir=tmp_path / "t", answer_key=tmp_path / "t" / "key.csv", progress=False)
    result = synthesize_dataset(out=out, config=tiny, overwrite=True, progress=False)
    assert not (out / "notes.txt").exists()
    assert sorted(p.name[8:] for p in (out / "yes").iterdir()) == ["_nohash_0.wav", "_nohash_1.wav"]
    assert sum(result.split_speakers.values()) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left behind


@pytest.mark.parametrize(
    "kwargs",
    [dict(speakers=0), dict(words=()), dict(words=("yes", "yes")), dict(words=("_background_noise_",)),
     dict(test_unknown_share=0.7, test_silence_share=0.4), dict(snr_db=(30.0, 10.0)), dict(takes=0)],
)
def test_config_validation(kwargs):
    with pytest.raises(DistillError):
        SynthConfig(**kwargs)


def test_speaker_ids_fill_every_split():
    ids = synth._draw_speaker_ids(0, 12, 3)
    splits = [s for _, s in ids]
    assert all(splits.count(s) >= 3 for s in SPLITS)
    assert all(re.fullmatch(r"[0-9a-f]{8}", i) for i, _ in ids) and len({i for i, _ in ids}) == 12
    assert all(which_set(f"{i}_nohash_0.wav") == s for i, s in ids)
    assert synth._draw_speaker_ids(0, 12, 3) == ids


def test_voice_pool_is_accepted_and_breath_free():
    import espeakng_loader

    from distill.data import _espeak

    variants = Path(espeakng_loader.get_data_path()) / "voices" / "!v"
    for variant in synth._VARIANTS:
        if variant:
            text = (variants / variant[1:]).read_text(errors="replace")
            # 'breath' makes eSpeak differ between fresh processes: it would break determinism
            assert not re.search(r"^\s*breath", text, re.M), variant
    tts = _espeak.engine()
    for base in synth._BASES:
        for variant in synth._VARIANTS:
            tts.set_voice(base + variant, rate=170, pitch=50, pitch_range=50)
    x = tts.synth("yes")
    assert x.dtype == np.int16 and len(x) > 2_000 and np.abs(x).max() > 1_000
    with pytest.raises(DistillError, match="voice"):
        tts.set_voice("en-gb")


def test_missing_library_is_a_clear_error(tmp_path):
    from distill.data._espeak import Espeak

    with pytest.raises(DistillError, match="cannot load"):
        Espeak(library_path=str(tmp_path / "libespeak-ng.so"), data_path=str(tmp_path))


def test_worker_module_does_not_import_tensorflow():
    code = "import sys, distill.data.synth, distill.data._espeak; assert not {'tensorflow', 'rich'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)
