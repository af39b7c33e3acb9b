"""zstd: Zstandard compression (lossless), with optional independent streams.

zstd codes all literals of a block with one Huffman table. After `shuffle`, the byte planes have very
different statistics (exponents versus mantissa bits), so `streams=N` compresses N equal slices
as separate frames. `match` is zstd's shortest match: short matches in noisy activation bytes cost
more than they save, so 7 is the default (0 = zstd's own choice for the level).

Decoding never allocates more than the bound the pipeline derives from the record's (checked) shape,
nor more than the frame's own bytes can expand to (MAX_RATIO): a frame whose header claims a larger
size is refused before anything is allocated.
Layout: streams=1 is one standard zstd frame; streams=N is N-1 uint32 frame lengths, then N frames.
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass

import zstandard

from erpack.codecs.base import ByteCodec, as_bytes_view, check_range, param, write_out
from erpack.codecs.registry import register_codec
from erpack.errors import CodecError

# The most a zstd frame can expand: an RLE block turns 4 bytes (3 header, 1 value) into at most 128 KiB.
MAX_RATIO = (128 * 1024) // 4

_local = threading.local()  # zstd (de)compressor objects are not thread-safe: one per thread


def compressor(level: int, match: int) -> zstandard.ZstdCompressor:
    cache = _local.__dict__.setdefault("compressors", {})
    if (level, match) not in cache:
        params = zstandard.ZstdCompressionParameters.from_level(level, **({"min_match": match} if match else {}))
        cache[level, match] = zstandard.ZstdCompressor(compression_params=params)
    return cache[level, match]


def decompressor() -> zstandard.ZstdDecompressor:
    if not hasattr(_local, "decompressor"):
        _local.decompressor = zstandard.ZstdDecompressor()
    return _local.decompressor


def compress_bound(n: int) -> int:
    """ZSTD_COMPRESSBOUND, plus room for a frame header."""
    return n + (n >> 8) + ((131072 - n) >> 11 if n < 131072 else 0) + 32


def slices(n: int, streams: int) -> list[tuple[int, int]]:
    size = n // streams
    edges = [i * size for i in range(streams)] + [n]
    return list(zip(edges[:-1], edges[1:]))


@register_codec
@dataclass(frozen=True)
class Zstd(ByteCodec):
    codec_id = "zstd"
    lossless = True
    primary = "level"
    description = "Zstandard (bytes -> bytes); levels 1-3 are fast, levels above 9 gain nothing on activations."
    level: int = param(3, "compression level, -7..19 (decoding speed does not depend on it)")
    streams: int = param(1, "independent frames over equal slices; match the shuffle element size after shuffle")
    match: int = param(7, "shortest match zstd looks for, 3..7; 0 = zstd's default for the level")

    def __post_init__(self):
        check_range(self.codec_id, "level", self.level, -7, 19)
        check_range(self.codec_id, "streams", self.streams, 1, 64)
        if self.match != 0:
            check_range(self.codec_id, "match", self.match, 3, 7)

    def max_encoded_size(self, n: int) -> int:
        if self.streams == 1:
            return compress_bound(n)
        return 4 * (self.streams - 1) + sum(compress_bound(b - a) for a, b in slices(n, self.streams))

    def encode(self, buf) -> bytes:
        data = as_bytes_view(buf)
        comp = compressor(self.level, self.match)
        if self.streams == 1:
            return comp.compress(data)
        frames = [comp.compress(data[a:b]) for a, b in slices(len(data), self.streams)]
        return struct.pack(f"<{self.streams - 1}I", *(len(f) for f in frames[:-1])) + b"".join(frames)

    def decode(self, buf, out=None, *, max_size: int | None = None):
        if max_size is None:
            if out is None:
                raise CodecError("zstd: decode needs max_size (or out) to bound the output; Pipeline.decode derives it")
            max_size = len(as_bytes_view(out))
        data = as_bytes_view(buf)
        if self.streams == 1:
            return write_out(self._frame(data, max_size), out)
        head = 4 * (self.streams - 1)
        if len(data) < head:
            raise CodecError(f"zstd: {len(data)} bytes cannot hold the {self.streams}-stream header; the blob is truncated")
        lengths = list(struct.unpack_from(f"<{self.streams - 1}I", data))
        lengths.append(len(data) - head - sum(lengths))
        if lengths[-1] < 0:
            raise CodecError(f"zstd: stream lengths {lengths[:-1]} exceed the {len(data)}-byte blob; the blob is truncated or garbled")
        parts, pos, left = [], head, max_size
        for n in lengths:
            part = self._frame(data[pos : pos + n], left)
            parts.append(part)
            pos += n
            left -= len(part)
        return write_out(b"".join(parts), out)

    @staticmethod
    def _frame(frame, bound: int) -> bytes:
        bound = min(bound, MAX_RATIO * len(frame))  # also caps the buffer of a frame that states no size
        try:
            claimed = zstandard.frame_content_size(frame)
        except zstandard.ZstdError:
            raise CodecError(f"zstd: a {len(frame)}-byte frame has no valid zstd header; the blob is truncated or garbled") from None
        if claimed > bound:
            raise CodecError(
                f"zstd: a frame claims {claimed} bytes of content, but this record holds at most {bound}; "
                "refusing to decompress (garbled or hostile blob)"
            )
        try:
            return decompressor().decompress(frame, max_output_size=max(bound, 1), allow_extra_data=False)
        except zstandard.ZstdError as exc:
            raise CodecError(f"zstd: {exc}; the blob is truncated or garbled") from None
