"""manifest.json: what a cache holds, which shards are committed, and the compatibility rules.

The manifest is the commit point: a shard exists for readers only once the manifest lists it. It
is JSON, written with sorted keys and 2-space indent so that the same cache gives the same bytes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from erpack.errors import ManifestMismatchError, StoreError
from erpack.store.format import FORMAT_NAME, FORMAT_VERSION

MANIFEST = "manifest.json"
SHARD_SUFFIX = ".ers"
SHARD_RE = re.compile(r"^shard-(\d{6,})\.ers$")

# Fields of `meta` (dotted paths) that must be equal for two runs to share one cache.
# The weights hash is the model's identity: the same checkpoint loaded as "minilm" or from its folder
# matches; its name is kept for people, not compared.
COMPAT_FIELDS = ("model.weights_sha256", "model.hidden_size", "layer", "max_length", "tokenizer")


def shard_name(number: int) -> str:
    return f"shard-{number:06d}{SHARD_SUFFIX}"


def jsonable(value, what: str):
    """A JSON round trip of value (tuples become lists), so stored and new values compare equal."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{what} must be plain JSON (dicts, lists, str, int, finite float): {exc}") from None


def lookup(meta: dict, dotted: str):
    value = meta
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def check_meta(meta) -> dict:
    """Normalized copy of the caller's meta; requires model.hidden_size (a positive int)."""
    if not isinstance(meta, dict):
        raise StoreError(f"meta must be a dict (model identity, layer, tokenizer, max_length), got {type(meta).__name__}")
    meta = jsonable(meta, "meta")
    hidden = lookup(meta, "model.hidden_size")
    if not isinstance(hidden, int) or isinstance(hidden, bool) or hidden < 1:
        raise StoreError(
            f"meta['model']['hidden_size'] must be a positive int (the width of the cached activations), "
            f"got {hidden!r}"
        )
    return meta


def new_manifest(meta: dict, codec_config: dict) -> dict:
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "meta": meta,
        "codec": codec_config,
        "counts": {"documents": 0, "tokens": 0, "truncated": 0, "records": 0, "bytes": 0},
        "shards": [],
    }


def dump_manifest(manifest: dict) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def load_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise StoreError(
            f"{folder} is not an erpack cache: it has no {MANIFEST} (create one with `erpack encode`, "
            f"or check the path)"
        ) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise StoreError(f"{path} is not valid JSON ({exc}): the manifest is damaged; restore it from a copy") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise StoreError(f"{path} is not an erpack cache manifest (its 'format' is not {FORMAT_NAME!r})")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise StoreError(
            f"{path} has format_version {version!r}; this erpack reads versions 1 to {FORMAT_VERSION}: "
            f"upgrade erpack to read it"
        )
    for key, kind in (("meta", dict), ("codec", dict), ("counts", dict), ("shards", list)):
        if not isinstance(manifest.get(key), kind):
            raise StoreError(f"{path} lacks {key!r} ({kind.__name__}): the manifest is damaged")
    for i, shard in enumerate(manifest["shards"]):
        if not isinstance(shard, dict) or not SHARD_RE.match(str(shard.get("name"))) or not isinstance(
            shard.get("bytes"), int
        ):
            raise StoreError(f"{path}: shard entry {i} is malformed ({shard!r}): the manifest is damaged")
    check_meta(manifest["meta"])
    return manifest


def mismatches(stored: dict, new: dict, fields=COMPAT_FIELDS) -> list[tuple[str, object, object]]:
    """(field, stored value, new value) for each field whose values differ."""
    out = []
    for field in fields:
        a, b = lookup(stored, field), lookup(new, field)
        if a != b:
            out.append((field, a, b))
    return out


def subset_mismatches(stored, expected, prefix: str = "") -> list[tuple[str, object, object]]:
    """Fields given in `expected` (nested dicts may be partial) whose stored value differs."""
    out = []
    for key, want in expected.items():
        field = f"{prefix}{key}"
        have = stored.get(key) if isinstance(stored, dict) else None
        if isinstance(want, dict) and isinstance(have, dict):
            out += subset_mismatches(have, want, field + ".")
        elif have != want:
            out.append((field, have, want))
    return out


def mismatch_error(path: Path, found: list, action: str) -> ManifestMismatchError:
    field, stored, new = found[0]
    more = f" (and {len(found) - 1} more: {', '.join(f[0] for f in found[1:])})" if len(found) > 1 else ""
    return ManifestMismatchError(
        f"{path / MANIFEST} was written with {field}={json.dumps(stored)}, but {action} "
        f"{field}={json.dumps(new)}{more}. A cache holds activations of one model, layer, tokenizer "
        f"and codec: use a new cache folder for these settings, or rerun with the stored ones"
    )
