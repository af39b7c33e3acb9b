"""Fitting the tc codec: predictor, rotation, step and entropy tables from a calibration sample.

    model = fit_structure(X, ids, tokens, rank)   # mean, low-rank per-token table, int8 PCA basis
    delta = search_step(...)                      # one step for every component, for snr= or bits=
    shift, lim, freq = fit_tables(q)              # static per-component rANS tables

The step is searched on held-out data: the sample's records are split in two (by a permutation
drawn from the seed), the structure and tables fitted on one part and the SQNR / bits measured on
the other, so a target is met on records the fit did not see. The final state is then fitted on the
whole sample with that step. Everything is deterministic for a given sample and seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from erpack.codecs import rans
from erpack.errors import CodecError

RECORD_OVERHEAD = 10 + 4 + 1  # header, rANS state, exception count (bytes a record)
TOKEN_ID_BITS = 16  # what the store pays a token for its id (u16; counted in bits targets)
KEEP = 1e-3  # a component is kept if at least this fraction of its codes is non-zero
BOUND = 1 << 24  # every partial sum of the decode product is an integer below 2^24: exact in float32
BASIS_MAX = 127  # int8 basis


@dataclass
class Structure:
    mu: np.ndarray  # (H,) float32
    tokens: np.ndarray  # (n,) int64, sorted
    tab_a: np.ndarray  # (n, r) int8: row j of the table is tab_a[j] * tab_s[j] @ tab_w
    tab_s: np.ndarray  # (n,) float16 row scales
    tab_w: np.ndarray  # (r, H) float16
    basis: np.ndarray  # (H, H) int8, rows = components by falling variance
    bexp: int  # decode basis = basis * 2^-bexp

    def table(self) -> np.ndarray:
        return token_table(self.mu, self.tab_a, self.tab_s, self.tab_w)


def token_table(mu, tab_a, tab_s, tab_w) -> np.ndarray:
    """(n + 1, H) float32 prediction: row 0 the mean (tokens not in the table), row j + 1 the mean
    plus token j's low-rank row. Built with elementwise float64 ops in a fixed order, so every CPU
    gets the same float32 table (no BLAS)."""
    n, r = tab_a.shape
    acc = np.zeros((n, tab_w.shape[1]), dtype=np.float64)
    a = tab_a.astype(np.float64) * tab_s.astype(np.float64)[:, None]
    w = tab_w.astype(np.float64)
    for j in range(r):
        acc += a[:, j, None] * w[None, j, :]
    acc += mu.astype(np.float64)
    return np.concatenate([mu[None, :].astype(np.float32), acc.astype(np.float32)])


def rows_of(tokens: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Row of each id in token_table (0 for ids not in `tokens`)."""
    ids = np.asarray(ids, dtype=np.int64)
    if len(tokens) == 0:
        return np.zeros(len(ids), dtype=np.intp)
    at = np.minimum(np.searchsorted(tokens, ids), len(tokens) - 1)
    return np.where(tokens[at] == ids, at + 1, 0).astype(np.intp)


def fit_structure(X: np.ndarray, ids: np.ndarray, ntok: int, rank: int) -> Structure:
    N, H = X.shape
    mu = X.mean(axis=0, dtype=np.float64).astype(np.float32)
    uniq, cnt = np.unique(ids, return_counts=True)
    order = np.lexsort((uniq, -cnt))[:ntok]
    order = order[cnt[order] >= 2]
    tokens = np.sort(uniq[order]).astype(np.int64)
    r = min(rank, H, len(tokens))
    if r > 0:
        idx = rows_of(tokens, ids) - 1
        sel = idx >= 0
        sums = np.zeros((len(tokens), H), dtype=np.float64)
        np.add.at(sums, idx[sel], X[sel].astype(np.float64) - mu)
        c = np.bincount(idx[sel], minlength=len(tokens)).astype(np.float64)
        means = sums / c[:, None]
        _, _, vt = np.linalg.svd(means * np.sqrt(c)[:, None], full_matrices=False)
        w = canonical_signs(vt[:r])
        a = means @ w.T  # (n, r)
        tab_s = np.maximum(np.abs(a).max(axis=1) / 127, 1e-4).astype(np.float16)
        tab_a = np.clip(np.rint(a / tab_s.astype(np.float64)[:, None]), -127, 127).astype(np.int8)
        tab_w = w.astype(np.float16)
    else:
        tokens = tokens[:0]
        tab_a, tab_s, tab_w = np.zeros((0, 0), np.int8), np.zeros(0, np.float16), np.zeros((0, H), np.float16)
    s = Structure(mu, tokens, tab_a, tab_s, tab_w, np.zeros((H, H), np.int8), 0)
    R = residual(s.table(), rows_of(tokens, ids), X)
    C = R.T.astype(np.float64) @ R.astype(np.float64) / N
    _, u = np.linalg.eigh(C)
    u = canonical_signs(u[:, ::-1].T)  # (H, H) rows = components, falling variance
    s.bexp = int(math.floor(math.log2(BASIS_MAX / max(np.abs(u).max(), 1e-30))))
    s.basis = np.clip(np.rint(np.ldexp(u, s.bexp)), -BASIS_MAX, BASIS_MAX).astype(np.int8)
    return s


