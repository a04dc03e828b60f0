"""The data layer: wav decoding, the index and its splits, the decoded cache, example sets, unlabeled folders."""

from __future__ import annotations

import collections
import math
import os
import shutil
import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from distill.core.errors import BadAudioError, DistillError
from distill.core.io import sibling_prefix
from distill.core.labels import CLASS_INDEX, SILENCE_INDEX, UNKNOWN_INDEX, V002_EXTRA_WORDS, LabelSet, word_to_class
from distill.data import cache, wav
from distill.data.cache import open_dataset
from distill.data.examples import ExampleSet, MixConfig, make_examples, materialize, silence_waveform
from distill.data.index import ClipIndex, index_dataset
from distill.data.splits import SPLITS, which_set
from distill.data.stats import dataset_stats
from distill.data.unlabeled import iter_unlabeled, list_unlabeled, open_unlabeled
from distill.data.wav import decode_wav, read_wav

WORDS = ("yes", "no", "left", "bed", "cat")  # three target words, two that map to unknown


def write_wav(path: Path, samples, *, rate: int = 16000, channels: int = 1, sampwidth: int = 2) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = np.asarray(samples)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(sampwidth)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2" if sampwidth == 2 else np.uint8).tobytes())
    return path


def _clip(seed: int, n: int = 16000) -> np.ndarray:
    return np.random.default_rng(seed).integers(-30000, 30000, size=n).astype(np.int16)


def _speakers_covering_all_splits(per_split: int = 2) -> list[str]:
    """Speaker ids the hash rule sends to every split (so hash-split tests are not vacuous)."""
    chosen: dict[str, list[str]] = {s: [] for s in SPLITS}
    i = 0
    while any(len(v) < per_split for v in chosen.values()):
        speaker = f"{i * 7919:08x}"
        bucket = chosen[which_set(f"yes/{speaker}_nohash_0.wav")]
        if len(bucket) < per_split:
            bucket.append(speaker)
        i += 1
    return [s for v in chosen.values() for s in v]


SPEAKERS = _speakers_covering_all_splits()


def make_tree(root: Path, *, lists: bool = False, noise: bool = True, words=WORDS, speakers=SPEAKERS) -> Path:
    """A tiny Speech Commands tree: every speaker says every word once (yes twice)."""
    k = 0
    for word in words:
        for speaker in speakers:
            for n in range(2 if word == "yes" else 1):
                k += 1
                length = 16000 if k % 7 else (12000 if k % 2 else 17000)  # a few short and long clips
                write_wav(root / word / f"{speaker}_nohash_{n}.wav", _clip(k, length))
    if noise:
        write_wav(root / "_background_noise_" / "hum.wav", _clip(999, 40000))
        write_wav(root / "_background_noise_" / "fan.wav", _clip(998, 20000))
    (root / "README.md").write_text("not a word folder\n")
    if lists:
        val, test = speakers[0], speakers[1]
        (root / "validation_list.txt").write_text(
            "".join(f"{w}/{val}_nohash_0.wav\n" for w in words) + f"./yes/{val}_nohash_1.wav\nyes/gone0000_nohash_0.wav\n"
        )
        (root / "testing_list.txt").write_text("".join(f"{w}/{test}_nohash_0.wav\n" for w in words) + f"yes/{test}_nohash_1.wav\n")
    return root


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    home = tmp_path / "cache-home"
    monkeypatch.setenv("DISTILL_CACHE_DIR", str(home))
    return home


@pytest.fixture
def tree(tmp_path, cache_home):
    return make_tree(tmp_path / "sc", lists=False)


# --------------------------------------------------------------------------- decoding


