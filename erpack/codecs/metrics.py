"""Quality and size of a codec on real data: SQNR, token cosine, bits per value.

SQNR in dB is 10 log10(sum x^2 / sum (x - y)^2) over the whole set (not a mean of per-record
values); bits per value count every byte of the encoded blob, headers and scales included.
"""

from __future__ import annotations

import math

import numpy as np


def bits_per_value(nbytes: int, shape) -> float:
    """8 * nbytes / (T * H): what one stored value costs, all overheads included."""
    T, H = shape
    return 8.0 * nbytes / (T * H)


def sqnr_db(x: np.ndarray, y: np.ndarray) -> float:
    """10 log10(sum x^2 / sum (x - y)^2); inf when y equals x."""
    signal, noise = energy(x, y)
    return db(signal, noise)


def energy(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(sum x^2, sum (x - y)^2) in float64, to add up over a set of records."""
    x = np.asarray(x, dtype=np.float32).reshape(-1)
    d = x - np.asarray(y, dtype=np.float32).reshape(-1)
    return float(np.einsum("i,i->", x, x, dtype=np.float64)), float(np.einsum("i,i->", d, d, dtype=np.float64))


def db(signal: float, noise: float) -> float:
    if noise == 0:
        return math.inf
    if signal == 0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def token_cosines(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cosine of each token (row) of x with the same row of y; 1 where both rows are zero."""
    x = np.asarray(x, dtype=np.float64).reshape(-1, np.shape(x)[-1])
    y = np.asarray(y, dtype=np.float64).reshape(-1, np.shape(y)[-1])
    dot = (x * y).sum(axis=1)
    norms = np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1))
    both_zero = norms == 0
    return np.where(both_zero, np.where((x == y).all(axis=1), 1.0, 0.0), dot / np.where(both_zero, 1.0, norms))


def mean_token_cosine(x: np.ndarray, y: np.ndarray) -> float:
    """Mean over tokens (rows) of cos(x_t, y_t)."""
    return float(token_cosines(x, y).mean())


class Meter:
    """Accumulates SQNR, token cosine and size over a set of records."""

    def __init__(self):
        self.signal = self.noise = self.cosine_sum = 0.0
        self.tokens = self.values = self.nbytes = 0

    def add(self, x: np.ndarray, y: np.ndarray, nbytes: int) -> None:
        s, n = energy(x, y)
        self.signal += s
        self.noise += n
        self.cosine_sum += float(token_cosines(x, y).sum())
        self.tokens += x.shape[0]
        self.values += x.size
        self.nbytes += nbytes

    @property
    def sqnr_db(self) -> float:
        return db(self.signal, self.noise)

    @property
    def mean_token_cosine(self) -> float:
        return self.cosine_sum / max(self.tokens, 1)

    @property
    def bits_per_value(self) -> float:
        return 8.0 * self.nbytes / max(self.values, 1)
