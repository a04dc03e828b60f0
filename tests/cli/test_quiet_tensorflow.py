"""TensorFlow's start-up log lines stay off the terminal unless ``distill --verbose``; distill's own output stays."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from distill._entry import DEFAULT_LEVEL, drop_tensorflow_log_lines, verbose_requested

# what TensorFlow prints at import on x86 (absl pre-init notice, oneDNN notice, cpu_feature_guard)
NOISE = re.compile(r"^(I0000|W0000|WARNING: All log messages before absl|.*(oneDNN custom operations|cpu_feature_guard))", re.MULTILINE)


def test_verbose_is_a_root_option_only():
    assert verbose_requested(["--verbose", "teachers", "train"])
    assert verbose_requested(["--version", "--verbose"])
    assert not verbose_requested(["teachers", "train", "--verbose"])  # after the command: not the root option
    assert not verbose_requested(["data", "stats", "--", "--verbose"])
    assert not verbose_requested([])


def test_log_lines_below_the_level_are_dropped_and_the_rest_kept_byte_for_byte():
    absl_info = b"I0000 00:00:1796427352.077293   32167 port.cc:153] oneDNN custom operations are on. You may see ...\n"
    preamble = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    guard = (b"I0000 00:00:1796427352.114201   32167 cpu_feature_guard.cc:227] This TensorFlow binary is optimized ...\n"
             b"To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.\n")
    old_format = b"2024-01-25 23:03:23.248680: I tensorflow/core/util/port.cc:110] oneDNN custom operations are on.\n"
    warning = b"W0000 00:00:1796427352.2   32167 dso_loader.cc:64] Could not load dynamic library 'libcudart.so.12'\n"
    error = b"E0000 00:00:1796427352.3   32167 cuda_dnn.cc:8579] Unable to register cuDNN factory\n"
    ours = b"/work/distill/data/wav.py:40: UserWarning: clip.wav is 8 kHz\n  warnings.warn(message)\n"
    progress = b"synth 10%\rsynth 50%\rsynth 100%\n"
    data = preamble + absl_info + ours + guard + progress + old_format + warning + error + b"tail without newline"
    assert drop_tensorflow_log_lines(data, 2) == ours + progress + error + b"tail without newline"
    assert drop_tensorflow_log_lines(data, 1) == ours + progress + warning + error + b"tail without newline"
    assert drop_tensorflow_log_lines(data, 0) == data  # TF_CPP_MIN_LOG_LEVEL=0: the user wants everything
    assert drop_tensorflow_log_lines(data, 3) == ours + progress + b"tail without newline"


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    # a user's shell: none of the test suite's TensorFlow settings, none of a parent distill's
    clean = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "DISTILL_QUIET_TF")}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env={**clean, **env}, timeout=300)


def test_tensorflow_commands_are_quiet(tmp_path):
    # label-wav imports TensorFlow before it finds out the model is missing: a cheap command that loads it
    command = ["-m", "distill", "label-wav", "--model", str(tmp_path / "missing.pb"), str(tmp_path / "clip.wav")]
    quiet = _run(command)
    assert quiet.returncode == 2 and quiet.stderr.startswith("error:") and "missing.pb" in quiet.stderr
    assert not NOISE.search(quiet.stderr), quiet.stderr


@pytest.mark.slow  # 15 s: three more processes that import TensorFlow
def test_verbose_and_a_users_own_level_keep_what_tensorflow_prints(tmp_path):
    command = ["-m", "distill", "label-wav", "--model", str(tmp_path / "missing.pb"), str(tmp_path / "clip.wav")]
    # what TensorFlow prints here on its own decides what --verbose, or a user's own TF_CPP_MIN_LOG_LEVEL=0, must keep
    plain = _run(["-c", "import tensorflow"])
    verbose = _run(["-m", "distill", "--verbose", *command[2:]])
    assert verbose.returncode == 2 and "missing.pb" in verbose.stderr
    assert bool(NOISE.search(verbose.stderr)) == bool(NOISE.search(plain.stderr)), (plain.stderr, verbose.stderr)
    own_level = _run(command, TF_CPP_MIN_LOG_LEVEL="0")
    assert own_level.returncode == 2
    assert bool(NOISE.search(own_level.stderr)) == bool(NOISE.search(plain.stderr)), own_level.stderr


def test_a_worker_process_of_a_quiet_command_filters_its_own_import():
    # what a joblib/dask worker inherits from `distill ...`: the level and the flag; importing distill's entry module
    # (as re-importing the console script does) is enough, and TensorFlow's Python loggers are quieted too
    code = ("import logging, distill._entry, tensorflow; from absl import logging as absl_logging; "
            "print(logging.getLogger('tensorflow').level, absl_logging.get_absl_logger().level)")
    worker = _run(["-c", code], TF_CPP_MIN_LOG_LEVEL=DEFAULT_LEVEL, DISTILL_QUIET_TF="1")
    assert worker.returncode == 0, worker.stderr
    assert worker.stdout.split() == ["40", "40"]  # logging.ERROR
    assert not NOISE.search(worker.stderr), worker.stderr
