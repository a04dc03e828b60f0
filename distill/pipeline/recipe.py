"""Recipes: one TOML file that drives every stage, with dotted overrides from the command line.

A recipe has one table per stage (``data``, ``teachers``, ``predict``, ``students``, ``pseudo``,
``calibrate``, ``export``, ``ablations``). Each table maps onto a frozen dataclass below, whose
defaults are the ``default`` recipe's values, so a stage command given no options trains what the
``default`` recipe trains. Shipped recipes live in ``distill/recipes/*.toml``; ``distill recipe show
NAME > my.toml`` gives one to edit.

Everything is checked before any work starts: an unknown key, a wrong type, an unknown architecture
or an impossible value (negative epochs, views < 1) is a :class:`DistillError` naming the key by its
dotted name (``students.0.epochs``) and what is allowed.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

from distill.core.config import RecipeSource
from distill.core.errors import DistillError

RECIPE_PACKAGE = "distill.recipes"
KEEP_CHOICES = ("best", "last")  # distill.training.fit.KEEP_CHOICES; importing it would import TensorFlow
PRECISION_CHOICES = ("float32", "mixed")  # distill.training.fit.PRECISIONS, checked by a test


@dataclass(frozen=True)
class DataRecipe:
    silence_percentage: float
    unknown_percentage: float
    seed: int
    words: tuple[str, ...]

    def check(self, at: str) -> None:
        from distill.core.labels import check_words

        try:
            check_words(self.words)
        except DistillError as err:
            raise DistillError(f"{at}.words: {str(err).removeprefix('--words: ')}") from None
        _at_least(self.silence_percentage, 0, f"{at}.silence_percentage")
        _at_least(self.unknown_percentage, 0, f"{at}.unknown_percentage")
        _at_least(self.seed, 0, f"{at}.seed")


@dataclass(frozen=True)
class TeachersRecipe:
    families: tuple[str, ...]
    size: str
    epochs: int
    batch_size: int
    learning_rate: float
    label_smoothing: float
    keep: str
    seeds: int
    folds: int
    precision: str

    def check(self, at: str) -> None:
        if not self.families:
            raise DistillError(f"{at}.families: give at least one teacher architecture")
        from distill.core.registry import TEACHERS

        for i, name in enumerate(self.families):
            if name not in TEACHERS.names():
                raise DistillError(f"{at}.families.{i}: unknown teacher '{name}'; choose from {', '.join(TEACHERS.names())}")
        _check_size(TEACHERS, self.families, self.size, f"{at}.size")
        _check_training(self, at)
        _at_least(self.folds, 1, f"{at}.folds")


@dataclass(frozen=True)
class PredictRecipe:
    views: int
    view_masks: bool

    def check(self, at: str) -> None:
        _at_least(self.views, 1, f"{at}.views")


@dataclass(frozen=True)
class StudentRecipe:
    arch: str
    size: str
    epochs: int
    batch_size: int
    learning_rate: float
    alpha: float
    temperature: float
    label_smoothing: float
    feature_masks: bool
    keep: str
    max_views: int
    frontend: str
    weight_bits: int
    max_mb: float
    max_ms: float
    twin: bool
    seeds: int
    precision: str

    def check(self, at: str) -> None:
        from distill.core.registry import STUDENTS

        if self.arch not in STUDENTS.names():
            raise DistillError(f"{at}.arch: unknown student '{self.arch}'; choose from {', '.join(STUDENTS.names())}")
        _check_size(STUDENTS, (self.arch,), self.size, f"{at}.size")
        _check_training(self, at)
        _fraction(self.alpha, f"{at}.alpha")
        _positive(self.temperature, f"{at}.temperature")
        _at_least(self.max_views, 0, f"{at}.max_views")
        if self.frontend:
            from distill.layers.frontend import FRONTEND_PRESETS

            _choice(self.frontend, tuple(FRONTEND_PRESETS), f"{at}.frontend")
        _choice(self.weight_bits, (8, 32), f"{at}.weight_bits")
        _at_least(self.max_mb, 0, f"{at}.max_mb")
        _at_least(self.max_ms, 0, f"{at}.max_ms")

    @property
    def label(self) -> str:
        """Its folder under ``OUT/students``: arch-size, and the front-end when one is set (one net at two front-ends is two rungs)."""
        return f"{self.arch}-{self.size}" + (f"-{self.frontend}" if self.frontend else "")


@dataclass(frozen=True)
class PseudoRecipe:
    enabled: bool
    threshold: float
    min_agreement: float

    def check(self, at: str) -> None:
        _fraction(self.threshold, f"{at}.threshold")
        _fraction(self.min_agreement, f"{at}.min_agreement")


@dataclass(frozen=True)
class CalibrateRecipe:
    prior_strength: float
    expected_silence: float
    expected_unknown: float

    def check(self, at: str) -> None:
        _at_least(self.prior_strength, 0, f"{at}.prior_strength")
        _fraction(self.expected_silence, f"{at}.expected_silence")
        _fraction(self.expected_unknown, f"{at}.expected_unknown")
        if self.expected_silence + self.expected_unknown >= 1:
            raise DistillError(f"{at}: expected_silence + expected_unknown must be below 1 (the ten words share the rest)")

    @property
    def expected_mix(self) -> dict[str, float]:
        return {"silence": self.expected_silence, "unknown": self.expected_unknown}


@dataclass(frozen=True)
class ExportRecipe:
    check_pi: bool
    check_clips: int
    tflite: bool
    representative: int

    def check(self, at: str) -> None:
        _at_least(self.check_clips, 1, f"{at}.check_clips")
        _at_least(self.representative, 1, f"{at}.representative")


@dataclass(frozen=True)
class AblationsRecipe:
    clean_views: bool
    pseudo: bool
    flipped_masks: bool

    def check(self, at: str) -> None:
        pass


@dataclass(frozen=True)
class Recipe:
    """Every stage's settings. Each key's meaning is the comment beside it in ``distill/recipes/default.toml``,
    the one place defaults come from: a recipe file only needs the keys it changes."""

    data: DataRecipe
    teachers: TeachersRecipe
    predict: PredictRecipe
    students: tuple[StudentRecipe, ...]
    pseudo: PseudoRecipe
    calibrate: CalibrateRecipe
    export: ExportRecipe
    ablations: AblationsRecipe
    name: str = field(default="default", compare=False)  # where it came from, not part of what it trains
    overrides: tuple[str, ...] = field(default=(), compare=False)  # the KEY=VALUE overrides applied to it

    @property
    def source(self) -> RecipeSource:
        """What run folders record about where their settings came from."""
        return RecipeSource(name=self.name, overrides=self.overrides)

    def check(self) -> "Recipe":
        self.data.check("data")
        self.teachers.check("teachers")
        self.predict.check("predict")
        if not self.students:
            raise DistillError("students: give at least one [[students]] table")
        seen: dict[str, int] = {}
        for i, student in enumerate(self.students):
            student.check(f"students.{i}")
            if student.label in seen:  # one folder per arch, size and front-end: the second would take the first's runs for its own
                raise DistillError(f"students.{i}: the same arch, size and front-end as students.{seen[student.label]} (both would train into "
                                   f"students/{student.label}); give each [[students]] table its own arch, size or frontend, or use seeds for repeats")
            seen[student.label] = i
        self.pseudo.check("pseudo")
        self.calibrate.check("calibrate")
        self.export.check("export")
        self.ablations.check("ablations")
        return self

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("name")
        out.pop("overrides")
        return out


# --------------------------------------------------------------------------- value checks


def _check_training(section: "TeachersRecipe | StudentRecipe", at: str) -> None:
    """The keys teachers and students share: the schedule of each fit, how many fits, and their precision."""
    _at_least(section.epochs, 1, f"{at}.epochs")
    _at_least(section.batch_size, 1, f"{at}.batch_size")
    _positive(section.learning_rate, f"{at}.learning_rate")
    _fraction(section.label_smoothing, f"{at}.label_smoothing")
    _choice(section.keep, KEEP_CHOICES, f"{at}.keep")
    _at_least(section.seeds, 1, f"{at}.seeds")
    _choice(section.precision, PRECISION_CHOICES, f"{at}.precision")


def _at_least(value: float, low: float, key: str) -> None:
    if value < low:
        raise DistillError(f"{key}: must be >= {low}, got {value}")


def _positive(value: float, key: str) -> None:
    if not value > 0:
        raise DistillError(f"{key}: must be > 0, got {value}")


def _fraction(value: float, key: str) -> None:
    if not 0 <= value <= 1:
        raise DistillError(f"{key}: must be between 0 and 1, got {value}")


def _choice(value: Any, allowed: Sequence[Any], key: str) -> None:
    if value not in allowed:
        raise DistillError(f"{key}: must be one of {', '.join(map(str, allowed))}, got {value!r}")


def _check_size(registry, names: Sequence[str], size: str, key: str) -> None:
    # sizes are declared as a SIZES dict in each architecture's module
    import importlib

    for name in names:
        module = importlib.import_module(registry.get(name).__module__)
        sizes = getattr(module, "SIZES", None)
        if sizes is not None and size not in sizes:
            raise DistillError(f"{key}: '{size}' is not a size of {registry.family} '{name}'; choose from {', '.join(sizes)}")


# --------------------------------------------------------------------------- reading and writing


def _build(cls: type, data: Any, at: str):
    """``cls`` from parsed TOML, naming the dotted key of the first unknown key or wrong type."""
    if not isinstance(data, Mapping):
        raise DistillError(f"{at or 'recipe'}: expected a table, got {_toml_type(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.compare}
    kwargs = {}
    for key, value in data.items():
        dotted = f"{at}.{key}" if at else key
        if key not in fields:
            raise DistillError(f"{dotted}: unknown key; {('allowed in ' + at) if at else 'tables are'}: {', '.join(fields)}")
        kwargs[key] = _value(hints[key], value, dotted)
    missing = [name for name in fields if name not in kwargs]
    if missing:
        raise DistillError(f"{at or 'recipe'}: missing {', '.join(missing)}")
    return cls(**kwargs)


def _value(hint: Any, value: Any, at: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, at)
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, list):
            raise DistillError(f"{at}: expected an array, got {_toml_type(value)}")
        inner = typing.get_args(hint)[0]
        return tuple(_value(inner, v, f"{at}.{i}") for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"recipe fields do not use unions ({at})")
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif hint is str:
        ok = isinstance(value, str)
    else:
        raise TypeError(f"unsupported recipe field type {hint} ({at})")
    if not ok:
        raise DistillError(f"{at}: expected {_TYPE_NAMES[hint]}, got {_toml_type(value)} {value!r}")
    return value


_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _toml_type(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array", dict: "a table"}.get(type(value), type(value).__name__)


def shipped_recipes() -> list[str]:
    return sorted(p.name[: -len(".toml")] for p in resources.files(RECIPE_PACKAGE).iterdir() if p.name.endswith(".toml"))


def recipe_text(name_or_path: str | os.PathLike) -> tuple[str, str]:
    """(name, TOML text) of a shipped recipe name or a file path."""
    text = str(name_or_path)
    if text in shipped_recipes():
        return text, resources.files(RECIPE_PACKAGE).joinpath(f"{text}.toml").read_text(encoding="utf-8")
    path = Path(text)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise DistillError(f"{path}: no such recipe file; shipped recipes: {', '.join(shipped_recipes())}")
        return str(path), path.read_text(encoding="utf-8")
    raise DistillError(f"unknown recipe '{text}': give a shipped name ({', '.join(shipped_recipes())}) or a .toml file")


def parse_override(item: str) -> tuple[list[str], Any]:
    """``students.0.epochs=80`` -> (["students", "0", "epochs"], 80); values are TOML (bare words are strings)."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise DistillError(f"override '{item}': write KEY=VALUE with a dotted key, e.g. teachers.epochs=10")
    raw = raw.strip()
    parts = key.split(".")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word such as tcresnet
    if _field_hint(parts) is str and not isinstance(value, str):
        value = raw  # a string field keeps what was typed: size=14 is the size "14"
    return parts, value


