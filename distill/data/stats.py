"""``distill data stats``: clips per class and split, speakers, bad files."""

from __future__ import annotations

import collections
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from distill.core.labels import (
    SAMPLE_RATE,
    TARGET_WORDS,
    LabelSet,
    check_words_in_tree,
)
from distill.core.tables import aligned_table, plain_text
from distill.data.cache import open_dataset
from distill.data.index import TESTING_LIST, VALIDATION_LIST
from distill.data.splits import SPLITS


@dataclass(frozen=True)
class DatasetStats:
    """What a Speech Commands tree holds, as decoded (so bad files are known).

    ``class_counts[split][class]`` counts clips (``silence`` is 0: silence examples
    are generated from the background noise); ``speaker_counts[split]`` distinct
    speakers; ``word_counts[word]`` clips per word folder; ``noise_files`` is
    ``(name, seconds)``; ``bad_files`` is ``(relpath, reason)``.
    """

    root: str
    cache_dir: str
    total_clips: int
    split_source: str
    class_counts: dict[str, dict[str, int]]
    speaker_counts: dict[str, int]
    word_counts: dict[str, int]
    noise_files: tuple[tuple[str, float], ...]
    bad_files: tuple[tuple[str, str], ...]
    missing_list_entries: int = 0
    notes: tuple[str, ...] = ()
    words: tuple[str, ...] = TARGET_WORDS  # the target words the classes were counted for (``--words``)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_table(self) -> str:
        """The report ``distill data stats`` prints, as plain aligned text (``to_rich`` for a rich Console)."""
        return plain_text(self.to_rich())

    def to_rich(self):
        """The report as rich renderables (aligned tables between lines of text), one ``Group``."""
        from rich.console import Group
        from rich.padding import Padding
        from rich.text import Text

        source = f"{VALIDATION_LIST} / {TESTING_LIST}" if self.split_source == "lists" else "speaker hash rule (no list files)"
        body = []
        labels = LabelSet(self.words)
        for name in labels.classes:
            counts = [self.class_counts[s][name] for s in SPLITS]
            body.append([name, *map(_n, counts), _n(sum(counts))])
        totals = [sum(self.class_counts[s].values()) for s in SPLITS]
        body.append(["total", *map(_n, totals), _n(sum(totals))])
        body.append(["speakers", *(_n(self.speaker_counts[s]) for s in SPLITS), _n(sum(self.speaker_counts.values()))])

        def line(text: str = "") -> Text:
            return Text(text, no_wrap=True, overflow="ignore")

        def indented(table) -> Padding:
            return Padding(table, (0, 0, 0, 2), expand=False)

        parts = [line(f"{self.root}: {self.total_clips:,} clips; splits from {source}"), line(),
                 aligned_table(["class", *SPLITS, "total"], body, right_from=1),
                 line("(silence examples are generated from background noise, not read from word folders)"),
                 line(), line(f"word folders ({len(self.word_counts)}):"),
                 indented(aligned_table(["word", "class", "clips"], [[w, labels.classes[labels.word_to_class(w)], _n(c)] for w, c in sorted(self.word_counts.items())], right_from=2)),
                 line(), line(f"background noise ({len(self.noise_files)}):")]
        if self.noise_files:
            parts.append(indented(aligned_table(["file", "seconds"], [[n, f"{s:.1f}"] for n, s in self.noise_files], right_from=1)))
        else:
            parts.append(line("  none (silence examples will be digital silence)"))
        parts += [line(), line(f"bad files ({len(self.bad_files)}):")]
        if self.bad_files:
            parts.append(indented(aligned_table(["file", "reason"], [[p, r] for p, r in self.bad_files], right_from=2)))
        else:
            parts.append(line("  none"))
        if self.notes:
            parts += [line(), line("notes:"), *(line(f"  - {note}") for note in self.notes)]
        parts += [line(), line(f"decoded cache: {self.cache_dir}")]
        return Group(*parts)


def _n(value: int) -> str:
    return f"{value:,}"




def dataset_stats(*, root: Path, skip_bad: bool = False, cache_dir: Path | None = None, progress: bool = True,
                  words: tuple[str, ...] | None = None) -> DatasetStats:
    """Counts per split, class, speaker and word folder, noise files and bad files of a tree.

    ``words``: the target words the classes are counted for (None: the Kaggle ten); a listed word with no
    folder in the tree is refused.

    Opens (building if needed) the decoded cache, so bad files are found and the
    next command starts from a warm cache.
    """
    ds = open_dataset(Path(root), cache_dir=cache_dir, skip_bad=skip_bad, progress=progress)
    index = ds.index
    label_set = LabelSet(words if words is not None else TARGET_WORDS)
    if words is not None:
        check_words_in_tree(label_set.words, set(index.words), ds.root)
    labels = index.labels_for(label_set)
    class_counts: dict[str, dict[str, int]] = {}
    speaker_counts: dict[str, int] = {}
    for split in SPLITS:
        pos = index.positions(split)
        counts = np.bincount(labels[pos], minlength=label_set.num_classes)
        class_counts[split] = {name: int(counts[i]) for i, name in enumerate(label_set.classes)}
        speaker_counts[split] = len({index.speakers[i] for i in pos})
    word_counts = {w: 0 for w in ds.word_folders}
    word_counts.update(collections.Counter(index.words))
    return DatasetStats(
        root=str(ds.root),
        cache_dir=str(ds.cache_dir),
        total_clips=len(index),
        split_source=ds.split_source,
        class_counts=class_counts,
        speaker_counts=speaker_counts,
        word_counts=dict(sorted(word_counts.items())),
        noise_files=tuple((name, len(a) / SAMPLE_RATE) for name, a in zip(ds.noise_names, ds.noise)),
        bad_files=ds.bad_files,
        missing_list_entries=ds.missing_list_entries,
        notes=ds.notes,
        words=label_set.words,
    )
