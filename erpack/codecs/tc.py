"""tc: a transform codec fitted on the cache, entropy coded, decoded by one exact matrix product.

    x (T, H)  ->  r = x - table[token]          per-token prediction (mean + low-rank rows of frequent tokens)
              ->  y = r P                       coefficients on the fitted basis (PCA of the residual)
              ->  q = rint(y / delta)           one step for every kept component (reverse water-filling)
              ->  rANS with static tables       per component (rans.py)
    decode:   x^ = (q B) * (delta 2^(e_t - b)) + table[token]

B is an int8 (K, H) matrix (the PCA basis times 2^b, rounded; P is the least-squares inverse of that
rounded basis, so rounding costs no accuracy), q holds integers, and the encoder guarantees
sum_k |q_k| max_h |B_kh| <= 2^24 for every token (coarsening a rare token by 2^e_t), so every partial
sum of q B is an integer float32 holds exactly: the product is the same in any summation order, on
any BLAS and CPU, and what follows is two elementwise float32 operations. The decoder checks the
bound (a blob that breaks it is refused). Components whose codes are all but never non-zero at the
fitted step are dropped (K <= H): they carry no bits and would cost decode time.

Targets: `tc:snr=19` (the SQNR in dB, measured on held-out records of the sample) or `tc:bits=2`
(bits a value counting codes, record headers and 16-bit token ids; the fitted state is counted
apart). Layout after the 10-byte header: uvarint n, n x (u32 token, u8 e) coarsened tokens in
rising order, then the rANS stream (u32 state, bytes). docs/codecs.md has the state's arrays.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from erpack.codecs import rans, tcfit
from erpack.codecs.base import HEADER, ArrayCodec, check_range, param
from erpack.codecs.registry import register_codec
from erpack.codecs.state import FittedState
from erpack.errors import CodecError

STATE_VERSION = 1
EXC = struct.Struct("<IB")
MAX_E = 40


@register_codec
@dataclass(frozen=True)
class TC(ArrayCodec):
    codec_id = "tc"
    tag = 11
    primary = "snr"
    fitted: ClassVar[bool] = True
    needs_tokens: ClassVar[bool] = True
    exact_size: ClassVar[bool] = False
    show_primary_default: ClassVar[bool] = False
    description = (
        "transform codec fitted on the cache: per-token prediction, PCA basis, one step, rANS with "
        "static tables; tc:snr=DB or tc:bits=B (codes, headers and token ids counted)."
    )
    snr: float = param(0.0, "target SQNR in dB on held-out records of the fit sample (0: use bits=)")
    bits: float = param(0.0, "target bits a value: codes + record headers + 16-bit token ids (0: use snr=)")
    tokens: int = param(2000, "most frequent tokens given a row of the prediction table")
    rank: int = param(32, "rank of the prediction table (fp16 rows of this length)")

    def __post_init__(self):
        if (self.snr > 0) == (self.bits > 0):
            raise CodecError("tc needs exactly one target: tc:snr=DB (e.g. tc:snr=19) or tc:bits=B (e.g. tc:bits=2)")
        if self.snr:
            check_range(self.codec_id, "snr", self.snr, 1.0, 80.0)
        if self.bits:
            check_range(self.codec_id, "bits", self.bits, 0.1, 16.0)
        check_range(self.codec_id, "tokens", self.tokens, 0, 1 << 20)
        check_range(self.codec_id, "rank", self.rank, 0, 4096)

    # ---- fitting --------------------------------------------------------------------------------
    def fit(self, records, *, context: dict | None = None, seed: int = 0) -> TC:
        X, ids, lengths = stack(records)
        n = len(lengths)
        N, H = X.shape
        perm = np.random.default_rng(seed).permutation(n)
        starts = np.concatenate([[0], np.cumsum(lengths)])
        part_a, part_b = (perm[: n // 2], perm[n // 2 :]) if n >= 2 else (perm, perm)

        def rows(part):
            return np.concatenate([np.arange(starts[i], starts[i + 1]) for i in sorted(part)])

        ra, rb = rows(part_a), rows(part_b)
        sa = tcfit.fit_structure(X[ra], ids[ra], self.tokens, self.rank)
        pa = tcfit.projector(sa.basis, sa.bexp)
        ta = sa.table()
        y_fit = (tcfit.residual(ta, tcfit.rows_of(sa.tokens, ids[ra]), X[ra]) @ pa).astype(np.float32)
        y_test = (tcfit.residual(ta, tcfit.rows_of(sa.tokens, ids[rb]), X[rb]) @ pa).astype(np.float32)
        norms = (np.ldexp(sa.basis.astype(np.float64), -sa.bexp) ** 2).sum(axis=1)
        signal = float(np.einsum("ij,ij->", X[rb], X[rb], dtype=np.float64))
        target, value = ("snr", self.snr) if self.snr else ("bits", self.bits)
        delta, got, sq, bt = tcfit.search_step(target, value, y_fit, y_test, norms, signal, len(part_b), H)
        tcfit.check_reachable(target, value, got, delta)
        delta = np.float32(delta)

        s = tcfit.fit_structure(X, ids, self.tokens, self.rank)
        table = s.table()
        r = tcfit.residual(table, tcfit.rows_of(s.tokens, ids), X)
        q = tcfit.quantize(r @ tcfit.projector(s.basis, s.bexp), float(delta))
        keep = (q != 0).mean(axis=0) >= tcfit.KEEP
        keep[0] = True
        basis = s.basis[keep]
        q = tcfit.quantize(r @ tcfit.projector(basis, s.bexp), float(delta))
        shift, lim, freq = tcfit.fit_tables(q)
        meta = {
            "context": context, "params": self.params(), "seed": seed,
            "sample": {"records": n, "tokens": int(N)},
            "fit": {"step": float(delta), "components": int(keep.sum()), "basis_exponent": s.bexp,
                    "heldout_sqnr_db": round(sq, 3), "heldout_bits": round(bt, 4)},
        }
        arrays = {"mu": s.mu, "tokens": s.tokens.astype(np.uint32), "table_a": s.tab_a, "table_s": s.tab_s, "table_w": s.tab_w, "basis": basis,
                  "delta": np.array([delta], np.float32), "shift": shift, "lim": lim,
                  "freq": np.concatenate([freq[k, : 2 * int(lim[k]) + 2] for k in range(len(lim))])}
        return self.with_state(FittedState(codec="tc", version=STATE_VERSION, meta=meta, arrays=arrays))

    def with_state(self, state) -> TC:
        if state is None:
            return self
        return self._attach(Model.check(state))

    @property
    def model(self) -> Model:
        self.require_state()
        return self.state.__dict__["_model"]

    # ---- coding -----------------------------------------------------------------------------------
    def body_size(self, T: int, H: int) -> int:
        K = self.model.K if self.state is not None else H
        return 5 + EXC.size * T + rans.max_stream_bytes(T * K)

    def _encode_tokens(self, x: np.ndarray, tokens: np.ndarray) -> bytes:
        m = self.model
        m.check_h(x.shape[1])
        y = (x - m.table[tcfit.rows_of(m.tokens, tokens)]) @ m.proj  # (T, K) float64
        q = np.rint(y / m.delta)
        e = np.zeros(len(q), dtype=np.int64)
        while True:
            over = ((np.abs(q) @ m.cmax) > tcfit.BOUND) | (np.abs(q).max(axis=1) > rans.QMAX)
            if not over.any():
                break
            e[over] += 1
            if e.max() > MAX_E:
                raise CodecError("tc: a token's values are too large to code (beyond 2^40 steps); is the input finite and of this model?")
            q[over] = np.rint(y[over] / np.ldexp(m.delta, e[over])[:, None])
        enc, _ = rans.kernels()
        buf = np.empty(rans.max_stream_bytes(q.size), dtype=np.uint8)
        start = enc(q.astype(np.int32), m.shift, m.lim, m.freq, m.cum, buf)
        if start < 0:  # pragma: no cover - max_stream_bytes bounds every stream
            raise CodecError("tc: the rANS stream overflowed its bound")
        at = np.flatnonzero(e)
        head = uvarint(len(at)) + b"".join(EXC.pack(int(t), int(e[t])) for t in at)
        return head + buf[start:].tobytes()

    def _decode_tokens(self, body, out: np.ndarray, tokens: np.ndarray) -> None:
        m = self.model
        T, H = out.shape
        m.check_h(H)
        codes = np.empty((m.K, T), dtype=np.float32)  # component-major, as coded
        scale = np.full(T, m.step, dtype=np.float32)
        data = np.frombuffer(body, dtype=np.uint8)
        at = self._exceptions(data, T, scale, 0)
        self._entropy_decode(data, np.array([at]), np.array([len(data)]), np.array([T]), codes)
        np.matmul(codes.T, m.basis_f, out=out)  # exact: integer partial sums below 2^24
        out *= scale[:, None]
        out += m.table[tcfit.rows_of(m.tokens, tokens)]

    def _exceptions(self, data: np.ndarray, T: int, scale: np.ndarray, s0: int) -> int:
        """Read a record's coarsened tokens into scale[s0 + t]; return where its rANS stream starts."""
        m = self.model
        n, at = read_uvarint(data, 0)
        if n > T or at + EXC.size * n > len(data):
            raise CodecError(f"tc: the blob lists {n} coarsened tokens for a {T}-token record; the blob is garbled")
        last = -1
        for _ in range(n):
            t, e = EXC.unpack_from(data, at)
            at += EXC.size
            if not (last < t < T and 1 <= e <= MAX_E):
                raise CodecError("tc: the blob's coarsened tokens are out of order or range; the blob is garbled")
            scale[s0 + t] = np.ldexp(np.float32(m.delta), e - m.bexp)
            last = t
        return at

    def _entropy_decode(self, data, starts, ends, lengths, codes) -> None:
        m = self.model
        _, dec = rans.kernels()
        rc = dec(data, starts.astype(np.int64), ends.astype(np.int64), lengths.astype(np.int64),
                 m.shift, m.lim, m.freq, m.cum, m.slot, m.cmax, codes, tcfit.BOUND)
        where = f" (record {rc // 4} of the batch)" if len(starts) > 1 else ""
        if rc % 4 == 1:
            raise CodecError(f"tc: a blob's entropy-coded stream does not decode{where}; the blob is garbled "
                             "or was written with another fitted state")
        if rc % 4 == 2:
            raise CodecError(f"tc: a blob's codes break the exact-product bound (sum |q| |B| <= 2^24){where}; the blob is garbled")

    def decode_batch(self, views, lengths, out: np.ndarray, tokens=None) -> None:
        """Every record's codes into one (K, sum T) matrix (the entropy decoder runs component-major
        over the whole batch), one product with the basis, then the row scales and the token table,
        written into the zero-padded batch."""
        m = self.model
        B, Tm, H = out.shape
        m.check_h(H)
        if tokens is None:
            self.check_tokens(None, 1)
        total = int(sum(lengths))
        scale = np.full(total, m.step, dtype=np.float32)
        rows = np.empty(total, dtype=np.intp)
        parts, starts, ends = [], np.empty(B, np.int64), np.empty(B, np.int64)
        o = base = 0
        for r, (view, t) in enumerate(zip(views, lengths)):
            self.check_header(view, t, H)
            ids = self.check_tokens(tokens[r], t)
            data = np.frombuffer(view, dtype=np.uint8, offset=HEADER.size)
            starts[r] = base + self._exceptions(data, t, scale, o)
            base += len(data)
            ends[r] = base
            parts.append(data)
            rows[o : o + t] = tcfit.rows_of(m.tokens, ids)
            o += t
        codes = np.empty((m.K, total), dtype=np.float32)  # component-major, as coded
        self._entropy_decode(np.concatenate(parts), starts, ends, np.asarray(lengths, np.int64), codes)
        prod = codes.T @ m.basis_f  # (sum T, H): exact integers
        prod *= scale[:, None]
        scatter_add()(prod, m.table, rows, np.asarray(lengths, dtype=np.int64), out)


