"""Recipes: shipped ones load, defaults come from default.toml, overrides are typed, bad keys name themselves."""

from __future__ import annotations

import dataclasses
import tomllib

import pytest
from typer.testing import CliRunner

from distill.cli import app
from distill.core.errors import DistillError
from distill.pipeline.recipe import (
    apply_options,
    default_values,
    load_recipe,
    parse_override,
    recipe_diff,
    recipe_from_dict,
    recipe_text,
    shipped_recipes,
    to_toml,
)


def test_shipped_recipes_load_and_say_what_they_measured():
    assert shipped_recipes() == ["default", "gpu", "ladder", "quick", "smoke"]
    for name in shipped_recipes():
        recipe = load_recipe(name)
        assert recipe.name == name
        first = recipe_text(name)[1].splitlines()[0]
        assert first.startswith(f"# {name}:"), first


def test_every_key_of_the_default_recipe_carries_a_comment():
    text = recipe_text("default")[1]
    keys = [line for line in text.splitlines() if "=" in line and not line.startswith("#")]
    assert len(keys) == len(default_values())
    assert all("  # " in line for line in keys), [line for line in keys if "  # " not in line]


def test_default_recipe_is_the_measured_one():
    r = load_recipe("default")
    assert r.teachers.families == ("resnet", "wavecnn", "crnn") and r.teachers.epochs == 40 and r.teachers.folds == 2
    assert r.predict.views == 8
    s = r.students[0]
    assert (s.arch, s.size, s.epochs, s.keep, s.feature_masks, s.weight_bits) == ("tcresnet", "14-w2", 160, "last", True, 8)


def test_overrides_are_typed_by_the_field_they_set():
    r = load_recipe("default", ["teachers.epochs=10", "students.0.size=14", "students.0.alpha=0.5", "predict.view_masks=true",
                                'teachers.families=["resnet"]'])
    assert r.teachers.epochs == 10 and r.students[0].size == "14" and r.students[0].alpha == 0.5 and r.predict.view_masks
    assert r.teachers.families == ("resnet",)
    assert parse_override("students.0.arch=dscnn") == (["students", "0", "arch"], "dscnn")


@pytest.mark.parametrize("override, key", [
    ("teachers.epoch=3", "teachers.epoch: unknown key"),
    ("teachers.epochs=-1", "teachers.epochs: must be >= 1"),
    ("teachers.epochs=ten", "teachers.epochs: expected an integer"),
    ("teachers.epochs=1.5", "teachers.epochs: expected an integer"),
    ("students.0.arch=nope", "students.0.arch: unknown student 'nope'"),
    ("students.0.size=huge", "students.0.size: 'huge' is not a size"),
    ("students.1.epochs=3", "students.1: no such entry"),
    ("predict.views=0", "predict.views: must be >= 1"),
    ('teachers.families=["nope"]', "teachers.families.0: unknown teacher"),
    ("calibrate.expected_unknown=0.95", "calibrate: expected_silence + expected_unknown"),
    ("teachers.precision=half", "teachers.precision: must be one of float32, mixed, got 'half'"),
    ("students.0.precision=mixed_bfloat16", "students.0.precision: must be one of float32, mixed"),
    ("nothing.here=1", "nothing: unknown key"),
    ("epochs", "override 'epochs': write KEY=VALUE"),
])
def test_bad_overrides_name_the_key(override, key):
    with pytest.raises(DistillError) as err:
        load_recipe("default", [override])
    assert str(err.value).startswith(key), str(err.value)


def test_a_recipe_file_needs_only_the_keys_it_changes(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[teachers]\nepochs = 3\n\n[[students]]\narch = "dscnn"\nsize = "toy"\n\n[[students]]\nsize = "8"\n')
    r = load_recipe(path)
    default = load_recipe("default")
    assert r.teachers == dataclasses.replace(default.teachers, epochs=3)
    assert [s.label for s in r.students] == ["dscnn-toy", "tcresnet-8"]
    assert r.students[1] == dataclasses.replace(default.students[0], size="8")
    assert ("teachers.epochs", 40, 3) in recipe_diff(default, r)


def test_bad_files_are_refused_with_their_path(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[teachers\nepochs = 3\n")
    with pytest.raises(DistillError, match="bad.toml: not valid TOML"):
        load_recipe(bad)
    with pytest.raises(DistillError, match="no such recipe file"):
        load_recipe(tmp_path / "missing.toml")
    with pytest.raises(DistillError, match="unknown recipe 'nope'"):
        load_recipe("nope")
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("[students]\nepochs = -5\n")
    with pytest.raises(DistillError, match=r"^students\.0\.epochs: must be >= 1"):
        load_recipe(wrong)


def test_resolved_toml_round_trips():
    r = load_recipe("quick", ["students.0.size=14-w2", "data.seed=3"])
    assert recipe_from_dict(tomllib.loads(to_toml(r))) == r


def test_options_override_the_recipe_and_errors_name_the_flag():
    recipe, source = apply_options("quick", {"teachers.epochs": 7, "students.0.size": "8", "predict.views": None}, {"teachers.epochs": "--epochs"})
    assert recipe.teachers.epochs == 7 and recipe.students[0].size == "8" and recipe.predict.views == 4
    assert source.name == "quick" and source.overrides == ("teachers.epochs=7", 'students.0.size="8"')
    with pytest.raises(DistillError, match=r"^--epochs \(teachers\.epochs\): must be >= 1"):
        apply_options(None, {"teachers.epochs": 0}, {"teachers.epochs": "--epochs"})


def test_recipe_commands():
    runner = CliRunner()
    listed = runner.invoke(app, ["recipe", "list"])
    assert listed.exit_code == 0 and [line.split()[0] for line in listed.output.splitlines()] == shipped_recipes()
    shown = runner.invoke(app, ["recipe", "show", "quick"])
    assert shown.exit_code == 0 and shown.output == recipe_text("quick")[1]
    diff = runner.invoke(app, ["recipe", "diff", "default", "quick"])
    assert diff.exit_code == 0
    header, *lines = diff.output.splitlines()
    assert header.split() == ["key", "default", "quick"]
    assert [line.split()[0] for line in lines] == [key for key, _, _ in recipe_diff(load_recipe("default"), load_recipe("quick"))]
    same = runner.invoke(app, ["recipe", "diff", "default", "default"])
    assert same.exit_code == 0 and "train the same thing" in same.output


def test_the_experiment_recipe_files_load():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "docs" / "experiments" / "recipes"
    files = sorted(folder.glob("*.toml"))
    assert files
    for path in files:
        assert load_recipe(path).name == str(path)
        assert path.read_text().startswith(f"# {path.stem}:")
