"""int8: symmetric 8-bit codes with one float32 scale per token (absmax / 127).

The simplest int8: a token's largest |value| sets its step. BERT-like residual streams carry a few
wide outlier channels, so that step is coarse for every other channel (about 36 dB SQNR at layer k):
prefer int8c, which gives each channel the step it needs.
Layout after the header: scales float32[T], codes int8[T, H].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from erpack.codecs.base import ArrayCodec
from erpack.codecs.registry import register_codec
from erpack.errors import CodecError


@register_codec
@dataclass(frozen=True)
class Int8(ArrayCodec):
    codec_id = "int8"
    tag = 4
    description = "8-bit codes, one float32 scale (absmax/127) per token: 8 + 32/H bits a value."

    def body_size(self, T: int, H: int) -> int:
        return 4 * T + T * H

    def _encode(self, x: np.ndarray) -> bytes:
        scale = (np.abs(x).max(axis=1) / np.float32(127)).astype("<f4")  # (T,)
        with np.errstate(over="ignore"):  # 1/scale of a subnormal scale is inf: codes clip to +-127
            inv = np.divide(1.0, scale, out=np.zeros_like(scale), where=scale > 0)
        q = np.rint(x * inv[:, None])  # (T, H)
        np.clip(q, -127, 127, out=q)
        return scale.tobytes() + q.astype(np.int8).tobytes()

    def _decode(self, body, out: np.ndarray) -> None:
        T, H = out.shape
        scale = np.frombuffer(body, dtype="<f4", count=T)
        if not np.isfinite(scale).all() or (scale < 0).any():
            raise CodecError("int8: the blob's token scales are not finite non-negative numbers; the blob is garbled")
        q = np.frombuffer(body, dtype=np.int8, offset=4 * T).reshape(T, H)
        np.multiply(q, scale[:, None], out=out)
