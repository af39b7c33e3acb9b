"""Codecs for layer-k activations: quantizers (array codecs) and lossless byte stages, in pipelines.

    from erpack.codecs import Pipeline
    pipe = Pipeline.from_spec("int8c+zstd:3")       # or a preset: "int8z"
    blob = pipe.encode(x)                            # x float32 (T, H)
    y = pipe.decode(blob, shape=x.shape)

Each codec is one module; importing this package registers them all. `erpack codecs` lists them,
docs/codecs.md has the spec grammar; docs/results/codecs.md the measured table.
"""

from erpack.codecs import (  # noqa: F401  (importing registers each codec)
    bf16,
    bnb4,
    bnb8,
    fp16,
    fp32,
    int4,
    int4c,
    int8,
    int8c,
    shuffle,
    tc,
    zstd,
)
from erpack.codecs.base import ArrayCodec, ByteCodec, Codec
from erpack.codecs.pipeline import Pipeline, get_codec
from erpack.codecs.registry import list_codecs, register_codec
from erpack.codecs.spec import GRAMMAR, PRESETS

__all__ = [
    "ArrayCodec", "ByteCodec", "Codec", "GRAMMAR", "PRESETS", "Pipeline",
    "get_codec", "list_codecs", "register_codec",
]
