"""zstd and shuffle as byte codecs: round trips, streams, and the decompression bound."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import zstandard

from erpack.codecs import Pipeline, get_codec
from erpack.errors import CodecError

from .cases import activations

DATA = np.random.default_rng(1).integers(0, 20, 5000).astype(np.uint8).tobytes()


@pytest.mark.parametrize("streams", [1, 2, 3, 4, 7])
def test_zstd_streams_round_trip(streams):
    z = get_codec({"id": "zstd", "streams": streams})
    for data in (DATA, DATA[:5], b"", DATA[:4097]):
        blob = z.encode(data)
        assert len(blob) <= z.max_encoded_size(len(data))
        assert z.decode(blob, max_size=len(data)) == data


def test_zstd_needs_a_bound():
    z = get_codec({"id": "zstd"})
    with pytest.raises(CodecError, match="needs max_size"):
        z.decode(z.encode(DATA))
    out = bytearray(len(DATA))
    assert z.decode(z.encode(DATA), out=out) is out and bytes(out) == DATA


def test_frame_claiming_a_huge_size_is_refused_before_allocation():
    """A zstd frame whose header claims 1 TB must be refused, not allocated."""
    huge = zstandard.ZstdCompressor(level=1).compress(bytes(1000))
    header = bytearray(huge)
    # rewrite the frame: single segment, 8-byte content size field claiming 2**40 bytes
    fhd = header[4]
    assert fhd & 0x20  # single-segment frame
    fcs_size = {0: 1, 1: 2, 2: 4, 3: 8}[fhd >> 6]
    body = header[5 + fcs_size :]
    forged = bytes(header[:4]) + bytes([(fhd & 0x3F) | 0xC0]) + struct.pack("<Q", 2**40) + bytes(body)
    assert zstandard.frame_content_size(forged) == 2**40
    pipe = Pipeline.from_spec("int8+zstd")
    with pytest.raises(CodecError, match="claims 1099511627776 bytes"):
        pipe.decode(forged, (4, 4))
    with pytest.raises(CodecError, match="claims"):
        get_codec({"id": "zstd"}).decode(forged, max_size=10**6)


def test_frame_without_content_size_is_bounded():
    """A frame with no content size decompresses into at most the bound, else fails."""
    x = activations(4, 8)
    raw = Pipeline.from_spec("int8").encode(x)
    streamed = zstandard.ZstdCompressor(level=3, write_content_size=False).compress(raw + bytes(10_000))
    assert zstandard.frame_content_size(streamed) == -1
    with pytest.raises(CodecError):
        Pipeline.from_spec("int8+zstd").decode(streamed, x.shape)
    ok = zstandard.ZstdCompressor(level=3, write_content_size=False).compress(raw)
    np.testing.assert_array_equal(Pipeline.from_spec("int8+zstd").decode(ok, x.shape), Pipeline.from_spec("int8").decode(raw, x.shape))


def test_stream_lengths_are_checked():
    z = get_codec({"id": "zstd", "streams": 3})
    blob = bytearray(z.encode(DATA))
    struct.pack_into("<I", blob, 0, 10**9)
    with pytest.raises(CodecError, match="exceed"):
        z.decode(bytes(blob), max_size=len(DATA))
    with pytest.raises(CodecError, match="truncated"):
        z.decode(b"\x01", max_size=len(DATA))
    # the streams together may not exceed the bound either
    with pytest.raises(CodecError, match="claims"):
        z.decode(z.encode(DATA), max_size=len(DATA) - 1)


def test_garbage_is_a_codec_error():
    for garbage in (b"not zstd at all", b"\x28\xb5\x2f\xfd", bytes(64)):
        with pytest.raises(CodecError):
            get_codec({"id": "zstd"}).decode(garbage, max_size=1000)


@pytest.mark.parametrize("elementsize", [1, 2, 3, 4, 8])
def test_shuffle_round_trip_with_tail(elementsize):
    s = get_codec({"id": "shuffle", "elementsize": elementsize})
    for data in (DATA, DATA[:7], b""):
        blob = s.encode(data)
        assert len(blob) == len(data)
        assert s.decode(blob, max_size=len(data)) == data
    with pytest.raises(CodecError, match="at most"):
        s.decode(DATA, max_size=10)


def test_shuffle_groups_bytes():
    s = get_codec({"id": "shuffle", "elementsize": 2})
    assert s.encode(b"abcdefg") == b"acebdfg"
