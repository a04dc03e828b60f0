"""Progress bars for long work (rich, which typer already depends on)."""

from __future__ import annotations

import sys
from typing import Callable, Iterable, Iterator, TypeVar

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

T = TypeVar("T")


def track(iterable: Iterable[T], *, total: int | None = None, description: str = "", disable: bool = False,
          completed: int = 0, size: Callable[[T], int] | None = None) -> Iterator[T]:
    """Iterate with a progress bar on stderr; silent when ``disable`` is set.

    The bar starts at ``completed`` (work done before, e.g. by a resumed run) and each item
    counts for ``size(item)`` of ``total`` (default 1: e.g. ``len`` for batches counted in clips).
    """
    if disable:
        yield from iterable
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    from rich.console import Console

    with Progress(*columns, console=Console(file=sys.stderr), transient=False) as progress:
        task = progress.add_task(description, total=total, completed=completed)
        for item in iterable:
            yield item
            progress.advance(task, 1 if size is None else size(item))
