"""shuffle: byte transpose (as in blosc / numcodecs Shuffle), lossless.

Byte j of every element goes to plane j, so the bytes that vary slowly (exponents, high bytes)
sit together for zstd. Trailing bytes that do not fill an element are kept as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from erpack.codecs.base import ByteCodec, as_bytes_view, check_range, param, write_out
from erpack.codecs.registry import register_codec
from erpack.errors import CodecError


@register_codec
@dataclass(frozen=True)
class Shuffle(ByteCodec):
    codec_id = "shuffle"
    lossless = True
    primary = "elementsize"
    description = "byte shuffle: byte j of each element into plane j (bytes -> bytes, same length)."
    elementsize: int = param(4, "bytes per element: 2 after fp16/bf16, 4 after fp32")

    def __post_init__(self):
        check_range(self.codec_id, "elementsize", self.elementsize, 1, 64)

    def max_encoded_size(self, n: int) -> int:
        return n

    def encode(self, buf) -> bytes:
        data = np.frombuffer(as_bytes_view(buf), dtype=np.uint8)
        m = data.size - data.size % self.elementsize
        return data[:m].reshape(-1, self.elementsize).T.tobytes() + data[m:].tobytes()

    def decode(self, buf, out=None, *, max_size: int | None = None):
        data = np.frombuffer(as_bytes_view(buf), dtype=np.uint8)
        if max_size is not None and data.size > max_size:
            raise CodecError(f"shuffle: {data.size} bytes given where at most {max_size} can occur; the blob is garbled")
        m = data.size - data.size % self.elementsize
        return write_out(data[:m].reshape(self.elementsize, -1).T.tobytes() + data[m:].tobytes(), out)
