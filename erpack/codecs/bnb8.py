"""bnb8: bitsandbytes blockwise 8-bit quantization (dynamic tree code, one float32 absmax a block).

The flattened record is cut into blocks of `blocksize` values (the last may be shorter).
Encode and decode both need bitsandbytes (`pip install 'erpack[quant]'`); it runs on CPU.
Layout after the header: absmax float32[ceil(T*H / blocksize)], codes uint8[T*H].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from erpack.codecs.base import ArrayCodec, param
from erpack.codecs.bnb import functional
from erpack.codecs.registry import register_codec
from erpack.errors import CodecError

BLOCKSIZES = (64, 128, 256, 512, 1024, 2048, 4096)


@register_codec
@dataclass(frozen=True)
class BnB8(ArrayCodec):
    codec_id = "bnb8"
    tag = 8
    primary = "blocksize"
    needs_torch = True
    description = "bitsandbytes quantize_blockwise: 8-bit dynamic code, float32 absmax per block of values."
    blocksize: int = param(256, "values per block, one of 64, 128, 256, 512, 1024, 2048, 4096")

    def __post_init__(self):
        if self.blocksize not in BLOCKSIZES:
            raise CodecError(f"bnb8: blocksize={self.blocksize!r} is not supported; use one of {list(BLOCKSIZES)}")

    def body_size(self, T: int, H: int) -> int:
        n = T * H
        return 4 * -(-n // self.blocksize) + n

    def _encode(self, x: np.ndarray) -> bytes:
        F, torch = functional()
        q, state = F.quantize_blockwise(torch.from_numpy(x.reshape(-1)), blocksize=self.blocksize)
        return state.absmax.numpy().astype("<f4").tobytes() + q.numpy().tobytes()

    def _decode(self, body, out: np.ndarray) -> None:
        F, torch = functional()
        n = out.size
        nblocks = -(-n // self.blocksize)
        absmax = np.frombuffer(body, dtype="<f4", count=nblocks)
        if not np.isfinite(absmax).all():
            raise CodecError("bnb8: the blob's block absmax values are not finite; the blob is garbled")
        codes = np.frombuffer(body, dtype=np.uint8, count=n, offset=4 * nblocks).copy()
        y = F.dequantize_blockwise(torch.from_numpy(codes), absmax=torch.from_numpy(absmax.copy()), blocksize=self.blocksize)
        out.reshape(-1)[...] = y.numpy()
