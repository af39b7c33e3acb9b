"""bnb8: bitsandbytes blockwise 8-bit quantization (dynamic tree code, one float32 absmax a block).

The flattened record is cut into blocks of `blocksize` values (the last may be shorter).
Encode and decode both need bitsandbytes (`pip install 'erpack[quant]'`); it runs on CPU, on the
record as one flat vector. The self-check (selfcheck.py) compares its kernels with numpy first.
Layout after the header: absmax float32[ceil(T*H / blocksize)], codes uint8[T*H].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from erpack.codecs import reference
from erpack.codecs.base import param
from erpack.codecs.blockwise import BlockwiseCodec
from erpack.codecs.bnb import functional
from erpack.codecs.registry import register_codec

BLOCKSIZES = (64, 128, 256, 512, 1024, 2048, 4096)
_CODE: list[np.ndarray] = []  # the dynamic map, built once


@register_codec
@dataclass(frozen=True)
class BnB8(BlockwiseCodec):
    codec_id = "bnb8"
    tag = 8
    blocksizes = BLOCKSIZES
    description = "bitsandbytes quantize_blockwise: 8-bit dynamic code, float32 absmax per block of values."
    blocksize: int = param(256, "values per block, one of 64, 128, 256, 512, 1024, 2048, 4096")

    def code_bytes(self, n: int) -> int:
        return n

    def code(self) -> np.ndarray:
        if not _CODE:
            _CODE.append(reference.dynamic_map())
        return _CODE[0]

    def pack(self, index: np.ndarray) -> bytes:
        return index.astype(np.uint8).tobytes()

    def unpack(self, packed: np.ndarray, n: int) -> np.ndarray:
        return packed[:n]

    def kernel_encode(self, x: np.ndarray) -> bytes:
        F, torch = functional()
        flat = torch.from_numpy(np.array(x, dtype=np.float32).reshape(-1))  # a writable copy, (n,)
        q, state = F.quantize_blockwise(flat, blocksize=self.blocksize)
        return state.absmax.numpy().astype("<f4").tobytes() + q.numpy().tobytes()

    def kernel_decode(self, body, out: np.ndarray) -> None:
        F, torch = functional()
        absmax, codes = self.split(body, out.size)
        y = F.dequantize_blockwise(torch.from_numpy(codes.copy()), absmax=torch.from_numpy(absmax.copy()),
                                   blocksize=self.blocksize)
        np.add(y.numpy(), np.float32(0), out=out.reshape(-1))  # -0.0 -> 0.0, as on every path
