"""The CLI is installed, prints help for every group and its version."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from distill import __version__
from distill.cli import app

runner = CliRunner()


def test_version_and_classes():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output
    result = runner.invoke(app, ["classes"])
    assert result.exit_code == 0
    assert result.output.splitlines()[0] == "0\tsilence" and result.output.splitlines()[-1] == "11\tgo"


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "distill", "--help"], capture_output=True, text=True, check=True)
    assert "Usage" in out.stdout


def test_data_stats_cli(tiny_tree):
    result = runner.invoke(app, ["data", "stats", str(tiny_tree)])
    assert result.exit_code == 0, result.output
    assert "yes" in result.output and "white_noise.wav" in result.output
    assert "\x1b" not in result.output  # not a terminal: plain aligned text
    header = next(line for line in result.output.splitlines() if line.startswith("class "))
    assert header.split() == ["class", "training", "validation", "testing", "total"]


def test_missing_dataset_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["data", "stats", str(tmp_path / "nope")])
    assert result.exit_code != 0 and "nope" in str(result.exception)


def test_student_calibrate_export_submit_through_the_cli(tiny_tree, tiny_soft_labels, tiny_unlabeled, tmp_path):
    def ok(*args):
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exit_code == 0, (result.output, result.exception)
        return result.output

    out = ok("student", "fit", "--arch", "dscnn", "--size", "toy", "--data", tiny_tree, "--soft-labels", tiny_soft_labels,
             "--out", tmp_path / "student", "--epochs", "1", "--batch-size", "8", "--max-mb", "1", "--weight-bits", "8",
             "--mixup", "0.2", "--quiet")
    assert "footprint" in out and "at 8 bits" in out
    saved = json.loads((tmp_path / "student" / "config.json").read_text())["config"]
    assert saved["schedule"]["mixup_alpha"] == 0.2
    ok("calibrate", "--run", tmp_path / "student", "--unlabeled", tiny_unlabeled, "--out", tmp_path / "cal", "--cv", "2", "--quiet",
       "--expected-mix", "unknown=0.53", "--expected-mix", "silence=0.09")
    calibration = json.loads((tmp_path / "cal" / "calibration.json").read_text())
    assert calibration["test_prior"]["unknown"] > 0.3  # a few clips cannot pull it far from the stated mix
    assert json.loads((tmp_path / "cal" / "config.json").read_text())["config"]["expected_mix"] == {"unknown": 0.53, "silence": 0.09}
    malformed = runner.invoke(app, ["calibrate", "--run", str(tmp_path / "student"), "--unlabeled", str(tiny_unlabeled), "--expected-mix", "unknown"])
    assert malformed.exit_code != 0 and "CLASS=SHARE" in str(malformed.exception)
    out = ok("export", "--run", tmp_path / "student", "--calibration", tmp_path / "cal", "--out", tmp_path / "export")
    assert "batch norms folded" in out
    out = ok("submit", "--model", tmp_path / "export", "--test-dir", tiny_unlabeled, "--out", tmp_path / "submission.csv", "--quiet")
    rows = (tmp_path / "submission.csv").read_text().splitlines()
    assert rows[0] == "fname,label" and len(rows) == 1 + len(list(tiny_unlabeled.glob("clip_*.wav")))
    out = ok("label-wav", "--model", tmp_path / "export", next(tiny_unlabeled.glob("clip_*.wav")))
    assert "score =" in out
    both = runner.invoke(app, ["student", "fit", "--arch", "dscnn", "--data", str(tiny_tree), "--out", str(tmp_path / "x"),
                               "--no-teachers", "--soft-labels", str(tiny_soft_labels)])
    assert both.exit_code != 0 and "exactly one of" in str(both.exception)
    negative = runner.invoke(app, ["student", "fit", "--arch", "dscnn", "--data", str(tiny_tree), "--out", str(tmp_path / "y"),
                                   "--no-teachers", "--mixup", "-1"])
    assert negative.exit_code == 2 and "--mixup" in negative.output and not (tmp_path / "y").exists()  # refused by the option's bound
    keep = runner.invoke(app, ["teachers", "train", "--arch", "resnet", "--data", str(tiny_tree), "--out", str(tmp_path / "z"), "--keep", "average"])
    assert keep.exit_code != 0 and "--keep (teachers.keep): must be one of best, last, got 'average'" in str(keep.exception)
    assert not (tmp_path / "z").exists()
    clean_masked = runner.invoke(app, ["student", "fit", "--arch", "dscnn", "--data", str(tiny_tree), "--out", str(tmp_path / "w"),
                                       "--no-teachers", "--no-augment", "--view-masks"])
    assert clean_masked.exit_code != 0 and "cannot go with --no-augment" in str(clean_masked.exception)
    unmasked_views = runner.invoke(app, ["student", "fit", "--arch", "dscnn", "--data", str(tiny_tree), "--out", str(tmp_path / "w"),
                                         "--soft-labels", str(tiny_soft_labels), "--view-masks"])
    assert unmasked_views.exit_code != 0 and "teachers predict --view-masks" in str(unmasked_views.exception)
    assert not (tmp_path / "w").exists()


def test_user_errors_exit_2_with_a_message_not_a_traceback(tmp_path):
    out = subprocess.run([sys.executable, "-m", "distill", "data", "stats", str(tmp_path / "missing")], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.startswith("error:") and "missing" in out.stderr and "Traceback" not in out.stderr


def test_importing_the_cli_does_not_import_tensorflow():
    # data commands must start fast and print no TensorFlow log lines
    code = "import sys, distill.cli; print('tensorflow' in sys.modules or 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    from distill.cli.options import FRONTEND_NAMES
    from distill.layers.frontend import FRONTEND_PRESETS

    assert FRONTEND_NAMES == tuple(FRONTEND_PRESETS) and set(FRONTEND_NAMES) >= {"logmel", "mfcc"}
