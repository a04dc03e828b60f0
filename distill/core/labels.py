"""The 12 competition classes and the Speech Commands word lists.

``CLASSES`` is the index order of every logit vector in the toolkit and of the
exported graph's ``labels_softmax``; it is the order of the TensorFlow tutorial's
``conv_labels.txt`` (silence, unknown, then the ten target words), so a graph
from this toolkit is a drop-in for the tutorial's ``label_wav.py``. Never reorder
it: saved soft labels, checkpoints and exported graphs depend on it.

These are the defaults: :class:`LabelSet` (``KAGGLE`` here) is any word list's classes, ``silence,
unknown`` then the words, K = len(words) + 2; ``--words`` / the recipe's ``data.words`` choose one, and
every artefact records its list (``words`` in its config) so stages refuse another list's artefacts.
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


class LabelSet:
    """A word list and its classes: ``("silence", "unknown", *words)``, the index order of every logit vector.

    ``KAGGLE`` (the ten competition words) is the default everywhere; any other list of word folders gives
    K = len(words) + 2 classes through every stage. Every artefact records its ``words``, and a stage given
    artefacts made with another list refuses them (``refuse_other_words``).
    """

    __slots__ = ("words", "classes", "num_classes", "index")

    def __init__(self, words):
        words = tuple(words)
        check_words(words)
        self.words: tuple[str, ...] = words
        self.classes: tuple[str, ...] = (SILENCE, UNKNOWN, *words)
        self.num_classes = len(self.classes)
        self.index: dict[str, int] = {name: i for i, name in enumerate(self.classes)}

    def word_to_class(self, word: str) -> int:
        """Class index of a word folder: a listed word is itself, anything else is ``unknown``."""
        return self.index.get(word, UNKNOWN_INDEX) if word not in (SILENCE, UNKNOWN) else UNKNOWN_INDEX

    def class_name(self, index: int) -> str:
        return self.classes[index]

    def __eq__(self, other) -> bool:
        return isinstance(other, LabelSet) and other.words == self.words

    def __hash__(self) -> int:
        return hash(self.words)

    def __repr__(self) -> str:
        return f"LabelSet({','.join(self.words)})"

    def describe(self) -> str:
        """``7 classes (zero,one,two,three,four)``: how errors name a list."""
        return f"{self.num_classes} classes ({','.join(self.words)})"


def check_words(words) -> None:
    """Refuse an empty list, a repeated word, a reserved class name or a word that is no folder name."""
    from distill.core.errors import DistillError

    words = tuple(words)
    if not words:
        raise DistillError("--words: give at least one word (e.g. --words yes,no); the default is the ten Kaggle words")
    bad = [w for w in words if not isinstance(w, str) or not w.strip() or w != w.strip() or "/" in w or "," in w or w.startswith(("_", "."))]
    if bad:
        raise DistillError(f"--words: {bad[0]!r} is not a word folder name")
    reserved = [w for w in words if w in (SILENCE, UNKNOWN)]
    if reserved:
        raise DistillError(f"--words: {reserved[0]!r} is a class of its own (every list gets silence and unknown); leave it out")
    repeated = sorted({w for w in words if words.count(w) > 1})
    if repeated:
        raise DistillError(f"--words: {', '.join(repeated)} given more than once; each word once please")


def parse_words(text: str | None) -> tuple[str, ...] | None:
    """``"zero,one, two"`` -> ("zero", "one", "two"), checked; None stays None (the recipe's list)."""
    if text is None:
        return None
    words = tuple(w.strip() for w in str(text).split(","))
    words = () if words == ("",) else words
    check_words(words)
    return words


def refuse_other_words(what: str, have, want, *, fix: str = "") -> None:
    """Raise when ``what`` was made with another word list than the one asked for, naming both."""
    from distill.core.errors import DistillError

    have, want = LabelSet(have), LabelSet(want)
    if have != want:
        raise DistillError(f"{what} was made for {have.describe()}, not {want.describe()}{'; ' + fix if fix else ''}")


def check_words_in_tree(words, tree_words, root) -> None:
    """Refuse listed words with no folder in a dataset (a typo would otherwise train a class with no clips)."""
    from distill.core.errors import DistillError

    missing = [w for w in words if w not in set(tree_words)]
    if missing:
        raise DistillError(f"{root}: no word folder for {', '.join(missing)} (of --words {','.join(words)}); "
                           f"its folders are {', '.join(sorted(tree_words)[:40])}")


KAGGLE = LabelSet(TARGET_WORDS)