class Model:
    """What decode and encode need, derived once from a checked FittedState."""

    NAMES = ("basis", "delta", "freq", "lim", "mu", "shift", "table_a", "table_s", "table_w", "tokens")

    @classmethod
    def check(cls, state) -> FittedState:
        """The state with a Model attached, or CodecError saying what is wrong with it."""
        if not isinstance(state, FittedState):
            raise CodecError(f"tc: a fitted state is a FittedState, got {type(state).__name__}")
        bad = "tc: the fitted state is damaged or not a tc state"
        if state.codec != "tc" or state.version != STATE_VERSION:
            raise CodecError(f"tc: the fitted state is for codec {state.codec!r} version {state.version}, "
                             f"not tc version {STATE_VERSION}; re-fit the codec or upgrade erpack")
        a = state.arrays
        if sorted(a) != sorted(cls.NAMES):
            raise CodecError(f"{bad}: it holds arrays {sorted(a)}, not {list(cls.NAMES)}; re-fit the codec")
        try:
            m = cls(a, state.meta)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise CodecError(f"{bad} ({e}); restore it from a copy or re-fit the codec") from None
        state.__dict__["_model"] = m
        return state

    def __init__(self, a: dict, meta: dict):
        def need(name, dtype, shape):
            arr = a[name]
            if arr.dtype != np.dtype(dtype) or arr.shape != shape:
                raise ValueError(f"array {name} is {arr.dtype} {arr.shape}, expected {np.dtype(dtype)} {shape}")
            return arr

        self.H = H = a["mu"].shape[0] if a["mu"].ndim == 1 else -1
        if H < 1:
            raise ValueError("mu is not a (H,) vector")
        self.mu = need("mu", np.float32, (H,))
        n = a["tokens"].shape[0] if a["tokens"].ndim == 1 else -1
        self.tokens = need("tokens", np.uint32, (n,)).astype(np.int64)
        if n and not (np.diff(self.tokens) > 0).all():
            raise ValueError("token ids are not strictly increasing")
        r = a["table_a"].shape[1] if a["table_a"].ndim == 2 else -1
        self.tab_a = need("table_a", np.int8, (n, r))
        self.tab_s = need("table_s", np.float16, (n,))
        self.tab_w = need("table_w", np.float16, (r, H))
        K = a["basis"].shape[0] if a["basis"].ndim == 2 else -1
        if not 1 <= K <= H:
            raise ValueError(f"the basis has {K} components for {H} channels")
        basis = need("basis", np.int8, (K, H))
        self.K = K
        self.shift = need("shift", np.uint8, (K,))
        self.lim = need("lim", np.uint8, (K,))
        if (self.shift > rans.MAX_SHIFT).any() or (self.lim > rans.LMAX).any():
            raise ValueError("shift or limit out of range")
        width = 2 * self.lim.astype(np.int64) + 2
        flat = need("freq", np.uint16, (int(width.sum()),))
        ends = np.cumsum(width)
        if (flat == 0).any() or (np.add.reduceat(flat.astype(np.int64), ends - width) != rans.M).any():
            raise ValueError(f"frequency tables do not each sum to {rans.M} with every symbol >= 1")
        self.freq = np.zeros((K, int(width.max())), dtype=np.uint16)  # (K, A): zero past each alphabet
        for k in range(K):
            self.freq[k, : width[k]] = flat[ends[k] - width[k] : ends[k]]
        delta = need("delta", np.float32, (1,))[0]
        if not (np.isfinite(delta) and delta > 0):
            raise ValueError("the step is not a finite positive number")
        self.bexp = int(meta["fit"]["basis_exponent"])
        if not 0 <= self.bexp <= 30:
            raise ValueError("basis exponent out of range")
        if not (np.isfinite(self.mu).all() and np.isfinite(self.tab_s).all() and np.isfinite(self.tab_w).all()):
            raise ValueError("prediction table is not finite")
        self.delta = float(delta)
        self.step = np.ldexp(np.float32(delta), -self.bexp)  # float32, exact: the decode row scale
        self.table = tcfit.token_table(self.mu, self.tab_a, self.tab_s, self.tab_w)
        self.basis_f = basis.astype(np.float32)
        self.cmax = np.abs(basis.astype(np.int64)).max(axis=1)
        self.proj = tcfit.projector(basis, self.bexp)
        self.cum, self.slot = rans.tables(self.freq, self.lim)

    def check_h(self, H: int) -> None:
        if H != self.H:
            raise CodecError(f"tc: the fitted state is for hidden size {self.H}, the record has {H}; "
                             "it belongs to another model or layer")


