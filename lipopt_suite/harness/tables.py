"""Number and markdown-table formatting shared by the report and the paper tables."""

from __future__ import annotations

import math
from collections.abc import Sequence


def fmt(v: float | None, digits: int = 4) -> str:
    """A value for a table: 4 significant digits, integers in full below 1e7, else
    scientific notation; a missing value as a dash."""
    if v is None or not math.isfinite(v):
        return "—" if v is None else str(v)
    if v == 0 or 1e-3 <= abs(v) < 1e7:
        text = f"{v:.{digits}g}"
        if "e" in text:  # .4g writes 12345 as 1.234e+04: print the integer instead
            text = f"{v:.0f}"
        return text
    return f"{v:.3e}"


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A markdown table, one line per row (pipes inside cells escaped)."""
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return out
