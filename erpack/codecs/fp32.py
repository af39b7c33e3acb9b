"""fp32: the activations as they are, little-endian float32 (lossless, NaN and inf included)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from erpack.codecs.base import ArrayCodec
from erpack.codecs.registry import register_codec


@register_codec
@dataclass(frozen=True)
class FP32(ArrayCodec):
    codec_id = "fp32"
    tag = 1
    lossless = True
    finite_only = False
    description = "float32 as is (4 bytes a value); lossless. Follow with shuffle:4 + zstd to shave ~15%."

    def body_size(self, T: int, H: int) -> int:
        return 4 * T * H

    def _encode(self, x: np.ndarray) -> bytes:
        return x.astype("<f4", copy=False).tobytes()

    def _decode(self, body, out: np.ndarray) -> None:
        out[...] = np.frombuffer(body, dtype="<f4").reshape(out.shape)
