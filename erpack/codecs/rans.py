"""rANS with static per-component tables, compiled with numba: the entropy coder of the tc codec.

One rANS state of 32 bits, byte-wise renormalisation (state in [2^23, 2^31)), probabilities in
12 bits (M = 4096). A record's codes q (T, K) are coded component-major (all tokens of component
0, then component 1...), so one component's table stays in cache while its column is coded.

Per component k the state holds a shift s_k, a limit L_k and a frequency table f_k of 2 L_k + 2
symbols summing to M: the symbol of a code q is q >> s_k (floor) if it lies in [-L_k, L_k], coded
with f_k[sym + L_k], then its s_k low bits (uniform); any other code is the escape symbol 2 L_k + 1
followed by q + 32768 as two uniform bytes (so |q| <= 32767). The encoder starts from state 2^23
and the decoder must end there having read every byte: a garbled stream is caught.

Stream layout: u32 final state (little-endian), then the bytes the decoder reads in order.
"""

from __future__ import annotations

import numpy as np

from erpack.errors import CodecError

PROB_BITS = 12
M = 1 << PROB_BITS
RANS_L = 1 << 23
LMAX = 126  # alphabet 2 L + 2 <= 254 symbols: slot tables in uint8
QMAX = 32767  # largest |code| (escapes carry 16 bits)
MAX_SHIFT = 12


def _numba():
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a dependency
        raise CodecError("the tc codec needs numba: pip install numba") from None
    return numba


_kernels = None


def kernels():
    """(encode, decode) compiled on first use (numba caches them on disk where it can)."""
    global _kernels
    if _kernels is None:
        _kernels = _compile(_numba())
    return _kernels


