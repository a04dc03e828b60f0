"""A folder reproduces its result wherever its data lies: artefacts compare data by content, not by path."""

from __future__ import annotations

import re
import shutil
from dataclasses import replace

import numpy as np
import pytest

from distill.core.config import load_config
from distill.core.errors import DistillError
from distill.data.cache import data_difference, open_dataset
from distill.training.fit import RunConfig, ScheduleConfig, fit
from distill.training.soft_labels import predict_config, refuse_other_predictions
from distill.training.student_fit import fit_student

SCHEDULE = ScheduleConfig(epochs=1, batch_size=8, checkpoint_every_steps=0)


def _copy(tree, target):
    """The tree's files under another path, with new modification times (copyfile keeps no metadata)."""
    return shutil.copytree(tree, target, copy_function=shutil.copyfile)


def _changed(tree, target):
    """A copy with one clip's samples altered (same name, same size); returns (copy, the clip's name)."""
    copy = _copy(tree, target)
    clip = sorted((copy / "yes").glob("*.wav"))[0]
    data = bytearray(clip.read_bytes())
    data[-2000:] = bytes(2000)  # the last 1000 samples of its data chunk go silent
    clip.write_bytes(bytes(data))
    return copy, f"yes/{clip.name}"


def test_a_copied_tree_is_the_same_data_and_a_changed_clip_is_refused_by_name(tiny_tree, tiny_soft_labels, teacher_runs, tiny_unlabeled, tmp_path):
    copy = _copy(tiny_tree, tmp_path / "copy")
    original, copied = open_dataset(tiny_tree, progress=False), open_dataset(copy, progress=False)
    assert original.fingerprint != copied.fingerprint  # the cache key sees new times: a cache of its own
    assert original.content_fingerprint == copied.content_fingerprint

    # a student made from the original tree with the original's soft labels...
    student = tmp_path / "student"
    fit_student(arch="dscnn", size="toy", data=tiny_tree, out=student, soft_labels=tiny_soft_labels, schedule=SCHEDULE, progress=False)
    made = load_config(RunConfig, student / "config.json")
    assert made.data == str(tiny_tree.resolve()) and made.data_content == original.content_fingerprint  # the path stays, for information
    # ... resumes on the copy, with the same soft labels; and the soft labels resume with the copy too
    fit_student(arch="dscnn", size="toy", data=copy, out=student, soft_labels=tiny_soft_labels, schedule=SCHEDULE, resume=True, progress=False)
    refuse_other_predictions(tiny_soft_labels, predict_config(teacher_runs=teacher_runs, data=copy, views=2, unlabeled=tiny_unlabeled))

    changed, clip = _changed(tiny_tree, tmp_path / "changed")
    with pytest.raises(DistillError, match=rf"{re.escape(str(tiny_soft_labels))} was made from other data than .*the audio of 1 clip\(s\): {re.escape(clip)}; predict soft labels"):
        fit_student(arch="dscnn", size="toy", data=changed, out=tmp_path / "other", soft_labels=tiny_soft_labels, schedule=SCHEDULE, progress=False)
    with pytest.raises(DistillError, match=rf"--resume with a different config \(changed: data\); the run was made from other data .*{re.escape(clip)}"):
        fit(config=replace(made, data=str(changed)), run_dir=student, resume=True, progress=False)
    with pytest.raises(DistillError, match=r"holds soft labels made with other data;"):
        refuse_other_predictions(tiny_soft_labels, predict_config(teacher_runs=teacher_runs, data=changed, views=2, unlabeled=tiny_unlabeled))


def test_data_difference_names_what_differs_and_falls_back_to_paths_for_old_artefacts(tiny_tree, tmp_path):
    original = open_dataset(tiny_tree, progress=False)
    copy = open_dataset(_copy(tiny_tree, tmp_path / "copy"), progress=False)
    assert data_difference(str(tiny_tree), original.content_fingerprint, copy) is None
    # an artefact recorded before content fingerprints: only its path can match
    assert data_difference(str(tiny_tree), None, original) is None
    assert "only the path can tell" in data_difference(str(tiny_tree), None, copy)

    changed_root, clip = _changed(tiny_tree, tmp_path / "changed")
    changed = open_dataset(changed_root, progress=False)
    assert changed.content_fingerprint != original.content_fingerprint
    assert f"the audio of 1 clip(s): {clip}" in data_difference(str(tiny_tree), original.content_fingerprint, changed)
    gone = tmp_path / "gone"
    _copy(tiny_tree, gone)
    shutil.rmtree(gone)
    assert "cannot be read to compare clip by clip" in data_difference(str(gone), original.content_fingerprint, changed)
    # the same samples with another meaning: a clip moved to another word's folder is other data
    renamed = _copy(tiny_tree, tmp_path / "renamed")
    moved = sorted((renamed / "yes").glob("*.wav"))[0]
    (renamed / "bird").mkdir()
    shutil.move(moved, renamed / "bird" / moved.name)
    relabelled = open_dataset(renamed, progress=False)
    assert np.array_equal(np.sort(relabelled.audio, axis=0), np.sort(original.audio, axis=0))
    assert relabelled.content_fingerprint != original.content_fingerprint
    assert f"1 clip(s) only in the first (e.g. yes/{moved.name})" in data_difference(str(tiny_tree), original.content_fingerprint, relabelled)
