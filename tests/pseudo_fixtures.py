"""Hand-made pseudo-label fixtures shared by the pseudo-label and review tests: 8 clips, 3 teachers, 2 views."""

from __future__ import annotations

import csv
import wave
from pathlib import Path

import numpy as np

from distill.core.config import save_config
from distill.core.labels import CLASS_INDEX
from distill.core.metrics import softmax
from distill.training.pseudo import select_pseudo_labels
from distill.training.soft_labels import PredictConfig

TEACHERS = ("t_a", "t_b", "t_c")
# clip -> (each teacher's top class, logit of that class; the other 11 logits are 0)
# softmax of L against eleven zeros: L=8 -> 0.9963, 6 -> 0.9734, 5 -> 0.9310, 4 -> 0.8323, 2 -> 0.4018
CLIPS = {
    "clip_000.wav": (("yes", "yes", "yes"), 8.0),
    "clip_001.wav": (("no", "no", "no"), 2.0),  # unsure: below 0.6
    "clip_002.wav": (("yes", "yes", "no"), 8.0),  # confident ensemble (0.66) but 2/3 agreement
    "clip_003.wav": (("unknown", "unknown", "unknown"), 8.0),
    "clip_004.wav": (("unknown", "unknown", "unknown"), 6.0),
    "clip_005.wav": (("yes", "yes", "yes"), 5.0),
    "clip_006.wav": (("silence", "silence", "silence"), 8.0),
    "clip_007.wav": (("go", "go", "go"), 4.0),
}


def write_wav(path: Path, x: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())


def make_soft_labels(root: Path) -> tuple[Path, Path]:
    """(soft-label folder, unlabeled folder): 8 short tone clips and 3 teachers' hand-made logits, 2 views."""
    folder = root / "unlabeled"
    folder.mkdir(parents=True)
    t = np.arange(16000) / 16000.0
    for i, name in enumerate(CLIPS):
        n = 16000 if i % 3 else 12000  # some clips shorter than 1 s
        envelope = np.exp(-((t[:n] - 0.4) ** 2) / 0.01)
        phase = 2 * np.pi * ((120 + 15 * i) * t[:n] + 60 * t[:n] ** 2)  # a rising voice-like pitch
        voiced = sum(np.sin(k * phase) / k for k in range(1, 6))  # and its harmonics
        write_wav(folder / name, 0.25 * envelope * voiced)
    soft = root / "soft"
    (soft / "unlabeled").mkdir(parents=True)
    save_config(PredictConfig(teachers=tuple(str(root / "teachers" / n) for n in TEACHERS), data=str(root / "data"), views=2, splits=(), unlabeled=str(folder)), soft / "config.json")
    (soft / "unlabeled" / "names.txt").write_text("".join(n + "\n" for n in CLIPS))
    for k, teacher in enumerate(TEACHERS):
        logits = np.zeros((2, len(CLIPS), 12), np.float16)
        logits[1, :, CLASS_INDEX["stop"]] = 20.0  # view 1 (augmented) says "stop": selection must ignore it
        for m, (tops, strength) in enumerate(CLIPS.values()):
            logits[0, m, CLASS_INDEX[tops[k]]] = strength
        np.save(soft / "unlabeled" / f"logits_{teacher}.npy", logits)
    return soft, folder


def make_pseudo(root: Path) -> Path:
    """A pseudo-label CSV holding all 8 clips (for review tests)."""
    soft, _ = make_soft_labels(root)
    out = root / "pseudo.csv"
    select_pseudo_labels(soft_labels=soft, out=out, threshold=0.3, min_agreement=0.5)
    return out


def expected_probs() -> np.ndarray:
    logits = np.zeros((len(TEACHERS), len(CLIPS), 12))
    for m, (tops, strength) in enumerate(CLIPS.values()):
        for k in range(len(TEACHERS)):
            logits[k, m, CLASS_INDEX[tops[k]]] = strength
    return softmax(logits).mean(axis=0)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# Word lists for the any-K review tests: 7 classes (number keys) and 20 (more than the twelve keys: a searchable list)
SEVEN_WORDS = ("zero", "one", "two", "three", "four")
TWENTY_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila")


def words_clips(words: tuple[str, ...]) -> dict[str, tuple[tuple[str, str, str], float]]:
    """``CLIPS`` for another word list: clip m is class 3m+1 mod K (so a 20-class list reaches classes past the
    twelfth), the third teacher of clip_002 disagrees; every clip is confident enough to be kept."""
    classes = ("silence", "unknown", *words)
    out = {}
    for m in range(8):
        top = classes[(3 * m + 1) % len(classes)]
        other = classes[(3 * m + 2) % len(classes)] if m == 2 else top
        out[f"clip_{m:03d}.wav"] = ((top, top, other), (8.0, 6.0, 9.0, 7.0, 5.0, 10.0, 6.5, 5.5)[m])
    return out


def make_pseudo_for_words(root: Path, words: tuple[str, ...]) -> Path:
    """A pseudo-label CSV of 8 clips for ``words`` (K = len(words) + 2 ``p_`` columns), made as ``make_pseudo`` does."""
    from distill.core.labels import LabelSet

    labels = LabelSet(words)
    clips = words_clips(words)
    folder = root / "unlabeled"
    folder.mkdir(parents=True)
    t = np.arange(16000) / 16000.0
    for i, name in enumerate(clips):
        phase = 2 * np.pi * ((140 + 10 * i) * t + 40 * t ** 2)
        write_wav(folder / name, 0.25 * np.exp(-((t - 0.5) ** 2) / 0.02) * np.sin(phase))
    soft = root / "soft"
    (soft / "unlabeled").mkdir(parents=True)
    save_config(PredictConfig(teachers=tuple(str(root / "teachers" / n) for n in TEACHERS), data=str(root / "data"), views=1, splits=(),
                              unlabeled=str(folder), words=labels.words), soft / "config.json")
    (soft / "unlabeled" / "names.txt").write_text("".join(n + "\n" for n in clips))
    for k, teacher in enumerate(TEACHERS):
        logits = np.zeros((1, len(clips), labels.num_classes), np.float16)
        for m, (tops, strength) in enumerate(clips.values()):
            logits[0, m, labels.index[tops[k]]] = strength
        np.save(soft / "unlabeled" / f"logits_{teacher}.npy", logits)
    out = root / "pseudo.csv"
    select_pseudo_labels(soft_labels=soft, out=out, threshold=0.3, min_agreement=0.5)
    return out
