"""Markdown table cells and tables of the report."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

TARGET_LABELS = {  # key -> (shown name, unit)
    "p50": ("p50", " s"),
    "p95": ("p95", " s"),
    "all_terminal_seconds": ("all terminal", " s"),
    "trainings": ("trainings", ""),
    "lost": ("lost", ""),
    "duplicated": ("dup", ""),
    "seconds": ("train()", " s"),
    "peak_rss_mb": ("peak RSS", " MB"),
}


def describe_target(target: dict[str, float]) -> str:
    """A target as a table cell, e.g. `p50 ≤ 3 s, p95 ≤ 6 s`; an em dash without one."""
    parts = []
    for key, limit in target.items():
        name, unit = TARGET_LABELS.get(key, (key, ""))
        parts.append(f"{name} ≤ {limit:g}{unit}")
    return ", ".join(parts) or "—"


def fmt(value: float | int | None, digits: int = 1) -> str:
    """A number for a table cell; an em dash when it was not measured."""
    if value is None:
        return "—"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def verdict(ok: bool | None) -> str:
    """A target check as a table cell."""
    return "—" if ok is None else ("yes" if ok else "**NO**")


def render_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], left: Sequence[int] = (0,)
) -> str:
    """A markdown table: the columns numbered in `left` left-aligned, the others right-aligned."""
    if any(len(row) != len(headers) for row in rows):
        raise ValueError("every row needs one cell per header")
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(line[i]) for line in cells) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        padded = [
            v.ljust(widths[i]) if i in left else v.rjust(widths[i]) for i, v in enumerate(values)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(
        "-" * (w + 2) if i in left else "-" * (w + 1) + ":" for i, w in enumerate(widths)
    )
    return "\n".join([line(cells[0]), rule + "|"] + [line(row) for row in cells[1:]])
