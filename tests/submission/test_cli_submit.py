"""``distill submit`` (with --answer-key) and ``distill label-wav`` through the command line."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from distill.cli import app
from distill.submission import predictor as predictor_module
from distill.submission.scoring import read_submission

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")


def test_cli_submit_and_label_wav(tmp_path, model_dir, test_dir, reference, monkeypatch, n_clips):
    monkeypatch.setattr(predictor_module, "configure_threads", lambda intra, inter: True)  # tests keep 1 thread
    key = tmp_path / "key.csv"
    rows = read_submission(reference.out)
    key.write_text("fname,label\n" + "".join(f"{n},{'yes' if i % 2 else label}\n" for i, (n, label) in enumerate(rows)))
    out = tmp_path / "cli.csv"
    runner = CliRunner()
    result = runner.invoke(app, ["submit", "--model", str(model_dir), "--test-dir", str(test_dir), "--out", str(out),
                                 "--batch-size", "8", "--quiet", "--threads", "1", "--answer-key", str(key)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == reference.out.read_bytes()
    assert f"wrote {out}: {n_clips} rows" in result.output and "score against" in result.output
    agree = sum(1 for i, (_, label) in enumerate(rows) if not i % 2 or label == "yes")
    assert f"accuracy {100 * agree / n_clips:.2f}%" in result.output
    assert re.search(r"class\s+rows\s+share\s+recall\n", result.output)  # one table: counts beside the recall they scored
    wav = sorted(test_dir.glob("clip_*.wav"))[0]
    result = runner.invoke(app, ["label-wav", str(wav), "--model", str(model_dir / "model.pb"), "--top-k", "2"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 2 and all(re.fullmatch(r"[a-z]+ \(score = \d\.\d{5}\)", line) for line in lines)
