"""Progress bars for long work (rich, which typer already depends on)."""

from __future__ import annotations

import sys
from typing import Iterable, Iterator, TypeVar

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

T = TypeVar("T")


def track(iterable: Iterable[T], *, total: int | None = None, description: str = "", disable: bool = False) -> Iterator[T]:
    """Iterate with a progress bar on stderr; silent when ``disable`` is set."""
    if disable:
        yield from iterable
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    from rich.console import Console

    with Progress(*columns, console=Console(file=sys.stderr), transient=False) as progress:
        task = progress.add_task(description, total=total)
        for item in iterable:
            yield item
            progress.advance(task)
