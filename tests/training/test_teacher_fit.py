"""Training several teachers: the CLI, and the joblib Dask backend on a LocalCluster."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from distill.cli import app
from distill.core.errors import DistillError
from distill.training.fit import ScheduleConfig, score_run
from distill.training.teacher_fit import train_teachers

runner = CliRunner()


def test_cli_trains_two_teachers_and_reports(tiny_tree, tmp_path):
    result = runner.invoke(app, ["teachers", "train", "--arch", "resnet", "--arch", "crnn", "--size", "toy", "--data", str(tiny_tree),
                                 "--out", str(tmp_path / "t"), "--epochs", "1", "--batch-size", "8", "--folds", "1"])
    assert result.exit_code == 0, result.output
    for arch in ("resnet", "crnn"):
        metrics = json.loads((tmp_path / "t" / arch / "metrics.json").read_text())
        assert metrics["arch"] == arch
        # the accuracies it reports are the saved run's, measured again from its kept checkpoint
        rescored = score_run(tmp_path / "t" / arch)
        assert rescored == pytest.approx({"validation": metrics["validation"]["accuracy"], "testing": metrics["test"]["accuracy"]}, abs=1e-12)
        assert any((tmp_path / "t" / arch / "tensorboard").iterdir())
    again = runner.invoke(app, ["teachers", "train", "--arch", "resnet", "--size", "toy", "--data", str(tiny_tree), "--out", str(tmp_path / "t"), "--epochs", "1", "--folds", "1"])
    assert again.exit_code != 0 and "--resume" in str(again.exception)


def test_seeds_give_distinct_members(tiny_tree, tmp_path):
    results = train_teachers(archs=["resnet"], data=tiny_tree, out=tmp_path / "t", size="toy", seeds=2,
                             schedule=ScheduleConfig(epochs=1, batch_size=8), progress=False)
    assert [r["run_dir"].rsplit("/", 1)[-1] for r in results] == ["resnet", "resnet-s1"]
    configs = [json.loads((tmp_path / "t" / name / "config.json").read_text())["config"] for name in ("resnet", "resnet-s1")]
    assert configs[0]["seed"] != configs[1]["seed"]
    with pytest.raises(DistillError, match="--seeds"):
        train_teachers(archs=["resnet"], data=tiny_tree, out=tmp_path / "u", size="toy", seeds=0)


def test_unknown_arch_is_refused_before_work(tiny_tree, tmp_path):
    with pytest.raises(DistillError, match="choose one of"):
        train_teachers(archs=["resnet", "nope"], data=tiny_tree, out=tmp_path / "t", size="toy")
    assert not (tmp_path / "t").exists()


@pytest.mark.slow  # 9 s of a local dask cluster's start-up; joblib's backend trains in the default suite
def test_dask_backend_on_a_local_cluster(tiny_tree, tmp_path):
    pytest.importorskip("distributed", reason="the dask extra is not installed (pip install 'distill[dask]')")
    results = train_teachers(archs=["resnet", "wavecnn"], data=tiny_tree, out=tmp_path / "t", size="toy",
                             schedule=ScheduleConfig(epochs=1, batch_size=8), jobs=2, backend="dask", progress=False)
    assert sorted(r["metrics"]["arch"] for r in results) == ["resnet", "wavecnn"]
    assert all((tmp_path / "t" / a / "checkpoints" / "best.npz").exists() for a in ("resnet", "wavecnn"))
