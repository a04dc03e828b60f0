"""A stage command given no options trains what the default recipe trains, and records where its settings came from."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from distill.cli import app
from distill.core.config import RecipeSource
from distill.pipeline.recipe import load_recipe
from distill.pipeline.run import predict_settings, student_settings, teacher_settings

runner = CliRunner()


@pytest.fixture()
def calls(monkeypatch):
    import distill.training.soft_labels
    import distill.training.student_fit
    import distill.training.teacher_fit

    seen: dict[str, list[dict]] = {"train": [], "predict": [], "fit": []}

    class _Result:  # what each command prints from
        teachers, out, counts, run_dir, finished_before = ("t",), "o", {}, "r", False
        metrics = {"params": 1, "validation": {"accuracy": 0.5}, "test": {"accuracy": 0.5}}

    monkeypatch.setattr(distill.training.teacher_fit, "train_teachers", lambda **kw: seen["train"].append(kw) or [])
    monkeypatch.setattr(distill.training.soft_labels, "predict_soft_labels", lambda **kw: seen["predict"].append(kw) or _Result())
    monkeypatch.setattr(distill.training.student_fit, "fit_student", lambda **kw: seen["fit"].append(kw) or _Result())
    return seen


def _ok(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, (result.output, result.exception)


def _subset(kwargs: dict, like: dict) -> dict:
    return {k: kwargs[k] for k in like}


def test_commands_with_no_options_build_the_default_recipes_configs(calls, tmp_path):
    default = load_recipe("default")
    _ok("teachers", "train", "--data", tmp_path)
    _ok("teachers", "predict", "--teacher", tmp_path / "t", "--data", tmp_path)
    _ok("student", "fit", "--data", tmp_path, "--soft-labels", tmp_path / "s")
    expected = teacher_settings(default)
    assert [c["folds"] for c in calls["train"]] == [default.teachers.folds, 1]  # the fold groups and the full-data teachers
    assert all(_subset(c, expected) == expected for c in calls["train"])
    assert calls["train"][0]["recipe"] == RecipeSource(name="default", overrides=())
    assert _subset(calls["predict"][0], predict_settings(default)) == predict_settings(default)
    assert _subset(calls["fit"][0], student_settings(default)) == student_settings(default)
    assert calls["fit"][0]["recipe"] == RecipeSource(name="default", overrides=())


def test_options_and_another_recipe_override_the_defaults_and_are_recorded(calls, tmp_path):
    _ok("student", "fit", "--recipe", "quick", "--data", tmp_path, "--no-teachers", "--epochs", "3", "--no-feature-masks")
    quick = load_recipe("quick", ["students.0.epochs=3"])
    got = calls["fit"][0]
    assert got["schedule"] == student_settings(quick)["schedule"] and got["schedule"].epochs == 3 and got["size"] == "14"
    assert got["feature_masks"] is False
    assert got["recipe"] == RecipeSource(name="quick", overrides=("students.0.epochs=3", "students.0.feature_masks=false"))
    _ok("student", "fit", "--arch", "dscnn", "--data", tmp_path, "--no-teachers")
    assert (calls["fit"][1]["arch"], calls["fit"][1]["size"]) == ("dscnn", "default")  # the recipe's size is tcresnet's
    assert calls["fit"][1]["schedule"].precision == "float32"


def test_precision_reaches_the_schedule_and_is_recorded(calls, tmp_path):
    _ok("teachers", "train", "--data", tmp_path, "--precision", "mixed", "--folds", "1")
    _ok("student", "fit", "--data", tmp_path, "--no-teachers", "--precision", "mixed")
    assert calls["train"][0]["schedule"].precision == "mixed" and calls["fit"][0]["schedule"].precision == "mixed"
    assert 'teachers.precision="mixed"' in calls["train"][0]["recipe"].overrides
    assert calls["fit"][0]["recipe"].overrides == ('students.0.precision="mixed"',)
    _ok("teachers", "train", "--recipe", "smoke", "--data", tmp_path, "--folds", "1")
    assert calls["train"][1]["schedule"].precision == "float32"  # recipes that leave the key out take the default's


def test_help_shows_the_default_recipes_values():
    result = runner.invoke(app, ["student", "fit", "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0
    assert "(14-w2)" in result.output and "(160)" in result.output and "students.0.epochs" in result.output
