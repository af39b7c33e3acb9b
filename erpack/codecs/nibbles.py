"""Two 4-bit codes per byte: code i of the flattened (row-major) array sits in byte i // 2, low
nibble first. An odd count leaves the last high nibble zero."""

from __future__ import annotations

import numpy as np


def packed_size(n: int) -> int:
    return (n + 1) // 2


def pack(codes: np.ndarray) -> bytes:
    """uint8 codes in 0..15, any shape -> packed bytes."""
    flat = codes.reshape(-1).astype(np.uint8)
    if flat.size % 2:
        flat = np.concatenate([flat, np.zeros(1, np.uint8)])
    return (flat[0::2] | (flat[1::2] << 4)).tobytes()


def unpack(buf, n: int, offset: int = 0) -> np.ndarray:
    """n uint8 codes in 0..15 from packed bytes."""
    packed = np.frombuffer(buf, dtype=np.uint8, count=packed_size(n), offset=offset)
    codes = np.empty(2 * packed.size, dtype=np.uint8)
    np.bitwise_and(packed, 15, out=codes[0::2])
    np.right_shift(packed, 4, out=codes[1::2])
    return codes[:n]
