"""The report's one unit convention: binary sizes (KiB, MiB, GiB, TiB, PiB: powers of 2^10).

Storage is priced per GiB-month (what S3 and most clouds call a "GB-month" is 2^30 bytes), so the
report states sizes, prices, chart axes and JSON keys in the same binary units.
"""

from __future__ import annotations

KIB, MIB, GIB, TIB, PIB = (2**10, 2**20, 2**30, 2**40, 2**50)
UNITS = (("PiB", PIB), ("TiB", TIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB))


def human_size(nbytes: float, digits: int = 2) -> str:
    """`nbytes` in the largest binary unit it reaches: 1536 -> "1.50 KiB"."""
    for unit, scale in UNITS:
        if nbytes >= scale:
            return f"{nbytes / scale:.{digits}f} {unit}"
    return f"{nbytes:.0f} B"


def mib_per_second(mb_per_second: float | None) -> float | None:
    """A codec speed measured in MB/s (10^6 bytes, erpack.compress) in MiB/s."""
    return None if mb_per_second is None else mb_per_second * 1e6 / MIB
