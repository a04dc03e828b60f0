"""Frozen-dataclass configs saved as JSON next to every artefact.

A stage reads the earlier stage's folder (``config.json``), never its Python
objects, so any result can be reproduced from its folder alone. Each saved
config carries its class name and the toolkit version.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

from distill import __version__
from distill.core.errors import DistillError
from distill.core.io import read_json, write_json

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class RecipeSource:
    """Where a run's settings came from: a recipe (shipped name or file) and the options that overrode it."""

    name: str
    overrides: tuple[str, ...] = ()  # dotted KEY=VALUE, e.g. students.0.epochs=80


def to_dict(config: Any) -> dict[str, Any]:
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"{type(config).__name__} is not a dataclass")
    return dataclasses.asdict(config)


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build ``cls`` from a dict, recursing into nested dataclasses and turning lists back into tuples."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise DistillError(f"{cls.__name__}: unknown config keys {sorted(unknown)} (written by a newer distill?)")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints.get(name), value)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any) -> Any:
    if hint is None or value is None:
        return value
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return from_dict(hint, value)
    origin = typing.get_origin(hint)
    if origin is tuple and isinstance(value, list):
        args = typing.get_args(hint)
        inner = args[0] if args else None
        return tuple(_coerce(inner, v) for v in value)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        for arg in typing.get_args(hint):
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value)
            except Exception:  # try the next member of the union
                continue
    return value


def save_config(config: Any, path: str | os.PathLike) -> Path:
    payload = {"kind": type(config).__name__, "distill_version": __version__, "config": to_dict(config)}
    return write_json(path, payload)


def load_config(cls: type[T], path: str | os.PathLike) -> T:
    path = Path(path)
    if not path.exists():
        raise DistillError(f"{path}: no config found (is this a folder written by distill?)")
    payload = read_json(path, fix=f"restore it from a copy, or redo the command that wrote {path.parent} into a fresh folder")
    if not isinstance(payload, dict) or not isinstance(payload.get("config"), dict):
        raise DistillError(f"{path}: not a config written by distill (no kind and config); restore it, or redo the command that wrote {path.parent}")
    if payload.get("kind") != cls.__name__:
        raise DistillError(f"{path}: holds a {payload.get('kind')} config, expected {cls.__name__}")
    return from_dict(cls, payload["config"])


def refuse_other_config(folder: str | os.PathLike, *, expected: Mapping[str, Any], found: Mapping[str, Any]) -> None:
    """Raise when a folder about to be reused was made with other settings, naming each difference.

    Drivers that skip finished stages read results back without retraining; a folder left by another
    preset would otherwise be reported as the one asked for.
    """
    changed = [key for key in expected if found[key] != expected[key]]
    if changed:
        detail = ", ".join(f"{key}: {found[key]} there, {expected[key]} asked" for key in changed)
        raise DistillError(f"{folder} holds a run of another configuration ({detail}); move it away or choose a fresh --out")
