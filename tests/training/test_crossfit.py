"""Cross-fitted teachers: folds follow speakers, runs leave their fold out, predict routes by fold."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from distill.cli import app
from distill.core.errors import DistillError
from distill.core.metrics import softmax
from distill.data.cache import open_dataset
from distill.data.examples import make_examples, materialize
from distill.training.crossfit import HoldoutConfig, example_folds, fold_runs, speaker_fold
from distill.training.fit import AugmentedSource, RunConfig, ScheduleConfig, load_run, make_predictor
from distill.training.soft_labels import load_soft_labels, predict_soft_labels
from distill.training.student_fit import fit_student
from distill.training.teacher_fit import train_teachers

runner = CliRunner()


@pytest.fixture(scope="module")
def fold_group(tiny_tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("crossfit") / "teachers"
    train_teachers(archs=["resnet"], data=tiny_tree, out=out, size="toy", folds=2, schedule=ScheduleConfig(epochs=1, batch_size=8), progress=False)
    return out / "resnet-cf"


def test_folds_follow_speakers_and_silence_follows_seeds(tiny_tree):
    dataset = open_dataset(tiny_tree, progress=False)
    examples = make_examples(dataset, split="training", seed=3, all_unknown=True)
    folds = example_folds(dataset, examples, 2)
    speakers = np.array(dataset.index.speakers)
    clips = examples.rows >= 0
    for speaker in set(speakers[examples.rows[clips]]):
        assert set(folds[clips][speakers[examples.rows[clips]] == speaker]) == {speaker_fold(speaker, 2)}
    np.testing.assert_array_equal(folds[~clips], examples.seeds[~clips] % 2)
    assert set(folds[clips]) == {0, 1}  # the tiny tree's three training speakers fall in both folds
    with pytest.raises(DistillError, match="at least 2 folds"):
        HoldoutConfig(folds=1, fold=0)
    with pytest.raises(DistillError, match="0..2"):
        HoldoutConfig(folds=3, fold=3)


def test_a_holdout_run_never_sees_its_fold(tiny_tree):
    dataset = open_dataset(tiny_tree, progress=False)
    base = RunConfig(family="teacher", arch="resnet", size="toy", data=str(tiny_tree), schedule=ScheduleConfig(epochs=1, batch_size=8))
    full = AugmentedSource(dataset, base)._examples(0)
    held = AugmentedSource(dataset, dataclasses.replace(base, holdout=HoldoutConfig(folds=2, fold=1)))._examples(0)
    assert 0 < len(held) < len(full)
    assert set(example_folds(dataset, held, 2)) == {0}
    kept_rows = set(held.rows[held.rows >= 0].tolist())
    assert kept_rows == {r for r, f in zip(full.rows.tolist(), example_folds(dataset, full, 2).tolist()) if r >= 0 and f == 0}


def test_fold_group_layout_and_configs(fold_group):
    runs = fold_runs(fold_group)
    assert [r.name for r in runs] == ["fold0", "fold1"]
    holdouts = [json.loads((r / "config.json").read_text())["config"]["holdout"] for r in runs]
    assert holdouts == [{"folds": 2, "fold": 0}, {"folds": 2, "fold": 1}]
    assert fold_runs(runs[0]) is None  # a run folder is not a group


def test_predict_labels_training_clips_out_of_fold(fold_group, tiny_tree, tmp_path):
    out = tmp_path / "soft"
    result = predict_soft_labels(teacher_runs=[fold_group], data=tiny_tree, out=out, views=2, splits=("training", "validation"), progress=False)
    assert result.teachers == ("resnet-cf",)
    dataset = open_dataset(tiny_tree, progress=False)
    fold_predict = [make_predictor(load_run(r)[1]) for r in fold_runs(fold_group)]

    # compared as log-probabilities: toy runs after one epoch sit near uniform, where logs show their differences
    train = load_soft_labels(out, "training")
    audio = materialize(dataset, train.examples)
    by_fold = np.stack([np.log(softmax(p(audio))) for p in fold_predict])  # (folds, N, 12)
    assert np.abs(by_fold[0] - by_fold[1]).max() > 0.1  # the two runs disagree, so routing is observable
    folds = example_folds(dataset, train.examples, 2)
    held_out = by_fold[folds, np.arange(len(folds))]
    np.testing.assert_allclose(train.logits[0, 0].astype(np.float32), held_out, atol=2e-2)

    val = load_soft_labels(out, "validation")
    audio = materialize(dataset, val.examples)
    mean = np.mean([softmax(p(audio)) for p in fold_predict], axis=0)
    np.testing.assert_allclose(val.logits[0, 0].astype(np.float32), np.log(mean), atol=2e-2)

    with pytest.raises(DistillError, match="fold group"):
        fit_student(arch="tcresnet", size="toy", data=tiny_tree, out=tmp_path / "online", soft_labels=out, online=True, progress=False)

def test_too_many_folds_and_broken_groups_are_refused(fold_group, tiny_tree, tmp_path):
    # the tiny tree's three training speakers fall in folds 2, 0, 2 of three
    result = runner.invoke(app, ["teachers", "train", "--arch", "resnet", "--size", "toy", "--data", str(tiny_tree), "--out", str(tmp_path / "t"), "--folds", "3"])
    assert result.exit_code != 0 and "fold(s) [1]" in str(result.exception) + result.output
    assert not (tmp_path / "t").exists()

    broken = tmp_path / "broken"
    shutil.copytree(fold_group / "fold1", broken / "fold1")
    with pytest.raises(DistillError, match="not 0..1"):
        predict_soft_labels(teacher_runs=[broken], data=tiny_tree, out=tmp_path / "soft", views=1, splits=("validation",), progress=False)
    shutil.copytree(fold_group / "fold1", broken / "fold0")  # fold 1's run posing as fold 0
    with pytest.raises(DistillError, match="not fold 0 of 2"):
        predict_soft_labels(teacher_runs=[broken], data=tiny_tree, out=tmp_path / "soft2", views=1, splits=("validation",), progress=False)
    (broken / "fold0" / "metrics.json").unlink()  # as if fold 0 were still training
    with pytest.raises(DistillError, match="not finished training"):
        predict_soft_labels(teacher_runs=[broken], data=tiny_tree, out=tmp_path / "soft4", views=1, splits=("validation",), progress=False)
    with pytest.raises(DistillError, match="neither a teacher run"):
        predict_soft_labels(teacher_runs=[tmp_path], data=tiny_tree, out=tmp_path / "soft3", views=1, splits=("validation",), progress=False)
