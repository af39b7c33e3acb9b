"""manifest.json: what a cache holds, which shards are committed, and the compatibility rules.

The manifest is the commit point: a shard exists for readers only once the manifest lists it. It
is JSON, written with sorted keys and 2-space indent so that the same cache gives the same bytes.
From format version 2 it is sealed: its `checksum` is the sha256 of its own canonical bytes without
that field, and a reader requires both the checksum and the canonical bytes, so any changed byte of
the file is refused. Version 1 manifests (no checksum) are still read; `erpack verify` warns.
"""

from __future__ import annotations

import hashlib
import json
import re

from erpack.errors import CorruptManifestError, ManifestMismatchError, StoreError
from erpack.store import idindex
from erpack.store.codec_state import field_problem as state_field_problem
from erpack.store.format import FORMAT_NAME, FORMAT_VERSION
from erpack.store.location import Location, open_location

MANIFEST = "manifest.json"
SHARD_SUFFIX = ".ers"
# shard-NNNNNN.ers (the single writer's commit number) or shard-<tag>-NNNNNN.ers (a distributed writer's
# own sequence: tag names the worker or run, so names of different writers never collide)
SHARD_RE = re.compile(r"^shard-(?:(?P<tag>[a-z0-9]{1,40})-)?(?P<number>\d{6,})\.ers$")
TAG_RE = re.compile(r"^[a-z0-9]{1,40}$")
# What a shard entry holds in manifest.json; write_shard's entries carry more, in memory only.
ENTRY_FIELDS = ("name", "documents", "tokens", "truncated", "bytes", "sha256")
CHECKSUM = "checksum"  # the manifest field that seals it (format_version >= SEALED_VERSION)
SEALED_VERSION = 2
CHECKSUM_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
RESTORE_HINT = "restore manifest.json from a copy, or re-encode the corpus into a new folder"

# Fields of `meta` (dotted paths) that must be equal for two runs to share one cache.
# The weights hash is the model's identity: the same checkpoint loaded as "minilm" or from its folder
# matches; its name is kept for people, not compared.
COMPAT_FIELDS = ("model.weights_sha256", "model.hidden_size", "layer", "max_length", "tokenizer")


def shard_name(number: int, tag: str | None = None) -> str:
    """shard-NNNNNN.ers, or shard-<tag>-NNNNNN.ers for a distributed writer (tag: [a-z0-9]{1,40})."""
    if not isinstance(number, int) or isinstance(number, bool) or number < 0:
        raise StoreError(f"a shard number must be an int >= 0, got {number!r}")
    if tag is None:
        return f"shard-{number:06d}{SHARD_SUFFIX}"
    if not isinstance(tag, str) or not TAG_RE.match(tag):
        raise StoreError(f"a shard tag must be 1 to 40 characters of [a-z0-9] (a worker or run id), got {tag!r}")
    return f"shard-{tag}-{number:06d}{SHARD_SUFFIX}"


def shard_number(name: str) -> tuple[str | None, int]:
    """(tag or None, number) of a shard name; StoreError for a name that is not a shard's."""
    m = SHARD_RE.match(name)
    if m is None:
        raise StoreError(f"{name!r} is not a shard name (shard-NNNNNN.ers or shard-<tag>-NNNNNN.ers)")
    return m.group("tag"), int(m.group("number"))


def stored_entry(entry: dict) -> dict:
    """The fields of a shard entry that manifest.json holds (write_shard's in-memory extras dropped)."""
    return {k: entry[k] for k in ENTRY_FIELDS}


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


def _canonical(manifest: dict) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def manifest_checksum(manifest: dict) -> str:
    """"sha256:<hex>" of the canonical bytes of the manifest without its checksum field."""
    body = {k: v for k, v in manifest.items() if k != CHECKSUM}
    return "sha256:" + hashlib.sha256(_canonical(body)).hexdigest()


def dump_manifest(manifest: dict) -> bytes:
    """The bytes of manifest.json: canonical JSON, sealed with a fresh checksum from version 2 on."""
    body = {k: v for k, v in manifest.items() if k != CHECKSUM}
    if body.get("format_version", FORMAT_VERSION) >= SEALED_VERSION:
        body[CHECKSUM] = manifest_checksum(body)
    return _canonical(body)


def is_sealed(manifest: dict) -> bool:
    return manifest.get("format_version", 0) >= SEALED_VERSION


def at_current_version(manifest: dict) -> dict:
    """A copy of a (version 1) manifest at the current version; dump_manifest seals it."""
    return {**{k: v for k, v in manifest.items() if k != CHECKSUM}, "format_version": FORMAT_VERSION}


def _sealed_bytes(raw: bytes, checksum: str) -> bool:
    """True when the file's bytes are the canonical dump sealed by `checksum`, checked on the bytes
    alone (one sha256, no re-dump: a 100,000-shard manifest re-dumps in seconds). The canonical
    dump with the checksum is the one without it plus the line `  "checksum": ...,` after the `{`
    (the first key in sorted order). False: check the slow way, which says what is wrong."""
    head = b'{\n  "' + CHECKSUM.encode() + b'": "' + checksum.encode() + b'",\n'
    return raw.startswith(head) and "sha256:" + hashlib.sha256(b"{\n" + raw[len(head):]).hexdigest() == checksum


