"""Shared test setup: quiet, seeded, and thread-limited TensorFlow (CI has 2 cores)."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")



def _limit_tensorflow_threads() -> None:
    try:
        import tensorflow as tf
    except ImportError:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # already initialised by an earlier import
        pass


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    yield


def pytest_configure(config):
    _limit_tensorflow_threads()


# ---------------------------------------------------------------- tiny learnable dataset

TINY_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "bed", "cat")


def _speakers_for_every_split(per_split: int) -> list[str]:
    from distill.data.splits import SPLITS, which_set

    chosen: dict[str, list[str]] = {s: [] for s in SPLITS}
    i = 0
    while any(len(v) < per_split for v in chosen.values()):
        speaker = f"{(i * 2654435761) % 2**32:08x}"
        split = which_set(f"{speaker}_nohash_0.wav")
        if len(chosen[split]) < per_split:
            chosen[split].append(speaker)
        i += 1
    return [s for split in SPLITS for s in chosen[split]]


def write_tiny_tree(root, *, per_split: int = 3, seed: int = 0):
    """A Speech Commands-shaped tree where each word is a distinct chirp: learnable in a few steps."""
    from distill.core.labels import BACKGROUND_NOISE_DIR

    rng = np.random.default_rng(seed)
    t = np.arange(16000) / 16000.0
    speakers = _speakers_for_every_split(per_split)
    for w, word in enumerate(TINY_WORDS):
        (root / word).mkdir(parents=True, exist_ok=True)
        for s, speaker in enumerate(speakers):
            f0 = 300.0 + 180.0 * w + 20.0 * (s % 3)
            env = np.exp(-((t - 0.5) ** 2) / 0.02)
            x = 0.5 * env * np.sin(2 * np.pi * (f0 * t + 200.0 * (w % 3) * t * t)) + 0.01 * rng.standard_normal(16000)
            _write(root / word / f"{speaker}_nohash_0.wav", x)
    (root / BACKGROUND_NOISE_DIR).mkdir(exist_ok=True)
    _write(root / BACKGROUND_NOISE_DIR / "white_noise.wav", 0.1 * rng.standard_normal(16000 * 3))
    return root


def _write(path, x):
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())


@pytest.fixture(scope="session")
def tiny_tree(tmp_path_factory):
    return write_tiny_tree(tmp_path_factory.mktemp("tiny_speech_commands"))


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    # never write decoded caches into the user's ~/.cache during tests
    monkeypatch.setenv("DISTILL_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "distill-cache"))


@pytest.fixture(scope="session")
def teacher_runs(tiny_tree, tmp_path_factory):
    """Two toy teachers of different families, trained for one epoch on the tiny tree."""
    from distill.training.fit import RunConfig, ScheduleConfig, fit

    root = tmp_path_factory.mktemp("teachers")
    runs = []
    for i, arch in enumerate(("resnet", "wavecnn")):
        config = RunConfig(family="teacher", arch=arch, size="toy", data=str(tiny_tree), schedule=ScheduleConfig(epochs=1, batch_size=8), seed=i)
        runs.append(fit(config=config, run_dir=root / arch, progress=False).run_dir)
    return runs


@pytest.fixture(scope="session")
def tiny_soft_labels(teacher_runs, tiny_tree, tiny_unlabeled, tmp_path_factory):
    from distill.training.soft_labels import predict_soft_labels

    out = tmp_path_factory.mktemp("soft") / "soft"
    predict_soft_labels(teacher_runs=teacher_runs, data=tiny_tree, out=out, views=2, unlabeled=tiny_unlabeled, progress=False)
    return out


@pytest.fixture(scope="session")
def toy_student_run(tiny_tree, tiny_soft_labels, tmp_path_factory):
    """A distilled toy DS-CNN student (one epoch) on the tiny tree."""
    from distill.training.fit import ScheduleConfig
    from distill.training.student_fit import fit_student

    out = tmp_path_factory.mktemp("student") / "dscnn"
    fit_student(arch="dscnn", size="toy", data=tiny_tree, out=out, soft_labels=tiny_soft_labels,
                schedule=ScheduleConfig(epochs=1, batch_size=8, checkpoint_every_steps=0), progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_unlabeled(tiny_tree, tmp_path_factory):
    """An unlabeled clip_*.wav folder made from the tiny tree's clips (mostly unknown words, like Kaggle's)."""
    import shutil

    folder = tmp_path_factory.mktemp("kaggle_test")
    words = sorted(tiny_tree.glob("bed/*.wav")) + sorted(tiny_tree.glob("cat/*.wav")) + sorted(tiny_tree.glob("yes/*.wav"))[:3]
    for i, wav in enumerate(words):
        shutil.copy(wav, folder / f"clip_{i:09x}.wav")
    return folder
