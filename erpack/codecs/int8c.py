"""int8c: 8-bit codes with one step per block of tokens, widened per channel where the range needs it.

See steps.py for the allocation. The `snr` parameter is the quality each block is quantized to
(the expected SQNR in dB); zstd afterwards removes the code space a narrow channel leaves unused,
so `int8c+zstd` lands near 7 bits a value at 41 dB on MiniLM / MPNet middle layers.
Layout after the header: per block delta float32[nb], e uint8[nb, H]; then codes int8[T, H].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from erpack.codecs import steps
from erpack.codecs.base import ArrayCodec, check_range, param
from erpack.codecs.registry import register_codec


@register_codec
@dataclass(frozen=True)
class Int8C(ArrayCodec):
    codec_id = "int8c"
    tag = 5
    primary = "snr"
    description = (
        "8-bit codes, one step per block of tokens set for a target SQNR, widened per channel for "
        "outlier channels (delta*2^(e/8)); 8 + (32 + 8H)/(block*H) bits a value before zstd."
    )
    snr: float = param(41.0, "target SQNR in dB of each block (higher: finer step, more bits after zstd)")
    block: int = param(64, "tokens per block sharing one step; 0 = the whole record")

    QMAX = 127

    def __post_init__(self):
        check_range(self.codec_id, "snr", self.snr, 1.0, 99.0)
        check_range(self.codec_id, "block", self.block, 0, 1 << 20)

    def body_size(self, T: int, H: int) -> int:
        _, nb = steps.n_blocks(T, self.block)
        return 4 * nb + nb * H + T * H

    def _encode(self, x: np.ndarray) -> bytes:
        delta, e, q = steps.quantize(x, self.QMAX, self.snr, self.block)
        return delta.astype("<f4").tobytes() + e.tobytes() + q.tobytes()

    def _decode(self, body, out: np.ndarray) -> None:
        T, H = out.shape
        B, nb = steps.n_blocks(T, self.block)
        raw = np.frombuffer(body, dtype=np.uint8)
        step = steps.read_steps(body, raw, nb, H, self.codec_id)
        q = raw[4 * nb + nb * H :].view(np.int8).reshape(T, H)
        steps.dequantize(q, step, B, out)
