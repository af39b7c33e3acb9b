"""bf16: bfloat16 (float32's exponent, 8-bit significand) by round to nearest even, stored as uint16.

The top 16 bits of each float32 after rounding: byte 1 holds the sign and 7 exponent bits, byte 0 the
last exponent bit and the 7 mantissa bits. `shuffle:2 + zstd:streams=2` then codes the well-behaved
high bytes apart from the incompressible low bytes (about 11 bits a value on BERT-like activations).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from erpack.codecs.base import ArrayCodec
from erpack.codecs.registry import register_codec


def to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> uint16 bfloat16 bits, round to nearest even (finite inputs; overflow becomes inf)."""
    u = x.view(np.uint32)
    rounded = u + (np.uint32(0x7FFF) + ((u >> 16) & 1))  # (T, H) uint32, wraps only for NaN
    return (rounded >> 16).astype("<u2")


@register_codec
@dataclass(frozen=True)
class BF16(ArrayCodec):
    codec_id = "bf16"
    tag = 3
    description = "bfloat16 by round to nearest even, stored as uint16 (2 bytes a value, ~55 dB SQNR, float32 range)."

    def body_size(self, T: int, H: int) -> int:
        return 2 * T * H

    def _encode(self, x: np.ndarray) -> bytes:
        return to_bf16_bits(x).tobytes()

    def _decode(self, body, out: np.ndarray) -> None:
        bits = np.frombuffer(body, dtype="<u2").reshape(out.shape)
        wide = out.view(np.uint32)
        np.left_shift(bits, 16, out=wide, dtype=np.uint32)
