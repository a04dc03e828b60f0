"""Core helpers: class order, config round trips, atomic writes and folders, file hashes, progress, registries."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import pytest

from distill.core import io, labels
from distill.core.config import load_config, save_config
from distill.core.errors import DistillError
from distill.core.io import atomic_folder, atomic_path, read_json, sha256_file, sibling_prefix, write_json
from distill.core.progress import track
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


def _tree(folder) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_atomic_folder_builds_replaces_and_cleans_up(tmp_path):
    target = tmp_path / "data"
    with atomic_folder(target) as tmp:
        assert tmp.parent == tmp_path and tmp.is_dir() and not any(tmp.iterdir()) and not target.exists()
        (tmp / "sub").mkdir()
        (tmp / "sub" / "a.txt").write_text("first")
    assert _tree(target) == {"sub/a.txt": "first"}
    with atomic_folder(target) as tmp:
        (tmp / "b.txt").write_text("second")
        assert _tree(target) == {"sub/a.txt": "first"}, "readers see the old folder until the swap"
    assert _tree(target) == {"b.txt": "second"}, "replaced whole, nothing of the old folder left"
    with pytest.raises(RuntimeError):
        with atomic_folder(target) as tmp:
            (tmp / "c.txt").write_text("half")
            raise RuntimeError("interrupted")
    assert _tree(target) == {"b.txt": "second"}
    assert os.listdir(tmp_path) == ["data"], "no temporary folders left"


def test_atomic_folder_without_replace_keeps_what_is_there(tmp_path):
    target = tmp_path / "runtime"
    target.mkdir()
    (target / "COMPLETE").write_text("theirs")
    with atomic_folder(target, replace=False) as tmp:
        (tmp / "COMPLETE").write_text("ours")
    assert _tree(target) == {"COMPLETE": "theirs"} and os.listdir(tmp_path) == ["runtime"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with atomic_folder(empty, replace=False) as tmp:
        (tmp / "x").write_text("ours")
    assert _tree(empty) == {"x": "ours"}, "an empty folder is replaced even so"


def test_atomic_folder_removes_leftovers_of_dead_builds_only(tmp_path):
    target = tmp_path / "cache"
    dead = tmp_path / f"{sibling_prefix(target, 'building')}999999999-abcd"
    dead_old = tmp_path / f"{sibling_prefix(target, 'old')}999999999-abcd"
    alive = tmp_path / f"{sibling_prefix(target, 'building')}{os.getpid()}-abcd"
    other = tmp_path / f"{sibling_prefix(tmp_path / 'other', 'building')}999999999-abcd"
    for folder in (dead, dead_old, alive, other):
        folder.mkdir()
    with atomic_folder(target) as tmp:
        (tmp / "x").write_text("1")
    assert not dead.exists() and not dead_old.exists()
    assert alive.exists() and other.exists(), "a running build, and another target's, are left alone"


def test_atomic_folder_races(tmp_path, monkeypatch):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    real_rename = os.rename

    def another_process_wins(src, dst):
        if str(src).startswith(str(tmp_path / f"{sibling_prefix(target, 'building')}")):
            target.mkdir()
            (target / "theirs.txt").write_text("theirs")
        return real_rename(src, dst)

    monkeypatch.setattr(io.os, "rename", another_process_wins)
    with atomic_folder(target) as tmp:
        (tmp / "ours.txt").write_text("ours")
    assert _tree(target) == {"theirs.txt": "theirs"} and os.listdir(tmp_path) == ["out"]

    def rename_fails(src, dst):
        if str(src).startswith(str(tmp_path / f"{sibling_prefix(target, 'building')}")):
            raise OSError("disk gone")
        return real_rename(src, dst)

    monkeypatch.setattr(io.os, "rename", rename_fails)
    with pytest.raises(OSError, match="disk gone"):
        with atomic_folder(target) as tmp:
            (tmp / "ours.txt").write_text("ours")
    assert _tree(target) == {"theirs.txt": "theirs"}, "the old folder is put back"
    assert os.listdir(tmp_path) == ["out"]


def test_sha256_file(tmp_path):
    data = os.urandom(io.BLOCK_BYTES * 2 + 12345)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    seen = []

    def wrap(blocks):
        for block in blocks:
            seen.append(len(block))
            yield block

    assert sha256_file(path) == sha256_file(path, wrap=wrap) == hashlib.sha256(data).hexdigest()
    assert seen == [io.BLOCK_BYTES, io.BLOCK_BYTES, 12345]
    (tmp_path / "empty").write_bytes(b"")
    assert sha256_file(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()


def test_track_yields_every_item_with_or_without_a_bar():
    batches = [[1, 2, 3], [4, 5], [6]]
    assert list(track(iter(batches), total=10, completed=4, size=len, disable=True)) == batches
    assert list(track(iter(batches), total=10, completed=4, size=len, description="clips")) == batches
    assert list(track(range(3), description="items")) == [0, 1, 2]


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
