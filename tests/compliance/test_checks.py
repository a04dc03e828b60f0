from __future__ import annotations

import shutil

import numpy as np
import pytest

from distill.compliance.checks import _check_clips
from distill.core.config import save_config
from distill.core.errors import BadAudioError
from distill.core.labels import CLIP_SAMPLES
from distill.data.augment import AugmentConfig
from distill.data.examples import MixConfig
from distill.training.fit import CONFIG_FILE, RunConfig, ScheduleConfig


def _saved_run(run, tree, *, skip_bad: bool):
    run.mkdir()
    config = RunConfig(family="student", arch="tcresnet", size="toy", data=str(tree), mix=MixConfig(), augment=AugmentConfig(),
                       schedule=ScheduleConfig(epochs=1), seed=0, skip_bad=skip_bad)
    save_config(config, run / CONFIG_FILE)
    return run


def test_check_clips_open_the_tree_the_way_its_run_did(tiny_tree, tmp_path):
    tree = shutil.copytree(tiny_tree, tmp_path / "tree")
    broken = sorted((tree / "yes").glob("*.wav"))[0]
    broken.write_bytes(b"RIFF but not audio")
    clips = _check_clips(_saved_run(tmp_path / "skipping", tree, skip_bad=True), 5)
    assert clips.shape == (5, CLIP_SAMPLES) and clips.dtype == np.float32
    assert np.all(clips[-1] == 0) and np.abs(clips[:-1]).max() > 0.1  # real clips, then the silent one
    with pytest.raises(BadAudioError, match=broken.name):
        _check_clips(_saved_run(tmp_path / "strict", tree, skip_bad=False), 5)
