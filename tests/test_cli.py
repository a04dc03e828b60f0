"""The CLI is installed, prints help for every group and its version."""

from __future__ import annotations

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
