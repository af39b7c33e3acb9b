"""How the report writes sizes: one home for the unit convention its text and figures share."""

from __future__ import annotations


def size_text(nbytes: float) -> str:
    """A byte count in the largest decimal unit it reaches, e.g. 1.23 TB (10^12 bytes)."""
    for unit, scale in (("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.2f} {unit}"
    return f"{nbytes:.0f} B"
