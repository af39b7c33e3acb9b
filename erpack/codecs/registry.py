"""The codec registry: codec id -> class. `get_codec(config)` builds a codec from its JSON config."""

from __future__ import annotations

from erpack.codecs.base import Codec
from erpack.errors import CodecError

_REGISTRY: dict[str, type[Codec]] = {}


def register_codec(cls: type[Codec]) -> type[Codec]:
    """Class decorator: make a codec known by its `codec_id` (one registration line per codec)."""
    if cls.codec_id in _REGISTRY and _REGISTRY[cls.codec_id] is not cls:
        raise ValueError(f"codec id {cls.codec_id!r} is registered twice")
    _REGISTRY[cls.codec_id] = cls
    return cls


def known_ids() -> list[str]:
    return sorted(_REGISTRY)


def codec_class(codec_id: str) -> type[Codec]:
    try:
        return _REGISTRY[codec_id]
    except (KeyError, TypeError):
        raise CodecError(f"unknown codec {codec_id!r}; known codecs: {', '.join(known_ids())}") from None


def get_codec(config: dict):
    """A codec (or a whole pipeline, id "pipeline") from its config dict."""
    if not isinstance(config, dict) or "id" not in config:
        raise CodecError(f"a codec config is a dict with an 'id' key, got {config!r}")
    if config["id"] == "pipeline":
        from erpack.codecs.pipeline import Pipeline

        return Pipeline.from_config(config)
    return codec_class(config["id"]).from_config(config)


def list_codecs() -> list[dict]:
    """Every registered codec: id, kind, lossless, params (name, type, default, help), description."""
    return [_REGISTRY[i].describe() for i in known_ids()]