def stack(records):
    """(X float32 (N, H), ids int64 (N,), lengths) from [(x (T, H), ids (T,)), ...]."""
    xs, ids, lengths = [], [], []
    for i, rec in enumerate(records):
        x, t = rec
        x = np.asarray(x)
        if t is None:
            raise CodecError(f"tc: fit record {i} has no token ids; tc predicts from them (re-encode the cache with this erpack)")
        t = np.asarray(t)
        if x.dtype != np.float32 or x.ndim != 2 or t.shape != (x.shape[0],) or t.dtype.kind not in "iu":
            raise CodecError(f"tc: fit record {i} must be float32 (T, H) with integer ids (T,), got {x.dtype} {x.shape} / {t.dtype} {t.shape}")
        if xs and x.shape[1] != xs[0].shape[1]:
            raise CodecError(f"tc: fit record {i} has hidden size {x.shape[1]}, the first had {xs[0].shape[1]}")
        if not np.isfinite(x).all():
            raise CodecError(f"tc: fit record {i} holds values that are not finite")
        if len(t) and (t.min() < 0 or t.max() >= 2**32):
            raise CodecError(f"tc: fit record {i} has token ids outside [0, 2^32)")
        xs.append(x)
        ids.append(t.astype(np.int64))
        lengths.append(x.shape[0])
    if not xs or sum(lengths) < 2:
        raise CodecError("tc: fitting needs a sample of at least two tokens (records with token ids)")
    return np.concatenate(xs), np.concatenate(ids), np.asarray(lengths)


def uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_uvarint(data, at: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        if at >= len(data) or shift > 28:
            raise CodecError("tc: the blob's coarsened-token count does not parse; the blob is garbled")
        b = int(data[at])
        at += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, at


_scatter = None


def scatter_add():
    """numba kernel: out[r, t] = prod[i] + table[rows[i]] for record r's tokens, zeros past each
    record's length. One IEEE float32 addition an element: the same on every CPU."""
    global _scatter
    if _scatter is None:
        numba = rans._numba()

        @numba.njit(cache=True, nogil=True, boundscheck=False)
        def kernel(prod, table, rows, lengths, out):
            B, Tm, H = out.shape
            i = 0
            for r in range(B):
                for t in range(Tm):
                    if t < lengths[r]:
                        src = rows[i]
                        for h in range(H):
                            out[r, t, h] = prod[i, h] + table[src, h]
                        i += 1
                    else:
                        for h in range(H):
                            out[r, t, h] = 0.0

        _scatter = kernel
    return _scatter
