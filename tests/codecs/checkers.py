"""Checkers shared by every codec test (after numcodecs' check_encode_decode / check_config)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from erpack.codecs import Pipeline, get_codec
from erpack.codecs.metrics import sqnr_db
from erpack.errors import CodecError


def check_encode_decode(pipe: Pipeline, x: np.ndarray, lossless: bool, min_sqnr: float | None) -> bytes:
    """Round trip of one record: shape, dtype, a fresh writable array, exact or above min_sqnr,
    decode into `out`, and the blob no longer than the bound the pipeline derives from the shape."""
    blob = pipe.encode(x)
    assert isinstance(blob, bytes)
    assert len(blob) <= pipe.bounds(x.shape)[-1]
    y = pipe.decode(blob, x.shape)
    assert y.shape == x.shape and y.dtype == np.float32 and y.flags.c_contiguous and y.flags.writeable
    assert np.isfinite(y).all()
    if lossless:
        assert np.array_equal(y.view(np.uint32), x.view(np.uint32)), "a lossless pipeline must be bit-exact"
    elif min_sqnr is not None:
        got = sqnr_db(x, y)
        assert got >= min_sqnr, f"{pipe.spec}: SQNR {got:.2f} dB < {min_sqnr} dB"
    out = np.full(x.shape, np.nan, dtype=np.float32)
    assert pipe.decode(memoryview(blob), x.shape, out=out) is out
    assert np.array_equal(out.view(np.uint32), y.view(np.uint32)), "decode must be deterministic"
    assert pipe.encode(x) == blob, "encode must be deterministic"
    return blob


def check_config(pipe: Pipeline) -> None:
    """Config -> JSON -> config rebuilds an equal pipeline; so does the canonical spec; every stage
    config carries its id and rebuilds through the registry."""
    config = pipe.get_config()
    assert config["id"] == "pipeline"
    text = json.dumps(config)
    again = Pipeline.from_config(json.loads(text))
    assert again == pipe and again.get_config() == config
    assert Pipeline.from_spec(pipe.spec) == pipe
    assert Pipeline.from_spec(pipe.spec).spec == pipe.spec
    assert get_codec(config) == pipe
    for stage in config["stages"]:
        assert "id" in stage
        assert get_codec(json.loads(json.dumps(stage))).get_config() == stage


def check_refuses(pipe: Pipeline, blob: bytes, shape) -> None:
    """Truncated, extended and shape-mismatched blobs raise CodecError (never another error)."""
    for bad in (blob[: len(blob) // 2], blob[:-1], blob + b"\0", b""):
        with pytest.raises(CodecError):
            pipe.decode(bad, shape)
    T, H = shape
    for other in ((T + 1, H), (T, H + 1)):
        with pytest.raises(CodecError):
            pipe.decode(blob, other)


def check_decode_batch(pipe: Pipeline, records: list[np.ndarray]) -> None:
    """decode_batch of records of mixed lengths equals decoding each alone, bit for bit, with zeros
    past each record's length; a reused `out` full of garbage gives the same batch."""
    blobs = [pipe.encode(x) for x in records]
    shapes = [x.shape for x in records]
    batch = pipe.decode_batch(blobs, shapes)
    T = max(t for t, _ in shapes)
    assert batch.shape == (len(records), T, shapes[0][1]) and batch.dtype == np.float32
    for r, (blob, (t, h)) in enumerate(zip(blobs, shapes)):
        alone = pipe.decode(blob, (t, h))
        assert np.array_equal(batch[r, :t].view(np.uint32), alone.view(np.uint32)), f"{pipe.spec}: record {r} differs"
        assert not batch[r, t:].any(), f"{pipe.spec}: padding of record {r} is not zero"
    out = np.full(batch.shape, np.nan, dtype=np.float32)
    assert pipe.decode_batch(blobs, shapes, out) is out
    assert np.array_equal(out.view(np.uint32), batch.view(np.uint32))
