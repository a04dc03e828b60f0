"""--precision mixed: half-precision training steps, float32 variables, logits, front-end and everything after training."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from distill.core.config import load_config, save_config
from distill.core.errors import DistillError
from distill.training import fit as fit_module
from distill.training.fit import PRECISIONS, RunConfig, ScheduleConfig, fit, load_run, precision_policy

TOY = ScheduleConfig(epochs=1, batch_size=8, checkpoint_every_steps=0, keep="last", precision="mixed")


def _policy() -> str:
    return keras.config.dtype_policy().name


@pytest.fixture()
def built(monkeypatch):
    """Every model the fit loop builds, in order (the training model first)."""
    models = []
    original = fit_module.build_model

    def recording(config):
        models.append(original(config))
        return models[-1]

    monkeypatch.setattr(fit_module, "build_model", recording)
    return models


def _half(model) -> set[str]:
    return {layer.compute_dtype for layer in model.layers if layer.compute_dtype != "float32"}


def test_policy_is_restored_also_when_the_block_raises():
    assert _policy() == "float32"
    with precision_policy("mixed") as name:
        assert name == "mixed_bfloat16" and _policy() == name  # no GPU in the test environment
    assert _policy() == "float32"
    with pytest.raises(RuntimeError, match="inside"):
        with precision_policy("mixed"):
            raise RuntimeError("inside")
    assert _policy() == "float32"
    with pytest.raises(DistillError, match="precision must be one of float32, mixed, got 'half'"):
        ScheduleConfig(precision="half")


def test_a_mixed_student_trains_in_bfloat16_and_exports_as_its_float32_model(tiny_tree, tmp_path, built):
    from distill.data.cache import open_dataset
    from distill.export.freeze import run_frozen_tf2
    from distill.export.student_export import export_student
    from distill.training.student_fit import fit_student

    run = tmp_path / "student"
    result = fit_student(arch="dscnn", size="toy", data=tiny_tree, out=run, soft_labels=None, schedule=TOY, max_mb=None, max_ms=None, progress=False)
    assert _policy() == "float32"
    trained = built[-2]  # the last build is the float32 model the kept checkpoint is scored with
    assert _half(trained) == {"bfloat16"} and trained.get_layer("frontend").compute_dtype == "float32"
    assert {v.dtype for v in trained.trainable_variables} == {"float32"}
    clips = open_dataset(tiny_tree, progress=False).waveforms(np.arange(6))
    half_logits = trained(clips, training=False)
    assert half_logits.dtype == "float32"
    assert load_config(RunConfig, run / "config.json").schedule.precision == "mixed"
    assert (result.metrics["precision"], result.metrics["policy"]) == ("mixed", "mixed_bfloat16")
    assert json.loads((run / "metrics.json").read_text())["policy"] == "mixed_bfloat16"

    _, model = load_run(run)
    assert not _half(model) and model.output.dtype == "float32"
    logits = model(clips, training=False).numpy()
    # the same weights: the float32 model differs from the bfloat16 one by rounding only
    assert np.abs(logits - half_logits.numpy()).max() < 0.05 * (np.abs(logits).max() + 1)
    export = export_student(run=run, out=tmp_path / "export")
    import tensorflow as tf

    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(export.model_path.read_bytes())
    probs = tf.nn.softmax(logits).numpy()
    for clip, expected in zip(clips, probs):
        np.testing.assert_allclose(run_frozen_tf2(graph, clip).reshape(-1), expected, atol=1e-5)


def test_a_mixed_teacher_fit_and_a_failing_one_leave_float32_behind(tiny_tree, tmp_path, built, monkeypatch):
    config = RunConfig(family="teacher", arch="resnet", size="toy", data=str(tiny_tree), schedule=TOY)
    result = fit(config=config, run_dir=tmp_path / "resnet", progress=False)
    assert _policy() == "float32" and result.metrics["policy"] == "mixed_bfloat16"
    assert _half(built[0]) == {"bfloat16"} and built[0].output.dtype == "float32"
    assert {v.dtype for v in built[0].trainable_variables} == {"float32"}

    def broken(model, batch_size=256):
        raise RuntimeError("no predictor")

    monkeypatch.setattr(fit_module, "make_predictor", broken)
    with pytest.raises(RuntimeError, match="no predictor"):
        fit(config=config, run_dir=tmp_path / "broken", progress=False)
    assert _policy() == "float32"


def test_float16_steps_scale_the_loss(tiny_tree, tmp_path, built, monkeypatch):
    # what a GPU runs: forced here, float16 kernels exist on CPUs too, only slower
    monkeypatch.setattr(fit_module, "policy_name", lambda precision: "mixed_float16")
    config = RunConfig(family="student", arch="dscnn", size="toy", data=str(tiny_tree), schedule=TOY)
    result = fit(config=config, run_dir=tmp_path / "f16", progress=False)
    assert result.metrics["policy"] == "mixed_float16" and result.metrics["steps"] > 0
    assert _half(built[0]) == {"float16"} and _policy() == "float32"
    assert isinstance(built[0].get_layer("logits_float32"), keras.layers.Activation) and built[0].output.dtype == "float32"
    # the checkpoint holds the loss scale beside AdamW's slots, so a resumed run continues at the scale it reached
    with np.load(tmp_path / "f16" / "checkpoints" / "last.npz") as saved:
        scale = [saved[k] for k in saved.files if k.startswith("optim_") and saved[k].dtype == np.float32 and saved[k].shape == ()]
    assert any(value >= 1 for value in scale)


def test_runs_saved_before_precision_existed_load_as_float32(tmp_path):
    path = tmp_path / "config.json"
    save_config(RunConfig(family="student", arch="dscnn", size="toy", data="/x"), path)
    payload = json.loads(path.read_text())
    del payload["config"]["schedule"]["precision"]
    path.write_text(json.dumps(payload))
    assert load_config(RunConfig, path).schedule.precision == "float32"


def test_recipes_and_the_cli_carry_precision(tmp_path, monkeypatch, capsys):
    import sys

    from distill.cli import main
    from distill.pipeline.recipe import PRECISION_CHOICES, load_recipe
    from distill.pipeline.run import student_settings, teacher_settings

    assert PRECISION_CHOICES == PRECISIONS
    default = load_recipe("default")
    assert default.teachers.precision == "float32" and default.students[0].precision == "float32"
    mixed = load_recipe("default", ["teachers.precision=mixed", "students.0.precision=mixed"])
    assert teacher_settings(mixed)["schedule"].precision == "mixed" and student_settings(mixed)["schedule"].precision == "mixed"
    assert teacher_settings(default)["schedule"].precision == "float32"
    with pytest.raises(DistillError, match=r"^students\.0\.precision: must be one of float32, mixed, got 'bf16'"):
        load_recipe("default", ["students.0.precision=bf16"])
    monkeypatch.setattr(sys, "argv", ["distill", "teachers", "train", "--data", str(tmp_path), "--out", str(tmp_path / "t"), "--precision", "half"])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 2 and "--precision (teachers.precision): must be one of float32, mixed, got 'half'" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()


def test_run_spec_passes_words_and_precision_and_refuses_another(tmp_path):
    from dataclasses import replace

    from distill.training.student_fit import StudentRunSpec

    run = tmp_path / "run"
    run.mkdir()
    save_config(RunConfig(family="student", arch="dscnn", data="/x", size="toy", schedule=ScheduleConfig(epochs=3, keep="last", precision="mixed"),
                          words=("zero", "one")), run / "config.json")
    spec = StudentRunSpec(data=tmp_path, arch="dscnn", size="toy", epochs=3, seed=0, soft_labels=None, words=["zero", "one"], precision="mixed")
    spec.refuse_other(run, finished=False)
    command = spec.command(run)
    assert command[command.index("--words") + 1] == "zero,one" and command[command.index("--precision") + 1] == "mixed"
    with pytest.raises(DistillError, match="precision: mixed there, float32 asked"):
        replace(spec, precision="float32").refuse_other(run, finished=True)
    with pytest.raises(DistillError, match="words: zero,one there, yes,no,up"):
        replace(spec, words=StudentRunSpec.words).refuse_other(run, finished=True)
