"""nf4 and fp4: bitsandbytes quantize_4bit (NormalFloat4 or FP4 code, one float32 absmax a block).

The flattened record is cut into blocks of `blocksize` values; two codes a byte (bitsandbytes' order:
value 2i in the high nibble of byte i). Encode and decode both need bitsandbytes
(`pip install 'erpack[quant]'`); it runs on CPU.
Layout after the header: absmax float32[ceil(T*H / blocksize)], packed codes uint8[ceil(T*H / 2)].

Both directions hand bitsandbytes the record as one flat vector, of an even length for decode: its
CPU dequantize_4bit (0.50.2) computes wrong on AVX-512 CPUs when given a 2-D shape whose rows blocks
straddle, and sends an odd length (and, on AVX-512, blocks of 2048 or more) to a fallback that
torch.compile recompiles for every new length (seconds each; that one runs eagerly here). Zeros
decode as +0.0 on every path. The blob is the same either way; the self-check (selfcheck.py)
guards whatever the kernels do.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from erpack.codecs import reference
from erpack.codecs.base import param
from erpack.codecs.blockwise import BlockwiseCodec
from erpack.codecs.bnb import eager, functional
from erpack.codecs.registry import register_codec

BLOCKSIZES = (32, 64, 128, 256, 512, 1024, 2048, 4096)
FALLBACK_BLOCKSIZE = 2048  # from here on bitsandbytes' AVX-512 CPU path decodes with its compiled fallback


@dataclass(frozen=True)
class BnB4(BlockwiseCodec):
    quant_type: ClassVar[str]
    blocksizes = BLOCKSIZES
    blocksize: int = param(64, "values per block, one of 32, 64, 128, 256, 512, 1024, 2048, 4096")

    def code_bytes(self, n: int) -> int:
        return (n + 1) // 2

    def code(self) -> np.ndarray:
        return reference.NF4 if self.quant_type == "nf4" else reference.FP4

    def pack(self, index: np.ndarray) -> bytes:
        return reference.pack4(index)

    def unpack(self, packed: np.ndarray, n: int) -> np.ndarray:
        return reference.unpack4(packed, n)

    def kernel_encode(self, x: np.ndarray) -> bytes:
        F, torch = functional()
        flat = torch.from_numpy(np.array(x, dtype=np.float32).reshape(-1))  # a writable copy, (n,)
        q, state = F.quantize_4bit(flat, blocksize=self.blocksize, quant_type=self.quant_type)
        return state.absmax.numpy().astype("<f4").tobytes() + q.numpy().tobytes()

    def kernel_decode(self, body, out: np.ndarray) -> None:
        F, torch = functional()
        n = out.size
        absmax, packed = self.split(body, n)
        even = n + n % 2  # the padding nibble decodes with the last block's absmax, then is dropped
        state = F.QuantState(
            absmax=torch.from_numpy(absmax.copy()), shape=torch.Size((even,)), dtype=torch.float32,
            blocksize=self.blocksize, quant_type=self.quant_type,
        )
        with eager(torch) if self.blocksize >= FALLBACK_BLOCKSIZE else contextlib.nullcontext():
            y = F.dequantize_4bit(torch.from_numpy(packed.copy()).reshape(-1, 1), quant_state=state)
        np.add(y.reshape(-1)[:n].numpy(), np.float32(0), out=out.reshape(-1))  # -0.0 -> 0.0 as on every path


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
