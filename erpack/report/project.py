"""The arithmetic of the storage-cost report: projected size, monthly cost, encoding cost, break-even.

Everything here is a pure function of measured inputs, so a hand-computed case can pin it.

Size. A record on disk costs a fixed part per document (record header, id, alignment, index entry,
codec header) plus a part per token (codes and per-token scales, after zstd). Both are fitted by
least squares over the measured records: bytes(doc) = a + b * tokens(doc). A corpus of N documents
whose tokens per document average m (the length profile) then takes N * (a + b * m) bytes.

Break-even. Without a cache, every run recomputes layers 0..k-1 on every token: C = T * t_lower
seconds. With one, the corpus is encoded once (E = T * (t_lower + t_encode) seconds) and stored
(S dollars per month), and every run reads and decodes it instead (R = T * t_read seconds). With
p the price of a compute second and M the months the cache is kept:

    n* = (E * p + S * M) / ((C - R) * p)      runs after which the cache has paid for itself

If C <= R, reading costs more than recomputing and the cache never pays (n* = None).
"""

from __future__ import annotations

import math

import numpy as np

from erpack.report.units import GIB  # prices are per GiB-month: what S3 and most clouds call a "GB-month"


def fit_bytes(tokens, nbytes) -> tuple[float, float]:
    """(a, b) with bytes ~= a + b * tokens, least squares; one distinct length: a = 0, b = mean ratio."""
    t = np.asarray(tokens, dtype=np.float64)
    y = np.asarray(nbytes, dtype=np.float64)
    if len(t) == 0:
        raise ValueError("no records to fit")
    if np.ptp(t) == 0:
        return 0.0, float(y.sum() / t.sum())
    b, a = np.polyfit(t, y, 1)
    if a < 0:  # a negative fixed part is noise: refit through the origin's neighbourhood
        a, b = 0.0, float(y.sum() / t.sum())
    return float(a), float(b)


def projected_bytes(a: float, b: float, documents: float, tokens_per_document: float) -> float:
    return documents * (a + b * tokens_per_document)


def monthly_cost(nbytes: float, price_per_gib_month: float) -> float:
    return nbytes / GIB * price_per_gib_month


def break_even(tokens: float, t_lower: float, t_encode: float, t_read: float, storage_per_month: float,
               price_per_hour: float, months: float = 1.0) -> dict:
    """Break-even number of reuse runs (see the module docstring); seconds are per token."""
    p = price_per_hour / 3600.0
    encode_s = tokens * (t_lower + t_encode)
    recompute_s = tokens * t_lower
    read_s = tokens * t_read
    once = encode_s * p + storage_per_month * months
    saved = (recompute_s - read_s) * p
    runs = once / saved if saved > 0 else None
    return {"encode_seconds": encode_s, "recompute_seconds_per_run": recompute_s, "read_seconds_per_run": read_s,
            "encode_cost": encode_s * p, "storage_cost": storage_per_month * months,
            "saved_per_run": saved, "break_even_runs": runs,
            "break_even_runs_ceil": math.ceil(runs) if runs is not None else None}


def corpus_tokens(documents: float | None, tokens: float | None, tokens_per_document: float) -> tuple[float, float]:
    """(documents, tokens) of the projected corpus from one of them and the profile's mean length."""
    if tokens is not None:
        return tokens / tokens_per_document, float(tokens)
    return float(documents), float(documents) * tokens_per_document
