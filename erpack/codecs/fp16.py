"""fp16: IEEE half precision, round to nearest even (11-bit significand, range +-65504)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from erpack.codecs.base import ArrayCodec
from erpack.codecs.registry import register_codec
from erpack.errors import CodecError

FP16_MAX = 65504.0


@register_codec
@dataclass(frozen=True)
class FP16(ArrayCodec):
    codec_id = "fp16"
    tag = 2
    description = "float16, round to nearest (2 bytes a value, ~70 dB SQNR); values beyond +-65504 are refused: use bf16."

    def body_size(self, T: int, H: int) -> int:
        return 2 * T * H

    def _encode(self, x: np.ndarray) -> bytes:
        peak = float(np.abs(x).max())
        if peak > FP16_MAX:
            raise CodecError(f"fp16: |x| reaches {peak:g}, beyond the float16 range (65504); use bf16 or int8c")
        return x.astype("<f2").tobytes()

    def _decode(self, body, out: np.ndarray) -> None:
        out[...] = np.frombuffer(body, dtype="<f2").reshape(out.shape)
