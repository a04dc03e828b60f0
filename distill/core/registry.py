"""Model registries: one per family, filled by a decorator in each model's own file.

The CLI's ``--arch`` choices come from ``TEACHERS.names()`` / ``STUDENTS.names()``,
so adding an architecture is adding one file under ``teachers/`` or ``students/``.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, Generic, TypeVar

from distill.core.errors import DistillError

F = TypeVar("F", bound=Callable)


class Registry(Generic[F]):
    def __init__(self, family: str, package: str):
        self.family = family
        self.package = package
        self._entries: dict[str, F] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[F], F]:
        def decorator(fn: F) -> F:
            if name in self._entries and self._entries[name] is not fn:
                raise ValueError(f"{self.family} '{name}' registered twice")
            self._entries[name] = fn
            return fn

        return decorator

    def _load(self) -> None:
        # importing every module of the package runs their @register decorators
        if self._loaded:
            return
        pkg = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(pkg.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{self.package}.{info.name}")
        self._loaded = True

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def get(self, name: str) -> F:
        self._load()
        if name not in self._entries:
            raise DistillError(f"unknown {self.family} '{name}'; choose one of: {', '.join(self.names())}")
        return self._entries[name]


TEACHERS: Registry = Registry("teacher", "teachers")
STUDENTS: Registry = Registry("student", "students")