def _field_hint(parts: Sequence[str]) -> Any:
    """The declared type of a dotted recipe key, or None where the path names no field."""
    hint: Any = Recipe
    for part in parts:
        if typing.get_origin(hint) is tuple and part.isdigit():
            hint = typing.get_args(hint)[0]
            continue
        if not dataclasses.is_dataclass(hint):
            return None
        hint = typing.get_type_hints(hint).get(part)
        if hint is None:
            return None
    return hint


def _apply_override(data: dict[str, Any], parts: list[str], value: Any, dotted: str) -> None:
    node: Any = data
    for depth, part in enumerate(parts[:-1]):
        at = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            node = node[_index(node, part, at)]
        else:
            if part not in node:
                node[part] = [{}] if part == "students" else {}
            node = node[part]
    last = parts[-1]
    if isinstance(node, list):
        node[_index(node, last, dotted)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise DistillError(f"{dotted}: {'.'.join(parts[:-1])} is not a table")


def _index(items: list, part: str, at: str) -> int:
    if not part.isdigit() or int(part) >= len(items):
        raise DistillError(f"{at}: no such entry; there are {len(items)} (indices 0..{len(items) - 1})")
    return int(part)


def load_recipe(name_or_path: str | os.PathLike = "default", overrides: Sequence[str] = ()) -> Recipe:
    """A checked Recipe from a shipped name or a TOML file, with dotted ``KEY=VALUE`` overrides applied.

    Keys a file leaves out take the ``default`` recipe's values (each ``[[students]]`` entry those of
    the default student), so a recipe file only needs what it changes.
    """
    name, text = recipe_text(name_or_path)
    data = _merge(_parse(DEFAULT, _default_text()), _parse(name, text))
    for item in overrides:
        parts, value = parse_override(item)
        _apply_override(data, parts, value, ".".join(parts))
    return dataclasses.replace(_build(Recipe, data, ""), name=name, overrides=tuple(overrides)).check()


DEFAULT = "default"


@functools.cache  # read once per process: every recipe-driven option's --help and every recipe start from it
def _default_text() -> str:
    return resources.files(RECIPE_PACKAGE).joinpath(f"{DEFAULT}.toml").read_text(encoding="utf-8")


def _parse(name: str, text: str) -> dict[str, Any]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise DistillError(f"{name}: not valid TOML ({err})") from None
    if isinstance(data.get("students"), dict):
        data["students"] = [data["students"]]  # a single [students] table is one student
    return data


def _merge(base: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """``given`` over ``base``: tables merge key by key; every given student starts from the base's first."""
    out = {key: (dict(value) if isinstance(value, dict) else value) for key, value in base.items()}
    for key, value in given.items():
        if key == "students" and isinstance(value, list):
            out[key] = [{**base["students"][0], **v} if isinstance(v, dict) else v for v in value]
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def default_values() -> dict[str, Any]:
    """The default recipe's values by dotted key, parsed without checks (no TensorFlow import): for ``--help``."""
    return flatten(_parse(DEFAULT, _default_text()))


def apply_options(name: str | None, options: Mapping[str, Any], flags: Mapping[str, str]) -> tuple[Recipe, RecipeSource]:
    """A stage command's recipe: ``name`` (or the default) with every option the user gave as an override.

    ``options`` maps dotted recipe keys to the values given on the command line (None: not given);
    ``flags`` maps the same keys to their option names, so an error names ``--epochs``, not ``teachers.epochs``.
    """
    overrides = tuple(f"{key}={_toml_value(list(value) if isinstance(value, tuple) else value)}" for key, value in options.items() if value is not None)
    try:
        recipe = load_recipe(name or DEFAULT, overrides)
    except DistillError as err:
        message = str(err)
        for key, flag in flags.items():
            if message.startswith(f"{key}:") or message.startswith(f"{key}."):
                raise DistillError(f"{flag} ({key}){message[len(key):]}") from None
        raise
    return recipe, recipe.source


def schedule_config(section: TeachersRecipe | StudentRecipe, **extra):
    """The fit loop's ScheduleConfig for a teachers or student table (options outside recipes in ``extra``)."""
    from distill.training.fit import ScheduleConfig

    return ScheduleConfig(epochs=section.epochs, batch_size=section.batch_size, learning_rate=section.learning_rate,
                          label_smoothing=section.label_smoothing, keep=section.keep, precision=section.precision, **extra)


def mix_config(data: DataRecipe):
    from distill.data.examples import MixConfig

    return MixConfig(silence_percentage=data.silence_percentage, unknown_percentage=data.unknown_percentage)


def augment_config(predict: PredictRecipe, *, no_augment: bool = False):
    from distill.data.augment import AugmentConfig

    if no_augment and predict.view_masks:
        raise DistillError("view masks mask augmented views: they cannot go with --no-augment")
    if no_augment:
        return AugmentConfig.none()
    return AugmentConfig.with_view_masks() if predict.view_masks else AugmentConfig()


def teacher_augment_config(recipe: Recipe, *, no_augment: bool = False):
    """The teachers' own training augmentation: view masks are for the views they label, not for their training (as measured)."""
    return augment_config(dataclasses.replace(recipe.predict, view_masks=False), no_augment=no_augment)


def frontend_config(student: StudentRecipe):
    from distill.layers.frontend import frontend_preset

    return frontend_preset(student.frontend) if student.frontend else None


def recipe_from_dict(data: Mapping[str, Any], *, name: str = "recipe.toml") -> Recipe:
    return dataclasses.replace(_build(Recipe, _merge(_parse(DEFAULT, _default_text()), dict(data)), ""), name=name).check()


def to_toml(recipe: Recipe) -> str:
    """The resolved recipe as TOML, every key written out (what ``OUT/recipe.toml`` holds)."""
    data = recipe.to_dict()
    lines = [f"# resolved recipe (from {recipe.name})"]
    for table, value in data.items():
        if table == "students":
            for student in value:
                lines += ["", "[[students]]"] + [f"{k} = {_toml_value(v)}" for k, v in student.items()]
        else:
            lines += ["", f"[{table}]"] + [f"{k} = {_toml_value(v)}" for k, v in value.items()]
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> leaf value (lists of tables indexed: ``students.0.epochs``)."""
    if isinstance(data, Mapping):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(data, (list, tuple)) and data and all(isinstance(v, Mapping) for v in data):
        out = {}
        for i, value in enumerate(data):
            out.update(flatten(value, f"{prefix}.{i}"))
        return out
    return {prefix: list(data) if isinstance(data, tuple) else data}


def recipe_diff(a: Recipe, b: Recipe) -> list[tuple[str, Any, Any]]:
    """(dotted key, value in a, value in b) for every key that differs; a missing key shows as None."""
    fa, fb = flatten(a.to_dict()), flatten(b.to_dict())
    return [(key, fa.get(key), fb.get(key)) for key in sorted(set(fa) | set(fb), key=_key_order(fa, fb)) if fa.get(key) != fb.get(key)]


def _key_order(fa: Mapping[str, Any], fb: Mapping[str, Any]):
    order = {key: i for i, key in enumerate(list(fa) + [k for k in fb if k not in fa])}
    return order.__getitem__
