"""The 12 competition classes and the Speech Commands word lists.

``CLASSES`` is the index order of every logit vector in the toolkit and of the
exported graph's ``labels_softmax``; it is the order of the TensorFlow tutorial's
``conv_labels.txt`` (silence, unknown, then the ten target words), so a graph
from this toolkit is a drop-in for the tutorial's ``label_wav.py``. Never reorder
it: saved soft labels, checkpoints and exported graphs depend on it.
"""

from __future__ import annotations

SILENCE = "silence"
UNKNOWN = "unknown"
TARGET_WORDS: tuple[str, ...] = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
CLASSES: tuple[str, ...] = (SILENCE, UNKNOWN, *TARGET_WORDS)
NUM_CLASSES = len(CLASSES)
CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(CLASSES)}
SILENCE_INDEX = CLASS_INDEX[SILENCE]
UNKNOWN_INDEX = CLASS_INDEX[UNKNOWN]

# The 30 word folders of Speech Commands v0.01 (v0.02 adds five more; any
# non-target word, from either version, maps to ``unknown``).
V001_WORDS: tuple[str, ...] = (
    "bed", "bird", "cat", "dog", "down", "eight", "five", "four", "go", "happy",
    "house", "left", "marvin", "nine", "no", "off", "on", "one", "right", "seven",
    "sheila", "six", "stop", "three", "tree", "two", "up", "wow", "yes", "zero",
)
V002_EXTRA_WORDS: tuple[str, ...] = ("backward", "follow", "forward", "learn", "visual")
BACKGROUND_NOISE_DIR = "_background_noise_"
SAMPLE_RATE = 16_000
CLIP_SAMPLES = 16_000


def word_to_class(word: str) -> int:
    """Class index of a word folder: a target word is itself, anything else is ``unknown``."""
    return CLASS_INDEX[word] if word in TARGET_WORDS else UNKNOWN_INDEX


def class_name(index: int) -> str:
    return CLASSES[index]