def _check_seal(path: str, raw: bytes, manifest: dict) -> None:
    """A sealed manifest's checksum must match and its bytes must be exactly the canonical dump."""
    checksum = manifest.get(CHECKSUM)
    if not isinstance(checksum, str) or not CHECKSUM_RE.match(checksum):
        raise CorruptManifestError(
            f"{path} has format_version {manifest['format_version']} but no valid {CHECKSUM!r} field "
            f"(got {checksum!r}): the manifest is damaged or was edited by hand; {RESTORE_HINT}"
        )
    if _sealed_bytes(raw, checksum):
        return
    if manifest_checksum(manifest) != checksum:
        raise CorruptManifestError(
            f"{path} fails its checksum: its content changed after erpack wrote it (damage or a hand "
            f"edit); {RESTORE_HINT}"
        )
    if raw != _canonical(manifest):
        raise CorruptManifestError(
            f"{path} holds the right fields but not the bytes erpack wrote (whitespace, key order or "
            f"escapes changed): it was damaged or rewritten by another tool; {RESTORE_HINT}"
        )


def load_manifest(where, storage_options: dict | None = None) -> dict:
    """The manifest of the cache at `where` (a folder, URL or Location), checked: seal (version >= 2),
    structure, unique shards."""
    folder = open_location(where, storage_options)
    path = folder / MANIFEST
    try:
        raw = folder.read(MANIFEST)
        manifest = json.loads(raw)
    except FileNotFoundError:
        raise StoreError(
            f"{folder} is not an erpack cache: it has no {MANIFEST} (create one with `erpack encode`, "
            f"or check the path)"
        ) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptManifestError(f"{path} is not valid JSON ({exc}): the manifest is damaged; {RESTORE_HINT}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise StoreError(f"{path} is not an erpack cache manifest (its 'format' is not {FORMAT_NAME!r})")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CorruptManifestError(
            f"{path} has format_version {version!r}, which no erpack writes: the manifest is damaged; {RESTORE_HINT}"
        )
    if version > FORMAT_VERSION:
        raise StoreError(
            f"{path} has format_version {version!r}; this erpack reads versions 1 to {FORMAT_VERSION}: "
            f"upgrade erpack to read it"
        )
    if is_sealed(manifest) or CHECKSUM in manifest:  # a version-1 manifest never has one: a 2 edited to 1
        _check_seal(path, raw, manifest)
    for key, kind in (("meta", dict), ("codec", dict), ("counts", dict), ("shards", list)):
        if not isinstance(manifest.get(key), kind):
            raise CorruptManifestError(f"{path} lacks {key!r} ({kind.__name__}): the manifest is damaged; {RESTORE_HINT}")
    for i, shard in enumerate(manifest["shards"]):
        if not isinstance(shard, dict) or not SHARD_RE.match(str(shard.get("name"))) or not isinstance(
            shard.get("bytes"), int
        ):
            raise CorruptManifestError(f"{path}: shard entry {i} is malformed ({shard!r}): the manifest is damaged; "
                                       f"{RESTORE_HINT}")
    _check_unique(path, manifest["shards"])
    if "codec_state" in manifest:
        problem = state_field_problem(manifest["codec_state"])
        if problem:
            raise CorruptManifestError(f"{path}: its codec_state {problem}: the manifest is damaged; {RESTORE_HINT}")
    if "id_index" in manifest:
        problem = idindex.check_field(manifest["id_index"], len(manifest["shards"]))
        if problem:
            raise CorruptManifestError(f"{path}: its id_index {problem}: the manifest is damaged; {RESTORE_HINT}")
    try:
        check_meta(manifest["meta"])
    except StoreError as exc:
        raise CorruptManifestError(f"{path}: {exc}: the manifest is damaged; {RESTORE_HINT}") from None
    return manifest


def write_manifest(where: Location, manifest: dict) -> None:
    """Replace the manifest whole (the commit point): a fsynced rename locally, one PUT remotely."""
    where.write_atomic(MANIFEST, dump_manifest(manifest))


def _check_unique(path: str, shards: list) -> None:
    seen: dict[str, int] = {}
    for i, shard in enumerate(shards):
        first = seen.setdefault(shard["name"], i)
        if first != i:
            raise CorruptManifestError(
                f"{path} lists shard {shard['name']} twice (entries {first} and {i}): the manifest is "
                f"damaged or was edited by hand; {RESTORE_HINT}"
            )


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


def mismatch_error(path, found: list, action: str) -> ManifestMismatchError:
    field, stored, new = found[0]
    more = f" (and {len(found) - 1} more: {', '.join(f[0] for f in found[1:])})" if len(found) > 1 else ""
    return ManifestMismatchError(
        f"{path / MANIFEST} was written with {field}={json.dumps(stored)}, but {action} "
        f"{field}={json.dumps(new)}{more}. A cache holds activations of one model, layer, tokenizer "
        f"and codec: use a new cache folder for these settings, or rerun with the stored ones"
    )
