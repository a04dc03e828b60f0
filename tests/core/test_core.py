"""Core helpers: class order, config round trips, atomic writes, registries."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from distill.core import labels
from distill.core.config import load_config, save_config
from distill.core.errors import DistillError
from distill.core.io import atomic_path, read_json, write_json
from distill.core.registry import Registry


def test_class_order_is_the_tutorial_order():
    assert labels.CLASSES[:2] == ("silence", "unknown")
    assert labels.CLASSES[2:] == ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
    assert labels.NUM_CLASSES == 12
    assert len(labels.V001_WORDS) == 30 and set(labels.TARGET_WORDS) <= set(labels.V001_WORDS)


@pytest.mark.parametrize("word,expected", [("yes", "yes"), ("go", "go"), ("marvin", "unknown"), ("follow", "unknown")])
def test_word_to_class(word, expected):
    assert labels.class_name(labels.word_to_class(word)) == expected


@dataclasses.dataclass(frozen=True)
class _Inner:
    widths: tuple[int, ...] = (8, 16)


@dataclasses.dataclass(frozen=True)
class _Outer:
    name: str = "x"
    rate: float = 0.5
    inner: _Inner = _Inner()
    optional: int | None = None


def test_config_round_trip(tmp_path):
    cfg = _Outer(name="teacher", rate=0.1, inner=_Inner(widths=(4, 8, 12)), optional=3)
    path = save_config(cfg, tmp_path / "config.json")
    assert json.loads(path.read_text())["kind"] == "_Outer"
    assert load_config(_Outer, path) == cfg


def test_refuse_other_config_names_each_difference(tmp_path):
    from distill.core.config import refuse_other_config

    refuse_other_config(tmp_path, expected={"epochs": 80, "seed": 0}, found={"epochs": 80, "seed": 0})
    with pytest.raises(DistillError, match=r"holds a run of another configuration \(epochs: 80 there, 160 asked, seed: 0 there, 1 asked\)"):
        refuse_other_config(tmp_path, expected={"epochs": 160, "seed": 1, "arch": "tcresnet"}, found={"epochs": 80, "seed": 0, "arch": "tcresnet"})


def test_config_wrong_kind_and_missing(tmp_path):
    save_config(_Inner(), tmp_path / "config.json")
    with pytest.raises(DistillError, match="expected _Outer"):
        load_config(_Outer, tmp_path / "config.json")
    with pytest.raises(DistillError, match="no config found"):
        load_config(_Outer, tmp_path / "missing.json")


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert read_json(target) == {"a": 1}
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_registry_rejects_unknown_and_duplicate_names():
    reg = Registry("widget", "teachers")
    reg._loaded = True  # nothing to import for this toy registry

    @reg.register("a")
    def build_a():
        return "a"

    assert reg.get("a") is build_a and reg.names() == ["a"]
    with pytest.raises(DistillError, match="unknown widget 'b'; choose one of: a"):
        reg.get("b")
    with pytest.raises(ValueError):
        reg.register("a")(lambda: None)
