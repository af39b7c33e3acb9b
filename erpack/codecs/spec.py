"""Spec strings: a pipeline written on one line, and named presets.

    spec   := stage ("+" stage)*
    stage  := NAME | NAME ":" VALUE | NAME ":" KEY "=" VALUE ("," KEY "=" VALUE)*

`NAME:VALUE` sets the codec's primary parameter (zstd:3 is zstd:level=3). A preset name stands for its
stages. The canonical form (Pipeline.spec) writes only parameters that differ from their defaults,
plus the primary one, and uses the short form when that is all there is.
"""

from __future__ import annotations

from erpack.codecs.base import Codec
from erpack.codecs.registry import codec_class, known_ids
from erpack.errors import CodecError

GRAMMAR = 'spec := stage ("+" stage)* ; stage := NAME | NAME:VALUE | NAME:KEY=VALUE,KEY=VALUE...'

PRESETS = {
    "lossless": "fp32+shuffle:4+zstd:level=3,streams=4",
    "bf16z": "bf16+shuffle:2+zstd:level=3,streams=2",
    "int8z": "int8c:41+zstd:3",
    "int4z": "int4c:19+zstd:3",
    "tc19": "tc:snr=19",
    "tc41": "tc:snr=41",
    "tc2": "tc:bits=2",
}


def parse_stage(text: str) -> Codec:
    name, sep, rest = text.strip().partition(":")
    name = name.strip().lower()
    cls = codec_class(name) if name else None
    if cls is None:
        raise CodecError(f"empty stage in spec; known codecs: {', '.join(known_ids())}")
    config: dict = {"id": name}
    if sep:
        if not rest.strip():
            raise CodecError(f"stage {text.strip()!r} has ':' but no value; write {name} or {name}:KEY=VALUE")
        if "=" not in rest:
            if cls.primary is None:
                raise CodecError(f"codec {name!r} takes no parameters, got {text.strip()!r}")
            config[cls.primary] = rest.strip()
        else:
            for item in rest.split(","):
                key, eq, value = item.partition("=")
                key = key.strip().lower()
                if not eq or not key or not value.strip():
                    raise CodecError(f"stage {text.strip()!r}: {item.strip()!r} is not KEY=VALUE")
                if key in config:
                    raise CodecError(f"stage {text.strip()!r} sets {key!r} twice")
                config[key] = value.strip()
    return cls.from_config(config)


def expand_presets(spec: str) -> list[str]:
    if not isinstance(spec, str) or not spec.strip():
        raise CodecError(f"empty codec spec {spec!r}; try 'int8z' or 'int8c+zstd:3' (see `erpack codecs`)")
    parts = []
    for part in spec.split("+"):
        key = part.strip().lower()
        parts.extend(PRESETS[key].split("+") if key in PRESETS else [part])
    return parts


def parse_spec(spec: str) -> list[Codec]:
    return [parse_stage(part) for part in expand_presets(spec)]


def format_stage(codec: Codec) -> str:
    """Canonical text of one stage: non-default parameters plus the primary one (which a codec with
    `show_primary_default = False` leaves out at its default when another parameter is shown)."""
    shown = []
    for f in codec.param_fields():
        value = getattr(codec, f.name)
        if f.name == codec.primary or value != f.default:
            shown.append((f.name, value))
    if not getattr(codec, "show_primary_default", True) and len(shown) > 1:
        shown = [(k, v) for k, v in shown if k != codec.primary or v != codec_default(codec, k)]
    if not shown:
        return codec.codec_id
    if len(shown) == 1 and shown[0][0] == codec.primary:
        return f"{codec.codec_id}:{fmt(shown[0][1])}"
    return f"{codec.codec_id}:" + ",".join(f"{k}={fmt(v)}" for k, v in shown)


def codec_default(codec: Codec, name: str):
    return next(f.default for f in codec.param_fields() if f.name == name)


def fmt(value) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
