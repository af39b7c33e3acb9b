"""Pure-numpy references for the bitsandbytes quantizers: what nf4, fp4 and bnb8 must compute.

The self-check (erpack/codecs/selfcheck.py) compares the library's kernels with these on a known
input. Each quantizer cuts the flattened record into blocks of `blocksize` values (the last may be
shorter), keeps the block's absmax as float32, and stores for each value the index of the nearest
entry of a code table of values in [-1, 1]; decoding is `code[index] * absmax` in float32.

The tables are bitsandbytes' own: NormalFloat4 and FP4 (e2m1) written out, the 8-bit dynamic map
rebuilt the way `bitsandbytes.functional.create_dynamic_map` builds it. Reading them needs neither
bitsandbytes nor torch.
"""

from __future__ import annotations

import numpy as np

NF4 = np.array(
    [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
     -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
     0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
     0.7229568362236023, 1.0],
    dtype=np.float32,
)
FP4 = np.array(
    [0.0, 0.0052083334885537624, 0.6666666865348816, 1.0, 0.3333333432674408, 0.5, 0.1666666716337204,
     0.25, 0.0, -0.0052083334885537624, -0.6666666865348816, -1.0, -0.3333333432674408, -0.5,
     -0.1666666716337204, -0.25],
    dtype=np.float32,
)
TINY = np.float32(1e-38)  # bitsandbytes' floor for an all-zero block's absmax when scaling


def linspace32(start: float, end: float, n: int) -> np.ndarray:
    """torch.linspace(start, end, n, dtype=float32) exactly: a float32 step, each point rounded once,
    counted from the start for the first half and from the end for the second."""
    lo, hi = np.float32(start), np.float32(end)
    step = np.float64((hi - lo) / np.float32(n - 1))
    i = np.arange(n, dtype=np.float64)
    return np.where(i < n // 2, np.float64(lo) + step * i, np.float64(hi) - step * (n - 1 - i)).astype(np.float32)


def dynamic_map() -> np.ndarray:
    """The 256-entry signed dynamic 8-bit code of bnb8: bitsandbytes' create_dynamic_map(), bit for bit."""
    data: list[float] = []
    for i in range(7):  # exponent 10^(i-6); 2^i fraction steps between 0.1 and 1, float32 arithmetic
        bounds = linspace32(0.1, 1.0, 2**i + 1)
        means = (bounds[:-1] + bounds[1:]) / np.float32(2)
        scale = np.float32(10.0 ** (i - 6))
        data += (scale * means).tolist() + (-scale * means).tolist()
    data += [0.0, 1.0]
    return np.sort(np.array(data, dtype=np.float32))


def block_absmax(x: np.ndarray, blocksize: int) -> np.ndarray:
    """float32 (nblocks,) largest |value| of each block of the flattened x."""
    flat = x.reshape(-1)
    n = flat.size
    pad = -n % blocksize
    padded = np.concatenate([np.abs(flat), np.zeros(pad, np.float32)]) if pad else np.abs(flat)
    return padded.reshape(-1, blocksize).max(axis=1)


def per_value(absmax: np.ndarray, blocksize: int, n: int) -> np.ndarray:
    """The absmax of each of the n values' blocks, float32 (n,)."""
    return np.repeat(absmax, blocksize)[:n]


def quantize(x: np.ndarray, blocksize: int, code: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 x (any shape) -> (absmax float32 (nblocks,), uint8 (n,) index of the nearest code)."""
    flat = x.reshape(-1).astype(np.float32)
    absmax = block_absmax(flat, blocksize)
    scale = np.float32(1) / np.maximum(per_value(absmax, blocksize, flat.size), TINY)
    scaled = np.clip(flat * scale, -1, 1)
    order = np.argsort(code, kind="stable")
    ranked = code[order]
    mids = (ranked[:-1] + ranked[1:]) / np.float32(2)
    return absmax, order[np.searchsorted(mids, scaled, side="left")].astype(np.uint8)


def dequantize(index: np.ndarray, absmax: np.ndarray, blocksize: int, code: np.ndarray) -> np.ndarray:
    """float32 (n,) code[index] * the absmax of each value's block."""
    return code[index] * per_value(absmax, blocksize, index.size)


def pack4(index: np.ndarray) -> bytes:
    """4-bit indices -> bytes as bitsandbytes packs them: value 2i in the high nibble of byte i."""
    flat = index.astype(np.uint8)
    if flat.size % 2:
        flat = np.concatenate([flat, np.zeros(1, np.uint8)])
    return ((flat[0::2] << 4) | flat[1::2]).tobytes()


def unpack4(packed: np.ndarray, n: int) -> np.ndarray:
    """The first n 4-bit indices of bitsandbytes-packed bytes (high nibble first)."""
    out = np.empty(2 * packed.size, dtype=np.uint8)
    out[0::2] = packed >> 4
    out[1::2] = packed & 15
    return out[:n]
