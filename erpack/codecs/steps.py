"""The step allocation behind int8c and int4c: one step for every channel, wider only where needed.

For a given mean squared error, entropy-coded uniform quantization spends the fewest bits when all
values share one step (reverse water-filling at high rate). So each block of tokens gets one step
delta, chosen so the expected noise delta^2/12 sits `snr` dB below the block's mean energy. A channel
whose range does not fit in +-qmax steps (the few outlier channels of a BERT residual stream) gets
its own step delta * 2^(e/8), e a uint8, just wide enough. zstd afterwards turns the unused code
space into saved bits, which is why these codecs are meant to be followed by zstd.

Per block the blob stores delta (float32) and e[H] (uint8); steps are rebuilt exactly (ldexp of
8 fixed float32 constants), so decoding is bit-identical on every platform.
"""

from __future__ import annotations

import math
import struct
import threading

import numpy as np

from erpack.errors import CodecError

# 2 ** (i / 8) for i in 0..7, written out so no libm rounding enters the format.
ROOTS = np.array(
    [1.0, 1.0905077326652577, 1.189207115002721, 1.2968395546510096,
     1.4142135623730951, 1.5422108254079407, 1.681792830507429, 1.8340080864093424],
    dtype=np.float32,
)
E_MAX = 255  # widest channel step: delta * 2^31.875
TINY = float(np.finfo(np.float32).tiny)  # smallest normal float32: 1/TINY is finite
DELTA = struct.Struct("<f")
# 2 ** (e / 8) for every uint8 e: ldexp of the roots is exact, so this table is the same everywhere.
SCALES = np.ldexp(ROOTS[np.arange(256) & 7], np.arange(256) >> 3).astype(np.float32)


_scratch = threading.local()


def scratch_codes(shape: tuple[int, int, int]) -> np.ndarray:
    """An int8 array of `shape` for batch decoding, reused by this thread's next call (fresh
    memory costs a page fault per 4 KB, as much as the dequantization itself). Its contents are
    whatever the last call left: the caller writes every element it reads."""
    n = shape[0] * shape[1] * shape[2]
    buf = getattr(_scratch, "codes", None)
    if buf is None or buf.size < n:
        buf = _scratch.codes = np.empty(max(n, 1 << 20), dtype=np.int8)
    return buf[:n].reshape(shape)


def n_blocks(T: int, block: int) -> tuple[int, int]:
    """(block length B, number of blocks) for T tokens; block 0 means one block per record."""
    B = T if block == 0 else min(block, T)
    return B, -(-T // B)


def channel_steps(delta: np.ndarray, e: np.ndarray) -> np.ndarray:
    """(nb,) float32 delta and (nb, H) uint8 e -> (nb, H) float32 steps delta * 2^(e/8)."""
    steps = SCALES.take(e)  # (nb, H)
    steps *= delta[:, None]
    return steps


def solve_delta(a2: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per block, delta^2 with mean_h max(a2_h, delta^2) == target (float64 (nb, H), (nb,))."""
    nb, H = a2.shape
    top = -np.sort(-a2, axis=1)  # (nb, H) descending
    above = np.cumsum(top, axis=1) - top  # sum of the k widest, k = 0..H-1
    k = np.arange(H)
    d2 = (H * target[:, None] - above) / (H - k)  # delta^2 if exactly k channels keep their own step
    upper = np.concatenate([np.full((nb, 1), np.inf), top[:, :-1]], axis=1)
    miss = np.maximum(top - d2, 0) + np.maximum(d2 - upper, 0)
    best = d2[np.arange(nb), np.argmin(miss, axis=1)]
    reachable = H * target > top.sum(axis=1)  # else even per-channel steps are too coarse: use those
    return np.where(reachable, best, top[:, -1])


def quantize(x: np.ndarray, qmax: int, snr: float, block: int):
    """x float32 (T, H) -> delta float32 (nb,), e uint8 (nb, H), codes int8 (T, H) in [-qmax, qmax]."""
    T, H = x.shape
    B, nb = n_blocks(T, block)
    xb = x if nb * B == T else np.concatenate([x, np.zeros((nb * B - T, H), np.float32)])
    xb = xb.reshape(nb, B, H)
    peak = np.abs(xb).max(axis=1)  # (nb, H)
    count = np.minimum(B, T - B * np.arange(nb)) * H  # values per block
    energy = np.einsum("bth,bth->b", xb, xb, dtype=np.float64) / count
    a = peak.astype(np.float64) / qmax
    d2 = solve_delta(a * a, 12.0 * energy * 10.0 ** (-snr / 10.0))
    delta = np.maximum(np.sqrt(d2), a.max(axis=1) * 2.0**-31)
    delta = np.where(delta > TINY, np.minimum(delta, 1e38), 1.0).astype(np.float32)  # finite float32
    ratio = np.maximum(a / delta[:, None], 1.0)
    e = np.clip(np.ceil(8.0 * np.log2(ratio)), 0, E_MAX).astype(np.uint8)
    steps = channel_steps(delta, e)
    with np.errstate(over="ignore"):  # near float32's limit a wide step overflows: it is wide enough then
        short = steps * np.float32(qmax) < peak  # float rounding: widen by one notch
    if short.any():
        e = np.where(short, np.minimum(e.astype(np.int32) + 1, E_MAX), e).astype(np.uint8)
        steps = channel_steps(delta, e)
    q = np.rint(xb * (np.float32(1) / steps)[:, None, :])  # (nb, B, H)
    np.clip(q, -qmax, qmax, out=q)
    return delta, e, q.reshape(nb * B, H)[:T].astype(np.int8)


def read_steps(body, raw: np.ndarray, nb: int, H: int, name: str) -> np.ndarray:
    """Steps from the start of a blob body (delta float32[nb], then e uint8[nb, H]); `raw` is the
    body as a uint8 array. Returns (H,) float32 for one block, (nb, H) for several."""
    if nb == 1:  # the common case (a record shorter than a block): no array for one delta
        (delta,) = DELTA.unpack_from(body)
        ok = 0.0 < delta < math.inf
    else:
        delta = np.frombuffer(body, dtype="<f4", count=nb)[:, None]
        ok = all(0.0 < d < math.inf for d in delta[:, 0].tolist())
    if not ok:
        raise CodecError(f"{name}: the blob's block steps are not finite positive numbers; the blob is garbled")
    steps = SCALES.take(raw[4 * nb : 4 * nb + nb * H])
    if nb > 1:
        steps = steps.reshape(nb, H)
    steps *= delta  # float32 products, the same for a Python float holding a float32 and for the array
    return steps


def dequantize(q: np.ndarray, steps: np.ndarray, B: int, out: np.ndarray) -> None:
    """out (T, H) = codes (T, H) * the step of their block and channel, vectorised per block."""
    if steps.ndim == 1:
        np.multiply(q, steps, out=out)
        return
    T, H = out.shape
    nb = steps.shape[0]
    full = T // B
    if full:
        np.multiply(q[: full * B].reshape(full, B, H), steps[:full, None, :], out=out[: full * B].reshape(full, B, H))
    if full < nb:
        np.multiply(q[full * B :], steps[full], out=out[full * B :])
