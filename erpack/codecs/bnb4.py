"""nf4 and fp4: bitsandbytes quantize_4bit (NormalFloat4 or FP4 code, one float32 absmax a block).

The flattened record is cut into blocks of `blocksize` values; two codes a byte. Encode and decode
both need bitsandbytes (`pip install 'erpack[quant]'`); it runs on CPU.
Layout after the header: absmax float32[ceil(T*H / blocksize)], packed codes uint8[ceil(T*H / 2)].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from erpack.codecs.base import ArrayCodec, param
from erpack.codecs.bnb import functional
from erpack.codecs.registry import register_codec
from erpack.errors import CodecError

BLOCKSIZES = (32, 64, 128, 256, 512, 1024, 2048, 4096)


@dataclass(frozen=True)
class BnB4(ArrayCodec):
    quant_type: ClassVar[str]
    primary = "blocksize"
    needs_torch = True
    blocksize: int = param(64, "values per block, one of 32, 64, 128, 256, 512, 1024, 2048, 4096")

    def __post_init__(self):
        if self.blocksize not in BLOCKSIZES:
            raise CodecError(f"{self.codec_id}: blocksize={self.blocksize!r} is not supported; use one of {list(BLOCKSIZES)}")

    def body_size(self, T: int, H: int) -> int:
        n = T * H
        return 4 * -(-n // self.blocksize) + (n + 1) // 2

    def _encode(self, x: np.ndarray) -> bytes:
        F, torch = functional()
        q, state = F.quantize_4bit(torch.from_numpy(x), blocksize=self.blocksize, quant_type=self.quant_type)
        return state.absmax.numpy().astype("<f4").tobytes() + q.numpy().tobytes()

    def _decode(self, body, out: np.ndarray) -> None:
        F, torch = functional()
        n = out.size
        nblocks = -(-n // self.blocksize)
        absmax = np.frombuffer(body, dtype="<f4", count=nblocks)
        if not np.isfinite(absmax).all():
            raise CodecError(f"{self.codec_id}: the blob's block absmax values are not finite; the blob is garbled")
        codes = np.frombuffer(body, dtype=np.uint8, count=(n + 1) // 2, offset=4 * nblocks).copy()
        state = F.QuantState(
            absmax=torch.from_numpy(absmax.copy()), shape=torch.Size(out.shape), dtype=torch.float32,
            blocksize=self.blocksize, quant_type=self.quant_type,
        )
        y = F.dequantize_4bit(torch.from_numpy(codes).reshape(-1, 1), quant_state=state)
        out[...] = y.numpy().reshape(out.shape)


@register_codec
@dataclass(frozen=True)
class NF4(BnB4):
    codec_id = "nf4"
    tag = 9
    quant_type = "nf4"
    description = "bitsandbytes quantize_4bit, NormalFloat4 code, float32 absmax per block of values."


@register_codec
@dataclass(frozen=True)
class FP4(BnB4):
    codec_id = "fp4"
    tag = 10
    quant_type = "fp4"
    description = "bitsandbytes quantize_4bit, FP4 (e2m1) code, float32 absmax per block of values."
