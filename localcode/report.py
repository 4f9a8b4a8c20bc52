"""The one way we print a table for people (the plan, the doctor, the lab's status)."""

from __future__ import annotations


def text_table(header: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns two spaces apart, trailing spaces trimmed."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows])
