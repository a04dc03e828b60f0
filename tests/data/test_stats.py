"""``DatasetStats``' report: rich tables rendered as plain aligned text, every number formatted as before."""

from __future__ import annotations

import io
import re

from rich.console import Console

from distill.core.labels import CLASSES
from distill.data.splits import SPLITS
from distill.data.stats import DatasetStats

EXPECTED = """\
/data/sc: 1,297 clips; splits from speaker hash rule (no list files)

class     training  validation  testing  total
silence          0           0        0      0
unknown          0           0        7      7
yes          1,234          56        0  1,290
no               0           0        0      0
up               0           0        0      0
down             0           0        0      0
left             0           0        0      0
right            0           0        0      0
on               0           0        0      0
off              0           0        0      0
stop             0           0        0      0
go               0           0        0      0
total        1,234          56        7  1,297
speakers     1,500          20       21  1,541
(silence examples are generated from background noise, not read from word folders)

word folders (2):
  word  class    clips
  bed   unknown      7
  yes   yes      1,290

background noise (2):
  file             seconds
  white_noise.wav     61.0
  hum.wav              2.5

bad files (2):
  file                reason
  yes/x_nohash_0.wav  not 16 kHz mono
  bed/[bold]y.wav     empty

notes:
  - validation_list.txt names 1 missing file

decoded cache: /cache/abc
"""


def _stats(**changes) -> DatasetStats:
    counts = {split: {name: 0 for name in CLASSES} for split in SPLITS}
    counts["training"]["yes"], counts["validation"]["yes"], counts["testing"]["unknown"] = 1234, 56, 7
    fields = dict(root="/data/sc", cache_dir="/cache/abc", total_clips=1297, split_source="hash", class_counts=counts,
                  speaker_counts={"training": 1500, "validation": 20, "testing": 21}, word_counts={"yes": 1290, "bed": 7},
                  noise_files=(("white_noise.wav", 61.0), ("hum.wav", 2.5)),
                  bad_files=(("yes/x_nohash_0.wav", "not 16 kHz mono"), ("bed/[bold]y.wav", "empty")),  # never read as rich markup
                  notes=("validation_list.txt names 1 missing file",))
    return DatasetStats(**{**fields, **changes})


def test_plain_text_report():
    assert _stats().to_table() == EXPECTED


def test_empty_sections_and_list_files():
    text = _stats(noise_files=(), bad_files=(), notes=(), split_source="lists").to_table()
    assert "splits from validation_list.txt / testing_list.txt" in text
    assert "background noise (0):\n  none (silence examples will be digital silence)\n" in text
    assert "bad files (0):\n  none\n" in text and "notes:" not in text
    assert all(line == line.rstrip() for line in text.splitlines())


def test_a_terminal_gets_the_same_cells_styled():
    console = Console(file=io.StringIO(), force_terminal=True, color_system="standard", width=120)
    console.print(_stats().to_rich())
    styled = console.file.getvalue()
    assert "\x1b[" in styled  # bold headers
    plain = re.sub(r"\x1b\[[0-9;]*m", "", styled)
    assert [line.rstrip() for line in plain.splitlines()] == EXPECTED.splitlines()
