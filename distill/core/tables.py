"""Tables for the terminal and for logs: rich on a terminal, plain aligned text everywhere else."""

from __future__ import annotations

PLAIN_WIDTH = 200  # columns of plain-text tables: wide enough that none wraps


def aligned_table(header: list[str], rows: list[list[str]], *, right_from: int, right_to: int | None = None):
    """A borderless rich Table, columns two spaces apart: columns ``right_from`` up to (not including) ``right_to``
    (default: the last) right-aligned, the others left-aligned. Cells are plain text, never read as rich markup."""
    from rich.table import Table
    from rich.text import Text

    right = range(right_from, len(header) if right_to is None else right_to)
    table = Table(box=None, pad_edge=False, show_edge=False)
    for i, name in enumerate(header):
        table.add_column(name, justify="right" if i in right else "left")
    for row in rows:
        table.add_row(*(Text(str(cell)) for cell in row))
    return table


def plain_text(renderable) -> str:
    """A rich renderable as plain text: no styles or ANSI codes, ``PLAIN_WIDTH`` wide, no trailing spaces."""
    import io

    from rich.console import Console

    console = Console(file=io.StringIO(), width=PLAIN_WIDTH, color_system=None, force_terminal=False, highlight=False, emoji=False)
    console.print(renderable, crop=False)
    return "".join(line.rstrip() + "\n" for line in console.file.getvalue().splitlines())