def test_read_and_decode_pad_and_crop(tmp_path):
    short = write_wav(tmp_path / "short.wav", _clip(1, 1000))
    long = write_wav(tmp_path / "long.wav", _clip(2, 17000))
    assert read_wav(short).dtype == np.int16 and len(read_wav(short)) == 1000
    np.testing.assert_array_equal(read_wav(long), _clip(2, 17000))
    x = decode_wav(short)
    assert x.dtype == np.float32 and x.shape == (16000,)
    np.testing.assert_array_equal(x[:1000], _clip(1, 1000) / np.float32(32768))
    assert not x[1000:].any()
    np.testing.assert_array_equal(decode_wav(long), _clip(2, 17000)[:16000] / np.float32(32768))
    assert np.abs(decode_wav(long)).max() <= 1.0


def _raw_wav(tag=1, channels=1, rate=16000, bits=16, data=b"\x01\x00\x02\x00", data_size=None, extra=b"") -> bytes:
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * channels * bits // 8, channels * bits // 8, bits)
    size = len(data) if data_size is None else data_size
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra + b"data" + struct.pack("<I", size) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


BAD_CASES = {
    "rate": (lambda p: write_wav(p, _clip(3, 8000), rate=8000), "8000 Hz.*resampled to 16 kHz"),
    "stereo": (lambda p: write_wav(p, _clip(3, 3200), channels=2), "stereo"),
    "empty": (lambda p: write_wav(p, np.zeros(0, np.int16)), "empty"),
    "zero_bytes": (lambda p: p.write_bytes(b""), "empty file"),
    "truncated": (lambda p: p.write_bytes(_raw_wav(data=b"\x00" * 100, data_size=32000)), "truncated.*32000"),
    "not_a_wav": (lambda p: p.write_text("ID3 this is an mp3, honest"), "not a RIFF/WAVE"),
    "8bit": (lambda p: write_wav(p, np.full(1600, 128), sampwidth=1), "8-bit"),
    "float": (lambda p: p.write_bytes(_raw_wav(tag=3, bits=32, data=b"\x00" * 8)), "not PCM"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_audio_is_named_and_explained(tmp_path, case):
    make, reason = BAD_CASES[case]
    path = tmp_path / f"{case}.wav"
    make(path)
    with pytest.raises(BadAudioError, match=reason) as info:
        decode_wav(path)
    assert str(path) in str(info.value) and "--skip-bad" in str(info.value)
    assert info.value.path == str(path)


def test_unreadable_and_odd_chunks(tmp_path):
    with pytest.raises(BadAudioError, match="unreadable"):
        read_wav(tmp_path / "missing.wav")
    # a LIST chunk before the data, as many editors write, is skipped
    odd = tmp_path / "list_chunk.wav"
    odd.write_bytes(_raw_wav(extra=b"LIST" + struct.pack("<I", 3) + b"abc\x00"))
    np.testing.assert_array_equal(read_wav(odd), [1, 2])


# --------------------------------------------------------------------------- index and splits


def test_hash_splits_are_stable_speaker_disjoint_and_labelled(tree):
    index = index_dataset(tree)
    assert len(index) == len(SPEAKERS) * (len(WORDS) + 1)
    assert list(index.files) == sorted(index.files) and all(f.count("/") == 1 for f in index.files)
    assert all(s == which_set(f) for f, s in zip(index.files, index.splits))
    assert set(index.splits) == set(SPLITS)
    by_speaker = collections.defaultdict(set)
    for speaker, split in zip(index.speakers, index.splits):
        by_speaker[speaker].add(split)
    assert all(len(s) == 1 for s in by_speaker.values())
    assert index.labels.dtype == np.int64
    assert list(index.labels) == [word_to_class(w) for w in index.words]
    assert index.labels[index.files.index(f"bed/{SPEAKERS[0]}_nohash_0.wav")] == UNKNOWN_INDEX
    assert index.labels[index.files.index(f"left/{SPEAKERS[0]}_nohash_0.wav")] == CLASS_INDEX["left"]
    # adding a speaker never moves the existing ones
    write_wav(tree / "no" / "feedbeef_nohash_0.wav", _clip(5))
    again = index_dataset(tree)
    old = dict(zip(index.files, index.splits))
    assert all(old[f] == s for f, s in zip(again.files, again.splits) if f in old)
    positions = again.positions("validation")
    assert all(again.splits[i] == "validation" for i in positions)
    assert ClipIndex.from_json(again.to_json()) == again
    assert ClipIndex.from_json(__import__("json").dumps(again.to_json())) == again


def test_list_files_are_honoured(tmp_path):
    root = make_tree(tmp_path / "sc", lists=True)
    with pytest.warns(UserWarning, match="1 entries"):
        index = index_dataset(root)
    split_of = dict(zip(index.files, index.splits))
    assert {f for f, s in split_of.items() if s == "validation"} == {
        *(f"{w}/{SPEAKERS[0]}_nohash_0.wav" for w in WORDS),
        f"yes/{SPEAKERS[0]}_nohash_1.wav",
    }
    by_speaker = collections.defaultdict(set)
    for speaker, split in zip(index.speakers, index.splits):
        by_speaker[speaker].add(split)
    assert all(len(s) == 1 for s in by_speaker.values())
    assert split_of[f"yes/{SPEAKERS[1]}_nohash_1.wav"] == "testing"
    assert all(s == "training" for f, s in split_of.items() if SPEAKERS[0] not in f and SPEAKERS[1] not in f)


def test_index_errors(tmp_path):
    with pytest.raises(DistillError, match="does not exist.*distill data fetch.*distill data synth"):
        index_dataset(tmp_path / "nowhere")
    (tmp_path / "empty" / "_background_noise_").mkdir(parents=True)
    with pytest.raises(DistillError, match="no word folders"):
        index_dataset(tmp_path / "empty")
    (tmp_path / "empty" / "yes").mkdir()
    with pytest.raises(DistillError, match="hold no .wav files"):
        index_dataset(tmp_path / "empty")
    root = make_tree(tmp_path / "sc", lists=True)
    (root / "testing_list.txt").unlink()
    with pytest.raises(DistillError, match="testing_list.txt does not"):
        index_dataset(root)
    with pytest.raises(DistillError, match="add up to at most 100"):
        index_dataset(root, validation_percentage=60, testing_percentage=50)


def test_kaggle_train_layout(tmp_path):
    # Kaggle's train.7z: train/audio/<word>/..., lists in train/
    train = tmp_path / "train"
    make_tree(train / "audio", lists=True)
    for name in ("validation_list.txt", "testing_list.txt"):
        (train / "audio" / name).rename(train / name)
    with pytest.warns(UserWarning):
        a = index_dataset(train)
    with pytest.warns(UserWarning):
        b = index_dataset(train / "audio")
    assert a == b and "validation" in a.splits


def make_v002_tree(root: Path) -> Path:
    """A tiny v0.02-shaped tree: its five extra word folders beside v0.01 ones, and the stray files the archive has."""
    make_tree(root, lists=True, words=("yes", "no", "bed", *V002_EXTRA_WORDS))
    (root / "LICENSE").write_text("Creative Commons BY 4.0\n")
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "learn" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "learn" / "._0a7c2a8d_nohash_0.wav").write_bytes(b"\0\5\x16\7")  # a macOS resource fork, not audio
    (root / "_background_noise_" / "README.md").write_text("about the noise files\n")
    return root


def test_a_v002_tree_reads_as_v001_does(tmp_path, cache_home):
    from typer.testing import CliRunner

    from distill.cli import app

    root = make_v002_tree(tmp_path / "sc2")
    own = ("backward", "forward", "learn")  # words only v0.02 has
    with pytest.warns(UserWarning, match="1 entries"):
        index = index_dataset(root)
    assert sorted(set(index.words)) == sorted(("yes", "no", "bed", *V002_EXTRA_WORDS))
    assert len(index) == len(SPEAKERS) * 9 and all(f.endswith(".wav") and not f.split("/")[1].startswith(".") for f in index.files)
    assert {s for f, s in zip(index.files, index.splits) if f.startswith("forward/")} == set(SPLITS)
    assert all(index.labels[i] == UNKNOWN_INDEX for i, w in enumerate(index.words) if w in V002_EXTRA_WORDS)
    mine = index.labels_for(LabelSet(own))
    assert [mine[index.files.index(f"{w}/{SPEAKERS[2]}_nohash_0.wav")] for w in ("backward", "forward", "learn", "follow", "yes")] == [2, 3, 4, 1, 1]

    with pytest.warns(UserWarning):
        kaggle = dataset_stats(root=root, progress=False)
    assert kaggle.class_counts["validation"]["unknown"] == 6 and kaggle.class_counts["validation"]["yes"] == 2
    assert kaggle.word_counts["visual"] == len(SPEAKERS) and kaggle.noise_files and kaggle.bad_files == ()
    stats = dataset_stats(root=root, progress=False, words=own)  # from the cache just built: a note, no warning
    assert list(stats.class_counts["training"]) == ["silence", "unknown", *own]
    assert stats.class_counts["validation"] == {"silence": 0, "unknown": 6, "backward": 1, "forward": 1, "learn": 1}
    assert stats.class_counts["training"]["learn"] == len(SPEAKERS) - 2
    assert sum(sum(c.values()) for c in stats.class_counts.values()) == len(index)

    runner = CliRunner()
    result = runner.invoke(app, ["data", "stats", str(root), "--words", ",".join(own), "--json"])
    assert result.exit_code == 0, (result.output, result.exception)
    shown = __import__("json").loads(result.output[result.output.index("{"):])
    assert shown["words"] == list(own) and shown["class_counts"] == stats.class_counts
    result = runner.invoke(app, ["data", "stats", str(make_tree(tmp_path / "sc1")), "--words", "backward,yes"])
    assert result.exit_code != 0 and "no word folder for backward" in str(result.exception)


# --------------------------------------------------------------------------- the decoded cache


def _fail_decoding(monkeypatch):
    def boom(path):
        raise AssertionError(f"decoded {path} although the cache is valid")

    monkeypatch.setattr(wav, "read_wav", boom)


def test_cache_is_built_once_then_reused(tree, cache_home, monkeypatch):
    ds = open_dataset(tree, progress=False)
    assert ds.cache_dir.parent == cache_home / "decoded" and ds.cache_dir.is_relative_to(cache_home)
    assert not any(p.name.endswith(".npy") for p in tree.rglob("*")), "never write into the dataset tree"
    assert ds.audio.dtype == np.int16 and ds.audio.shape == (len(ds.index), 16000)
    assert isinstance(ds.audio, np.memmap) and not ds.audio.flags.writeable
    for i in (0, 5, len(ds.index) - 1):
        np.testing.assert_array_equal(ds.waveforms([i])[0], decode_wav(tree / ds.index.files[i]))
    assert ds.noise_names == ("fan.wav", "hum.wav")
    assert [len(n) for n in ds.noise] == [20000, 40000] and ds.noise[0].dtype == np.float32
    assert ds.bad_files == () and ds.split_source == "hash"
    _fail_decoding(monkeypatch)
    again = open_dataset(tree, progress=False)
    assert again.cache_dir == ds.cache_dir and again.index == ds.index
    np.testing.assert_array_equal(again.audio, ds.audio)


@pytest.mark.parametrize("change", ["add", "modify", "remove"])
def test_cache_rebuilds_when_the_tree_changes(tree, change):
    first = open_dataset(tree, progress=False)
    target = tree / "no" / f"{SPEAKERS[2]}_nohash_0.wav"
    if change == "add":
        write_wav(tree / "cat" / "abcdef01_nohash_0.wav", _clip(77))
    elif change == "modify":
        write_wav(target, _clip(78))
        os.utime(target, ns=(1, 1))  # a different mtime even on coarse-clock filesystems
    else:
        target.unlink()
    second = open_dataset(tree, progress=False)
    assert second.fingerprint != first.fingerprint
    assert len(second.index) == len(first.index) + {"add": 1, "modify": 0, "remove": -1}[change]
    if change == "modify":
        row = second.index.files.index(f"no/{SPEAKERS[2]}_nohash_0.wav")
        np.testing.assert_array_equal(second.audio[row], _clip(78))
    assert sorted(p.name for p in second.cache_dir.parent.iterdir()) == [second.cache_dir.name], "old cache and temp dirs removed"


def test_crash_mid_build_leaves_no_loadable_cache(tree, tmp_path, monkeypatch):
    home = tmp_path / "explicit-cache"
    target = cache.default_cache_dir(tree, home=home)
    real = wav.read_wav
    calls = {"n": 0}

    def crash_after_a_few(path):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt  # like Ctrl-C halfway through
        return real(path)

    monkeypatch.setattr(wav, "read_wav", crash_after_a_few)
    with pytest.raises(KeyboardInterrupt):
        open_dataset(tree, cache_dir=home, progress=False)
    assert not target.exists()
    assert list(target.parent.iterdir()) == [], "temp build folder cleaned up"
    monkeypatch.setattr(wav, "read_wav", real)
    ds = open_dataset(tree, cache_dir=home, progress=False)
    assert ds.cache_dir == target and target.parent == home / "decoded"
    assert len(ds.index) == len(SPEAKERS) * (len(WORDS) + 1)


def test_threaded_reader_keeps_file_order(tree, tmp_path):
    paths = sorted(tree.glob("*/*.wav"))
    BAD_CASES["stereo"][0](paths[3])
    threaded = list(wav.read_many(paths, workers=2, ahead=2))
    assert isinstance(threaded[3], BadAudioError) and str(paths[3]) in str(threaded[3])
    for path, got in zip(paths, threaded):
        if not isinstance(got, BadAudioError):
            np.testing.assert_array_equal(got, read_wav(path))


def test_a_stale_or_foreign_cache_dir(tree, tmp_path):
    home = tmp_path / "c"
    target = cache.default_cache_dir(tree, home=home)
    # a build killed with SIGKILL leaves its temp folder; the next build removes it
    dead = target.parent / f"{sibling_prefix(target, 'building')}999999999-abcd"
    dead.mkdir(parents=True)
    open_dataset(tree, cache_dir=home, progress=False)
    assert not dead.exists()
    shutil.rmtree(target)
    target.mkdir()
    (target / "thesis.tex").write_text("precious")
    with pytest.raises(DistillError, match="not a distill decode cache"):
        open_dataset(tree, cache_dir=home, progress=False)
    assert (target / "thesis.tex").exists()


def test_bad_files_raise_or_are_skipped_and_reported(tree):
    BAD_CASES["stereo"][0](tree / "yes" / "aaaa0000_nohash_0.wav")
    with pytest.raises(BadAudioError, match="aaaa0000_nohash_0.wav.*stereo"):
        open_dataset(tree, progress=False)
    BAD_CASES["truncated"][0](tree / "bed" / "bbbb0000_nohash_0.wav")
    BAD_CASES["8bit"][0](tree / "_background_noise_" / "bad_noise.wav")
    with pytest.raises(BadAudioError, match="bad_noise.wav.*8-bit"):  # noise is checked before the long clip pass
        open_dataset(tree, progress=False)
    ds = open_dataset(tree, skip_bad=True, progress=False)
    bad = dict(ds.bad_files)
    assert set(bad) == {"yes/aaaa0000_nohash_0.wav", "bed/bbbb0000_nohash_0.wav", "_background_noise_/bad_noise.wav"}
    assert "stereo" in bad["yes/aaaa0000_nohash_0.wav"] and "truncated" in bad["bed/bbbb0000_nohash_0.wav"]
    assert not set(bad) & set(ds.index.files)
    assert ds.audio.shape == (len(ds.index), 16000) == (len(SPEAKERS) * (len(WORDS) + 1), 16000)
    assert np.load(ds.cache_dir / "audio.npy").shape == ds.audio.shape  # the shrunk .npy is a valid file
    for i in range(len(ds.index)):  # rows stay aligned with files after the skipped ones
        np.testing.assert_array_equal(ds.waveforms(i), decode_wav(tree / ds.index.files[i]))
    tsv = (ds.cache_dir / "bad_files.tsv").read_text().splitlines()
    assert sorted(line.split("\t")[0] for line in tsv) == sorted(bad)
    assert any("3 bad files" in note for note in ds.notes)


def test_missing_background_noise_is_allowed_and_noted(tmp_path, cache_home):
    root = make_tree(tmp_path / "sc", noise=False)
    with pytest.warns(UserWarning, match="digital silence"):
        ds = open_dataset(root, progress=False)
    assert ds.noise == () and any("digital silence" in n for n in ds.notes)
    examples = make_examples(ds, split="training")
    silence = materialize(ds, examples, np.flatnonzero(examples.rows < 0))
    assert len(silence) and not silence.any()


# --------------------------------------------------------------------------- example sets


def test_make_examples_composition(tree):
    ds = open_dataset(tree, progress=False)
    for split in SPLITS:
        labels = ds.index.labels[ds.index.positions(split)]
        n_target = int((labels != UNKNOWN_INDEX).sum())
        n_other = int((labels == UNKNOWN_INDEX).sum())
        ex = make_examples(ds, split=split, mix=MixConfig(silence_percentage=10, unknown_percentage=30), seed=3)
        counts = np.bincount(ex.labels, minlength=12)
        assert counts[SILENCE_INDEX] == math.ceil(n_target * 0.10)
        assert counts[UNKNOWN_INDEX] == min(math.ceil(n_target * 0.30), n_other)
        assert counts[2:].sum() == n_target
        assert (ex.rows[ex.labels == SILENCE_INDEX] == -1).all() and (ex.rows[ex.labels != SILENCE_INDEX] >= 0).all()
        clip_rows = ex.rows[ex.rows >= 0]
        assert len(set(clip_rows)) == len(clip_rows) and all(ds.index.splits[r] == split for r in clip_rows)
        np.testing.assert_array_equal(ds.index.labels[clip_rows], ex.labels[ex.rows >= 0])
        assert len(set(ex.seeds.tolist())) == len(ex) and (ex.seeds >= 0).all() and ex.split == split
        everything = make_examples(ds, split=split, seed=3, all_unknown=True)
        assert (everything.labels == UNKNOWN_INDEX).sum() == n_other
    a = make_examples(ds, split="training", mix=MixConfig(unknown_percentage=20), seed=1)
    b = make_examples(ds, split="training", mix=MixConfig(unknown_percentage=20), seed=1)
    np.testing.assert_array_equal(a.rows, b.rows)
    np.testing.assert_array_equal(a.seeds, b.seeds)
    picks = {tuple(make_examples(ds, split="training", mix=MixConfig(unknown_percentage=20), seed=s).rows) for s in range(6)}
    assert len(picks) > 1, "the unknown sample depends on the seed"
    val = make_examples(ds, split="validation", seed=1)
    assert not set(a.seeds.tolist()) & set(val.seeds.tolist()), "splits get different seeds"
    with pytest.raises(DistillError, match="unknown split"):
        make_examples(ds, split="train")


def test_example_set_save_load_subset(tree, tmp_path):
    ds = open_dataset(tree, progress=False)
    ex = make_examples(ds, split="training", seed=5)
    path = ex.save(tmp_path / "examples.npz")
    back = ExampleSet.load(path)
    assert back.split == "training" and len(back) == len(ex)
    for name in ("rows", "labels", "seeds"):
        np.testing.assert_array_equal(getattr(back, name), getattr(ex, name))
        assert getattr(back, name).dtype == np.int64
    sub = ex.subset([2, 0])
    assert list(sub.rows) == [ex.rows[2], ex.rows[0]] and sub.split == "training"
    with pytest.raises(DistillError, match="no example set"):
        ExampleSet.load(tmp_path / "missing.npz")


def test_silence_waveform():
    noise = (np.linspace(-0.5, 0.5, 20000, dtype=np.float32), np.full(16000, 0.25, np.float32))
    np.testing.assert_array_equal(silence_waveform(noise, 7), silence_waveform(noise, 7))
    waves = [silence_waveform(noise, s) for s in range(300)]
    zeros = sum(not w.any() for w in waves)
    assert 10 <= zeros <= 60  # about 10% of seeds are digital silence
    loud = [w for w in waves if w.any()]
    assert all(w.dtype == np.float32 and w.shape == (16000,) and np.abs(w).max() <= 0.5 for w in loud)
    assert len({float(np.abs(w).max()) for w in loud}) > 50, "random gains"
    assert not silence_waveform((), 3).any()


def test_materialize_matches_decode(tree):
    ds = open_dataset(tree, progress=False)
    ex = make_examples(ds, split="training", seed=2)
    batch = materialize(ds, ex)
    assert batch.dtype == np.float32 and batch.shape == (len(ex), 16000)
    for i, row in enumerate(ex.rows):
        expected = decode_wav(tree / ds.index.files[row]) if row >= 0 else silence_waveform(ds.noise, int(ex.seeds[i]))
        np.testing.assert_array_equal(batch[i], expected)
    positions = np.array([len(ex) - 1, 0, 3])
    np.testing.assert_array_equal(materialize(ds, ex, positions), batch[positions])


# --------------------------------------------------------------------------- unlabeled folders


@pytest.fixture
def test_folder(tmp_path):
    folder = tmp_path / "test" / "audio"
    for i in range(7):
        write_wav(folder / f"clip_{i:09x}.wav", _clip(100 + i, 16000 if i != 3 else 9000))
    write_wav(folder / "other.wav", _clip(50))
    (folder / "notes.txt").write_text("not audio")
    return folder


def test_unlabeled_listing_and_streaming(test_folder, tmp_path):
    names = list_unlabeled(test_folder)
    assert names == sorted(names) and len(names) == 7 and all(n.startswith("clip_") for n in names)
    assert list_unlabeled(test_folder.parent) == names  # Kaggle's test/ works too
    batches = list(iter_unlabeled(test_folder, batch_size=3))
    assert [len(b.names) for b in batches] == [3, 3, 1]
    assert [n for b in batches for n in b.names] == names
    for batch in batches:
        waves = batch.waveforms
        assert waves.dtype == np.float32 and waves.shape == (len(batch.names), 16000)
        assert batch.errors == (None,) * len(batch.names) and batch.ok.all()
        for name, wave_ in zip(batch.names, waves):
            np.testing.assert_array_equal(wave_, decode_wav(test_folder / name))
    only_other = tmp_path / "plain"
    write_wav(only_other / "a.wav", _clip(1))
    assert list_unlabeled(only_other) == ["a.wav"]
    with pytest.raises(DistillError, match="does not exist"):
        list_unlabeled(tmp_path / "nope")
    (tmp_path / "hollow").mkdir()
    with pytest.raises(DistillError, match="no .wav files"):
        list_unlabeled(tmp_path / "hollow")


def test_unlabeled_bad_files_and_cache(test_folder, cache_home, monkeypatch):
    BAD_CASES["rate"][0](test_folder / "clip_00000000a.wav")
    with pytest.raises(BadAudioError, match="clip_00000000a.wav"):
        list(iter_unlabeled(test_folder, batch_size=4))
    batches = list(iter_unlabeled(test_folder, batch_size=4, skip_bad=True))
    assert [n for b in batches for n in b.names] == list_unlabeled(test_folder)  # every clip, the bad one too
    got = [n for b in batches for n, err in zip(b.names, b.errors) if err is None]
    assert "clip_00000000a.wav" not in got and len(got) == 7
    report = [(n, err) for b in batches for n, err in zip(b.names, b.errors) if err is not None]
    assert [n for n, _ in report] == ["clip_00000000a.wav"] and isinstance(report[0][1], BadAudioError)
    assert "16 kHz" in report[0][1].reason
    for batch in batches:
        assert list(batch.ok) == [err is None for err in batch.errors]
        for name, wave_, ok in zip(batch.names, batch.waveforms, batch.ok):
            if ok:
                np.testing.assert_array_equal(wave_, decode_wav(test_folder / name))
            else:
                assert not wave_.any()  # a bad clip's audio is zeros
    with pytest.raises(BadAudioError):
        open_unlabeled(test_folder, progress=False)
    un = open_unlabeled(test_folder, skip_bad=True, progress=False)
    assert un.cache_dir.parent == cache_home / "unlabeled"
    assert list(un.names) == got and un.audio.shape == (7, 16000)
    assert [b[0] for b in un.bad_files] == ["clip_00000000a.wav"]
    np.testing.assert_array_equal(un.waveforms([3])[0], decode_wav(test_folder / un.names[3]))
    all_bad = test_folder.parent / "all_bad"
    BAD_CASES["stereo"][0](all_bad / "clip_1.wav")
    with pytest.raises(DistillError, match="none of the 1 files could be decoded.*clip_1.wav: stereo"):
        open_unlabeled(all_bad, skip_bad=True, progress=False)
    _fail_decoding(monkeypatch)
    again = open_unlabeled(test_folder, skip_bad=True, progress=False)
    assert again.names == un.names


def test_labeled_and_unlabeled_share_one_cache_dir(tree, test_folder, tmp_path, monkeypatch):
    home = tmp_path / "one-cache"
    ds = open_dataset(tree, cache_dir=home, progress=False)
    un = open_unlabeled(test_folder, cache_dir=home, progress=False)
    assert ds.cache_dir.parent == home / "decoded" and un.cache_dir.parent == home / "unlabeled"
    _fail_decoding(monkeypatch)
    assert open_dataset(tree, cache_dir=home, progress=False).index == ds.index
    assert open_unlabeled(test_folder, cache_dir=home, progress=False).names == un.names


# --------------------------------------------------------------------------- stats


def test_dataset_stats(tmp_path, cache_home):
    root = make_tree(tmp_path / "sc", lists=True)
    with pytest.warns(UserWarning):
        stats = dataset_stats(root=root, progress=False)
    assert stats.total_clips == len(SPEAKERS) * (len(WORDS) + 1)
    assert stats.split_source == "lists" and stats.missing_list_entries == 1
    assert stats.class_counts["validation"]["unknown"] == 2 and stats.class_counts["validation"]["yes"] == 2
    assert stats.class_counts["testing"]["yes"] == 2 and stats.class_counts["training"]["silence"] == 0
    assert stats.speaker_counts == {"training": len(SPEAKERS) - 2, "validation": 1, "testing": 1}
    assert stats.word_counts["yes"] == 2 * len(SPEAKERS) and set(stats.word_counts) == set(WORDS)
    assert dict(stats.noise_files) == {"fan.wav": 1.25, "hum.wav": 2.5}
    table = stats.to_table()
    assert "validation_list.txt" in table and "hum.wav" in table and "speakers" in table
    lines = table.splitlines()
    header = next(line for line in lines if line.startswith("class"))
    yes = next(line for line in lines if line.startswith("yes "))
    assert len(header) == len(yes), "columns are aligned"
    assert stats.to_dict()["class_counts"]["testing"]["yes"] == 2
    import json

    json.dumps(stats.to_dict())
