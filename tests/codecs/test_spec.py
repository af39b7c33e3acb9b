"""Spec strings: grammar, canonical form, presets, and the errors a bad spec raises."""

from __future__ import annotations

import pytest

from erpack.codecs import PRESETS, Pipeline
from erpack.errors import CodecError


@pytest.mark.parametrize("spec, canonical", [
    ("int8c+zstd:3", "int8c:41+zstd:3"),
    ("int8c:snr=41+zstd:level=3", "int8c:41+zstd:3"),
    (" INT8C : 41 + zstd ", "int8c:41+zstd:3"),
    ("int4:g=32", "int4:32"),
    ("int4:32", "int4:32"),
    ("int4:g=64,asym=1", "int4:g=64,asym=1"),
    ("int4:asym=true,g=64", "int4:g=64,asym=1"),
    ("int8c:block=0", "int8c:snr=41,block=0"),
    ("int8c:snr=40.5", "int8c:40.5"),
    ("fp32+shuffle+zstd:streams=4", "fp32+shuffle:4+zstd:level=3,streams=4"),
    ("zstd:match=0".replace("zstd", "fp16+zstd"), "fp16+zstd:level=3,match=0"),
    ("bnb8", "bnb8:256"),
    ("nf4:blocksize=128", "nf4:128"),
    ("int8z", "int8c:41+zstd:3"),
    ("bf16z", "bf16+shuffle:2+zstd:level=3,streams=2"),
    ("int8", "int8"),
    ("tc19", "tc:19"),
    ("tc:snr=41", "tc:41"),
    ("tc2", "tc:bits=2"),
    ("tc:bits=1.5,rank=16", "tc:bits=1.5,rank=16"),
    ("tc:snr=19,tokens=0", "tc:snr=19,tokens=0"),
])
def test_canonical_spec(spec, canonical):
    pipe = Pipeline.from_spec(spec)
    assert pipe.spec == canonical
    assert Pipeline.from_spec(canonical) == pipe


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_expand(preset):
    assert Pipeline.from_spec(preset) == Pipeline.from_spec(PRESETS[preset])


@pytest.mark.parametrize("spec, message", [
    ("", "empty codec spec"),
    ("   ", "empty codec spec"),
    ("int8c++zstd", "empty stage"),
    ("int8c+", "empty stage"),
    ("int8c:", "has ':' but no value"),
    ("int8:3", "takes no parameters"),
    ("int4:g", "not a valid int"),
    ("int4:g=", "is not KEY=VALUE"),
    ("int4:g=32,,asym=1", "is not KEY=VALUE"),
    ("int4:g=32,g=64", "sets 'g' twice"),
    ("int4:group=32", "no parameter 'group'; its parameters: g, asym"),
    ("zstd:3", "starts with one array codec"),
    ("int8+int8", "exactly one"),
    ("int9", "unknown codec 'int9'; known codecs: bf16, bnb8, fp16, fp32, fp4, int4, int4c, int8, int8c, nf4, shuffle, tc, zstd"),
    ("tc", "exactly one target"),
    ("tc:snr=19,bits=2", "exactly one target"),
])
def test_bad_specs(spec, message):
    with pytest.raises(CodecError, match=message.replace("(", r"\(")):
        Pipeline.from_spec(spec)


def test_lossless_flag():
    assert Pipeline.from_spec("lossless").lossless
    assert Pipeline.from_spec("fp32+zstd").lossless
    assert not Pipeline.from_spec("bf16z").lossless
