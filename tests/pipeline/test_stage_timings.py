"""distill run's stage timer: an interrupted attempt's time is kept and a resume adds to it; a running stage writes its time so far."""

from __future__ import annotations

import json
import time

import pytest

from distill.pipeline import run as run_module


def _timings(out):
    return json.loads((out / run_module.TIMINGS_FILE).read_text())


def test_an_interrupted_stage_keeps_its_time_and_a_resume_adds_to_it(tmp_path):
    stages = run_module._Stages(tmp_path, log=lambda _: None)

    def interrupted():
        time.sleep(0.05)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        stages("student x", lambda: False, interrupted)
    first = _timings(tmp_path)["student x"]
    assert first >= 0.0 and "student x" in stages.timings
    resumed = run_module._Stages(tmp_path, log=lambda _: None)  # a new `distill run` reads what the killed one wrote
    resumed("student x", lambda: False, lambda: time.sleep(0.15))
    assert _timings(tmp_path)["student x"] >= first + 0.1


def test_a_running_stage_writes_its_time_so_far(tmp_path, monkeypatch):
    monkeypatch.setattr(run_module, "TIMING_HEARTBEAT_S", 0.02)
    stages = run_module._Stages(tmp_path, log=lambda _: None)
    seen = []

    def work():
        time.sleep(0.2)  # several beats: a SIGKILL here would leave this on disk
        seen.append(_timings(tmp_path).get("teachers"))

    stages("teachers", lambda: False, work)
    assert seen[0] is not None and seen[0] >= 0.1
    assert _timings(tmp_path)["teachers"] >= seen[0]


def test_a_complete_stage_is_skipped_and_not_timed(tmp_path):
    ran = []
    stages = run_module._Stages(tmp_path, log=lambda _: None)
    stages("export", lambda: True, lambda: ran.append(1))
    assert ran == [] and not (tmp_path / run_module.TIMINGS_FILE).exists()