def canonical_signs(rows: np.ndarray) -> np.ndarray:
    """Each row times the sign of its largest-magnitude entry (SVD / eigh signs are arbitrary)."""
    pick = np.abs(rows).argmax(axis=1)
    sign = np.where(rows[np.arange(len(rows)), pick] < 0, -1.0, 1.0)
    return rows * sign[:, None]


def residual(table: np.ndarray, rows: np.ndarray, X: np.ndarray) -> np.ndarray:
    return X - table[rows]


def projector(basis: np.ndarray, bexp: int) -> np.ndarray:
    """(H, K) float64 P with y = r P the least-squares coefficients of r on the decode basis
    basis * 2^-bexp (K, H): the decoder's own basis, so its rounding to int8 costs no accuracy."""
    b = np.ldexp(basis.astype(np.float64), -bexp)
    return np.linalg.pinv(b)


def quantize(y: np.ndarray, delta: float) -> np.ndarray:
    return np.rint(y / delta)


def fit_tables(q: np.ndarray):
    """Static rANS tables for codes q (N, K): shift (K,) uint8, lim (K,) uint8, freq (K, A) uint16."""
    N, K = q.shape
    q = q.astype(np.int64)
    sd = q.std(axis=0) if N else np.zeros(K)
    shift = np.clip(np.ceil(np.log2(np.maximum(sd, 1e-9) / 8.0)), 0, rans.MAX_SHIFT).astype(np.uint8)
    sym = q >> shift.astype(np.int64)
    lim = np.minimum(np.abs(sym).max(axis=0) if N else np.zeros(K, np.int64), rans.LMAX).astype(np.uint8)
    A = 2 * int(lim.max()) + 2
    L = lim.astype(np.int64)
    inside = np.abs(sym) <= L
    col = np.where(inside, sym + L, 2 * L + 1)  # (N, K) symbol index, escape last
    counts = np.bincount((col + A * np.arange(K)).ravel(), minlength=K * A).reshape(K, A).astype(np.float64)
    freq = np.zeros((K, A), dtype=np.uint16)
    for k in range(K):
        n = 2 * int(L[k]) + 2
        c = counts[k, :n] + 0.1  # every symbol keeps a frequency >= 1
        c[-1] += 0.9  # the escape: seen + 1
        freq[k, :n] = rans.normalize(c)
    return shift, lim, freq


def code_bits(q: np.ndarray, shift, lim, freq) -> float:
    """Bits the rANS tables spend on codes q (N, K) (the ideal code length; the coder is within a
    few bytes a record of it)."""
    q = q.astype(np.int64)
    s = shift.astype(np.int64)
    L = lim.astype(np.int64)
    sym = q >> s
    inside = np.abs(sym) <= L
    col = np.where(inside, sym + L, 2 * L + 1)
    f = freq[np.arange(q.shape[1])[None, :], col].astype(np.float64)
    extra = np.where(inside, s, 16)
    return float((rans.PROB_BITS - np.log2(f)).sum() + extra.sum())


def search_step(target: str, value: float, y_fit, y_test, norms, signal: float, n_records: int, H: int):
    """The step meeting `target` ('snr' dB or 'bits' a value) on the held-out coefficients y_test
        (tables fitted on y_fit's codes); returns (step, measure, sqnr, bits) at that step."""
    n, K = y_test.shape

    def sqnr(delta):
        e = (y_test - quantize(y_test, delta) * delta) ** 2
        return 10 * math.log10(signal / max(float(e.sum(axis=0) @ norms), 1e-300))

    def bits(delta):
        tables = fit_tables(quantize(y_fit, delta))
        total = code_bits(quantize(y_test, delta), *tables) + 8 * RECORD_OVERHEAD * n_records + TOKEN_ID_BITS * n
        return total / (n * H)

    measure, want = (sqnr, value) if target == "snr" else (bits, value)
    rms = math.sqrt(signal / (n * H)) if target == "snr" else float(np.sqrt((y_test.astype(np.float64) ** 2).mean()))
    lo, hi = 1e-6 * rms + 1e-30, 30 * rms + 1e-30
    for _ in range(24):  # bisection on log delta: both measures fall as the step grows
        mid = math.sqrt(lo * hi)
        if measure(mid) > want:
            lo = mid
        else:
            hi = mid
    delta = math.sqrt(lo * hi)
    got = measure(delta)
    return delta, got, sqnr(delta), bits(delta)


def check_reachable(target: str, value: float, got: float, delta: float) -> None:
    if target == "bits" and abs(got - value) > 0.02:
        raise CodecError(
            f"tc: a budget of {value} bits a value cannot be met on this sample (the closest step gives "
            f"{got:.3f}); the record headers and token ids alone cost about {TOKEN_ID_BITS} bits a token: "
            "ask for a larger bits= or a snr= target"
        )
    if target == "snr" and abs(got - value) > 0.1:
        raise CodecError(
            f"tc: snr={value} dB cannot be reached on this sample (the closest step gives {got:.2f} dB, "
            f"codes are limited to |q| <= {rans.QMAX}); ask for a lower snr= or a bits= target"
        )
