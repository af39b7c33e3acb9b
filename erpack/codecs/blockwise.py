"""The base of the bitsandbytes codecs (bnb8, nf4, fp4): blockwise absmax quantizers over the flattened
record, whose kernels come from bitsandbytes and are checked against a numpy reference before use.

Blob body: absmax float32[ceil(T*H / blocksize)], then the codes (`code_bytes(n)` bytes).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from erpack.codecs import reference, selfcheck
from erpack.codecs.base import ArrayCodec
from erpack.codecs.bnb import version
from erpack.errors import CodecError


class BlockwiseCodec(ArrayCodec):
    """Base of the bitsandbytes codecs: absmax float32[nblocks] then codes, over the flattened record.

    Encode and decode run bitsandbytes' kernels (`kernel_encode`, `kernel_decode`) once the
    self-check has passed for this codec in this process (erpack/codecs/selfcheck.py); the numpy
    reference (`reference_encode`, `reference_decode`) is what they are checked against.
    Subclasses set `blocksizes`, `code()`, `pack` / `unpack` and the two kernels."""

    library: ClassVar[str] = "bitsandbytes"
    blocksizes: ClassVar[tuple[int, ...]]
    primary = "blocksize"
    needs_torch = True

    def __post_init__(self):
        if self.blocksize not in self.blocksizes:
            raise CodecError(f"{self.codec_id}: blocksize={self.blocksize!r} is not supported; use one of {list(self.blocksizes)}")

    @staticmethod
    def library_version() -> str:
        return version()

    def n_blocks(self, n: int) -> int:
        return -(-n // self.blocksize)

    def code_bytes(self, n: int) -> int:
        raise NotImplementedError

    def body_size(self, T: int, H: int) -> int:
        n = T * H
        return 4 * self.n_blocks(n) + self.code_bytes(n)

    def split(self, body, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(absmax float32 (nblocks,), packed codes uint8) of a blob body for n values."""
        nblocks = self.n_blocks(n)
        absmax = np.frombuffer(body, dtype="<f4", count=nblocks)
        if not np.isfinite(absmax).all():
            raise CodecError(f"{self.codec_id}: the blob's block absmax values are not finite; the blob is garbled")
        return absmax, np.frombuffer(body, dtype=np.uint8, count=self.code_bytes(n), offset=4 * nblocks)

    def _encode(self, x: np.ndarray) -> bytes:
        selfcheck.ensure(self)
        return self.kernel_encode(x)

    def _decode(self, body, out: np.ndarray) -> None:
        self.split(body, out.size)  # a garbled blob is a CodecError, whatever the kernels
        selfcheck.ensure(self)
        self.kernel_decode(body, out)

    # ---- the numpy reference (erpack/codecs/reference.py) ------------------------------------------
    def code(self) -> np.ndarray:
        raise NotImplementedError

    def pack(self, index: np.ndarray) -> bytes:
        raise NotImplementedError

    def unpack(self, packed: np.ndarray, n: int) -> np.ndarray:
        raise NotImplementedError

    def reference_encode(self, x: np.ndarray) -> bytes:
        absmax, index = reference.quantize(x, self.blocksize, self.code())
        return absmax.astype("<f4").tobytes() + self.pack(index)

    def reference_decode(self, body, out: np.ndarray) -> None:
        absmax, packed = self.split(body, out.size)
        index = self.unpack(packed, out.size)
        out.reshape(-1)[...] = reference.dequantize(index, absmax, self.blocksize, self.code())

    def block_absmax(self, x: np.ndarray) -> np.ndarray:
        """Each value's block absmax, float32 of x's shape."""
        return reference.per_value(reference.block_absmax(x, self.blocksize), self.blocksize, x.size).reshape(x.shape)

    # ---- the library kernels -----------------------------------------------------------------------
    def kernel_encode(self, x: np.ndarray) -> bytes:
        raise NotImplementedError

    def kernel_decode(self, body, out: np.ndarray) -> None:
        raise NotImplementedError
