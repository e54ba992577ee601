"""Output shared by the operators' management commands (`dlq`, `outbox`, `models`): cells and tables."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import datetime


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def clip(text: str, width: int) -> str:
    """`text` on one line, cut to `width` characters with an ellipsis."""
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def table(
    header: Sequence[str], rows: Iterable[Sequence], *, right: Collection[int] = (), rule: bool = False
) -> list[str]:
    """The lines of a text table, the header first (under it a line of dashes when `rule`).

    Each column is as wide as its widest cell, header included, two spaces from the next; the
    columns whose index is in `right` (counts, ids) are right-aligned. Cells are written with
    str(); lines have no trailing spaces.
    """
    cells = [[str(cell) for cell in header], *[[str(cell) for cell in row] for row in rows]]
    if any(len(row) != len(header) for row in cells):
        raise ValueError(f"every row of a table needs {len(header)} cells, one per column")
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: list[str]) -> str:
        padded = (cell.rjust(width) if i in right else cell.ljust(width)
                  for i, (cell, width) in enumerate(zip(row, widths, strict=True)))
        return "  ".join(padded).rstrip()

    lines = [line(cells[0])]
    if rule:
        lines.append(line(["-" * width for width in widths]))
    lines += [line(row) for row in cells[1:]]
    return lines
