"""The codec registry: codec id -> class. `codec_from_config(config)` builds one registered codec from its
JSON config; `erpack.codecs.pipeline.get_codec` adds whole pipelines (id "pipeline") on top, so the
dependency runs one way: pipeline -> spec -> registry -> base."""

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


def check_config(config) -> None:
    """Raise CodecError unless `config` is a dict with an 'id' key."""
    if not isinstance(config, dict) or "id" not in config:
        raise CodecError(f"a codec config is a dict with an 'id' key, got {config!r}")


def codec_from_config(config: dict) -> Codec:
    """One registered codec (not a pipeline) from its config dict."""
    check_config(config)
    return codec_class(config["id"]).from_config(config)


def list_codecs() -> list[dict]:
    """Every registered codec: id, kind, lossless, params (name, type, default, help), description."""
    return [_REGISTRY[i].describe() for i in known_ids()]