def _compile(numba):
    njit = numba.njit(cache=True, nogil=True, boundscheck=False)
    U = np.uint64
    L0, SB, B8, BYTE, MASK = U(RANS_L), U(PROB_BITS), U(8), U(255), U(M - 1)
    XMAX = U((RANS_L >> PROB_BITS) << 8)

    @njit
    def put(x, f, c, buf, pos):
        """Encode one symbol of frequency f and cumulative c: (new state, new pos), pos -1 if full."""
        while x >= XMAX * f:
            pos -= 1
            if pos < 4:
                return x, -1
            buf[pos] = np.uint8(x & BYTE)
            x = x >> B8
        return ((x // f) << SB) + (x % f) + c, pos

    @njit
    def encode(q, shift, lim, freq, cum, buf):
        """q int32 (T, K) -> bytes written backwards into buf; returns the start index (the stream
        is buf[start:]) or -1 if buf is too small."""
        T, K = q.shape
        x = L0
        pos = buf.shape[0]
        for k in range(K - 1, -1, -1):
            s = np.int64(shift[k])
            L = np.int64(lim[k])
            for t in range(T - 1, -1, -1):
                v = np.int64(q[t, k])
                sym = v >> s
                if sym < -L or sym > L:
                    raw = U(v + 32768)
                    f = U(16)
                    x, pos = put(x, f, (raw & BYTE) * f, buf, pos)  # read last: the low byte
                    if pos < 0:
                        return -1
                    x, pos = put(x, f, (raw >> B8) * f, buf, pos)
                    if pos < 0:
                        return -1
                    idx = 2 * L + 1
                else:
                    idx = sym + L
                    if s > 0:
                        f = U(M >> s)
                        x, pos = put(x, f, U(v - (sym << s)) * f, buf, pos)
                        if pos < 0:
                            return -1
                x, pos = put(x, U(freq[k, idx]), U(cum[k, idx]), buf, pos)
                if pos < 0:
                    return -1
        pos -= 4
        for j in range(4):
            buf[pos + j] = np.uint8((x >> U(8 * j)) & BYTE)
        return pos

    @njit
    def decode(data, starts, ends, lengths, shift, lim, freq, cum, slot, cmax, out, bound):
        """Decode R records: record r's T_r x K codes from data[starts[r]:ends[r]] into the next
        T_r columns of out (float32 (K, sum T_r): written along tokens, sequentially). Component-major over the whole batch, so one
        component's tables stay in cache for every record. Returns 0, or 4 r + 1 (record r's stream
        is garbled) or 4 r + 2 (a token of record r breaks sum |q| cmax <= bound)."""
        K = shift.shape[0]
        R = starts.shape[0]
        xs = np.empty(R, dtype=np.uint64)
        ps = np.empty(R, dtype=np.int64)
        for r in range(R):
            if ends[r] - starts[r] < 4:
                return 4 * r + 1
            x = U(0)
            for j in range(4):
                x |= U(data[starts[r] + j]) << U(8 * j)
            if x < L0 or x >= (L0 << B8):
                return 4 * r + 1
            xs[r] = x
            ps[r] = starts[r] + 4
        acc = np.zeros(out.shape[1], dtype=np.int64)
        for k in range(K):
            s = np.int64(shift[k])
            L = np.int64(lim[k])
            esc = 2 * L + 1
            ck = np.int64(cmax[k])
            fs = U(M >> s)
            row = 0
            for r in range(R):
                x = xs[r]
                pos = ps[r]
                end = ends[r]
                for t in range(row, row + lengths[r]):
                    r12 = x & MASK
                    idx = np.int64(slot[k, r12])
                    x = U(freq[k, idx]) * (x >> SB) + r12 - U(cum[k, idx])
                    while x < L0:
                        if pos >= end:
                            return 4 * r + 1
                        x = (x << B8) | U(data[pos])
                        pos += 1
                    if idx == esc:
                        v = np.int64(0)
                        for _j in range(2):
                            r12 = x & MASK
                            b = r12 >> U(PROB_BITS - 8)
                            x = U(16) * (x >> SB) + r12 - b * U(16)
                            while x < L0:
                                if pos >= end:
                                    return 4 * r + 1
                                x = (x << B8) | U(data[pos])
                                pos += 1
                            v = (v << 8) | np.int64(b)
                        v -= 32768
                    else:
                        v = (idx - L) << s
                        if s > 0:
                            r12 = x & MASK
                            b = r12 >> U(PROB_BITS - s)
                            x = fs * (x >> SB) + r12 - b * fs
                            while x < L0:
                                if pos >= end:
                                    return 4 * r + 1
                                x = (x << B8) | U(data[pos])
                                pos += 1
                            v += np.int64(b)
                    out[k, t] = np.float32(v)
                    acc[t] += abs(v) * ck
                xs[r] = x
                ps[r] = pos
                row += lengths[r]
        row = 0
        for r in range(R):
            if ps[r] != ends[r] or xs[r] != L0:
                return 4 * r + 1
            for t in range(row, row + lengths[r]):
                if acc[t] > bound:
                    return 4 * r + 2
            row += lengths[r]
        return 0

    return encode, decode


def normalize(counts: np.ndarray) -> np.ndarray:
    """Counts (n,) >= 0 -> frequencies (n,) uint16, each >= 1, summing to M (deterministic)."""
    counts = np.asarray(counts, dtype=np.float64)
    n = len(counts)
    if not 1 <= n <= M // 2:
        raise ValueError(f"{n} symbols do not fit {PROB_BITS}-bit frequencies")
    total = max(counts.sum(), 1.0)
    f = np.maximum(1, np.floor(counts * (M / total))).astype(np.int64)
    diff = M - int(f.sum())
    if diff > 0:
        f[int(np.argmax(counts))] += diff
    while diff < 0:  # floors of 1 pushed the sum over M: take from the largest, never below 1
        i = int(np.argmax(f))
        take = min(-diff, int(f[i]) - 1)
        f[i] -= take
        diff += take
    return f.astype(np.uint16)


def tables(freq: np.ndarray, lim: np.ndarray):
    """(cum (K, A+1) uint32, slot (K, M) uint8) from freq (K, A) uint16 (zero past each alphabet)."""
    K, A = freq.shape
    cum = np.zeros((K, A + 1), dtype=np.uint32)
    np.cumsum(freq, axis=1, out=cum[:, 1:])
    slot = np.zeros((K, M), dtype=np.uint8)
    for k in range(K):
        n = 2 * int(lim[k]) + 2
        slot[k] = np.repeat(np.arange(n, dtype=np.uint8), freq[k, :n].astype(np.int64))
    return cum, slot


def max_stream_bytes(n_codes: int) -> int:
    """Most bytes a stream of n codes can take: 4 (state) + 28 bits a code (escape: 12 + 16) + 1."""
    return 4 + (28 * n_codes + 7) // 8 + 1
