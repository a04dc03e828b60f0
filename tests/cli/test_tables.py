"""Commands print their tables through rich: styled on a terminal, plain aligned text (no ANSI codes) otherwise."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from distill.cli import app
from distill.cli.export import check_table
from distill.core.tables import plain_text

runner = CliRunner()

CHECK_LINES = [
    {"name": "1. file size < 5 MB", "passed": True, "value": "272,165 bytes (0.26 MiB)", "detail": ""},
    {"name": "5. Raspberry Pi 3 estimate <= 175 ms", "passed": False, "value": "18.4 ms (+-17%)", "detail": "method [x86-ops] " + "word " * 40},
]


def test_check_table_is_plain_and_bounded():
    text = plain_text(check_table(CHECK_LINES))
    lines = text.splitlines()
    assert lines[0].split() == ["check", "result", "value"] and set(lines[1]) == {"─"}
    assert lines[2].split()[-5:] == ["PASS", "272,165", "bytes", "(0.26", "MiB)"]
    assert "FAIL" in lines[3] and lines[3].endswith("18.4 ms (+-17%)")
    assert "method [x86-ops] word" in lines[4]  # the detail below its value, markup-looking text kept as is
    assert max(map(len, lines)) <= 160 and len(lines) > 5  # a long detail wraps inside its column
    assert "\x1b" not in text


def test_teachers_report_through_the_cli(tiny_soft_labels, tmp_path, monkeypatch):
    args = ["teachers", "report", str(tiny_soft_labels), "--out", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output  # not a terminal: plain text
    lines = result.output.splitlines()
    assert lines[0] == "accuracy, clean view" and lines[1].split() == ["model", "testing", "validation"]
    rows = json.loads((tmp_path / "report.json").read_text())["rows"]
    ensemble = next(line for line in lines if line.startswith("ensemble "))
    expected = {r["split"]: f"{100 * r['accuracy']:.2f}%" for r in rows if r["model"] == "ensemble"}
    assert ensemble.split()[1:] == [expected["testing"], expected["validation"]]
    assert (tmp_path / "report.txt").read_text().rstrip("\n") in result.output

    monkeypatch.setenv("FORCE_COLOR", "1")  # what a terminal gets: styles, same cells
    styled = runner.invoke(app, args)
    assert styled.exit_code == 0 and "\x1b[" in styled.output and "accuracy, clean view" in styled.output
