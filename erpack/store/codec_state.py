"""A fitted codec's state inside a cache: `codec-state-<16 hex>.safetensors` beside the shards.

A codec fitted on a calibration sample (erpack/codecs/state.py: FittedState) needs what it learnt to
decode. The writer publishes the state file (atomically: a fsynced rename locally, one PUT remotely)
BEFORE the first manifest that names it, and the manifest seals it as `codec_state`: {"name",
"bytes", "sha256"}. A reader reads it bounded (exactly `bytes`, at most MAX_STATE_BYTES), checks its
sha256, parses it, and checks that it was fitted on the cache's model and layer (context_problem).
A state file the manifest does not name is a leftover of an interrupted writer, removed by the next.
"""

from __future__ import annotations

import hashlib
import re

from erpack.codecs import Pipeline
from erpack.codecs.state import FittedState, context_problem
from erpack.errors import CodecError, StoreError
from erpack.store.location import Location

FIELD = "codec_state"  # the manifest key
STATE_RE = re.compile(r"^codec-state-[0-9a-f]{16}\.safetensors$")
MAX_STATE_BYTES = 256 << 20
FIX = "restore it from a copy of the cache, or re-encode the corpus into a new folder"


def state_name(sha256: str) -> str:
    return f"codec-state-{sha256[:16]}.safetensors"


def field_problem(field) -> str | None:
    """Why a manifest's codec_state field is malformed, or None."""
    if not isinstance(field, dict) or set(field) != {"name", "bytes", "sha256"}:
        return f"must be {{name, bytes, sha256}}, got {field!r}"
    sha, size = field["sha256"], field["bytes"]
    if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
        return f"sha256 must be 64 lowercase hex digits, got {sha!r}"
    if field["name"] != state_name(sha):
        return f"name must be {state_name(sha)!r}, got {field['name']!r}"
    if not isinstance(size, int) or isinstance(size, bool) or not 8 <= size <= MAX_STATE_BYTES:
        return f"bytes must be an int in [8, {MAX_STATE_BYTES}], got {size!r}"
    return None


def write_state(loc: Location, state: FittedState) -> dict:
    """Publish the state file (whole or not at all) unless an identical one is there; return the
    manifest's codec_state field."""
    data = state.to_bytes()
    if len(data) > MAX_STATE_BYTES:
        raise StoreError(f"the fitted state of codec {state.codec!r} is {len(data)} bytes, more than a cache "
                         f"holds ({MAX_STATE_BYTES}): fit a smaller state")
    sha = hashlib.sha256(data).hexdigest()
    field = {"name": state_name(sha), "bytes": len(data), "sha256": sha}
    loc.write_atomic(field["name"], data)
    return field


def read_state(loc: Location, manifest: dict) -> FittedState | None:
    """The fitted state the manifest names (None when it names none), read and checked: size, sha256,
    format, and that it belongs to the cache's model and layer. StoreError naming the file, the cache
    and what to do."""
    field = manifest.get(FIELD)
    if field is None:
        return None
    where = loc / field["name"]
    try:
        size = loc.size(field["name"])
    except FileNotFoundError:
        raise StoreError(f"the fitted state {where} of the cache {loc} is missing (its codec "
                         f"{_codec_id(manifest)!r} cannot decode without it): {FIX}") from None
    if size != field["bytes"]:
        raise StoreError(f"the fitted state {where} is {size} bytes but the manifest of {loc} says {field['bytes']}: "
                         f"the file was damaged or replaced; {FIX}")
    data = loc.read(field["name"])
    if len(data) != field["bytes"] or hashlib.sha256(data).hexdigest() != field["sha256"]:
        raise StoreError(f"the fitted state {where} fails its sha256 (the manifest of {loc} seals "
                         f"{field['sha256'][:16]}...): the file is damaged; {FIX}")
    try:
        state = FittedState.from_bytes(data, source=where)
    except CodecError as exc:
        raise StoreError(f"{exc} (the cache {loc}); {FIX}") from None
    problem = context_problem(state, manifest["meta"])
    if problem:
        raise StoreError(f"the fitted state {where} belongs to another model or layer than the cache {loc}: "
                         f"{problem}. It was copied from another cache: {FIX}")
    return state


def _codec_id(manifest: dict) -> str:
    codec = manifest.get("codec") or {}
    stages = codec.get("stages")
    return str(stages[0].get("id")) if isinstance(stages, list) and stages and isinstance(stages[0], dict) \
        else str(codec.get("id"))


def cache_codec(loc: Location, manifest: dict, state: FittedState | None = None) -> Pipeline:
    """The cache's codec (a Pipeline) with its fitted state attached where it has one: what a reader
    and verify decode with. StoreError for a missing, damaged or foreign state. `state`: the one
    read_state returned already (else it is read here)."""
    if state is None:
        state = read_state(loc, manifest)
    codec = Pipeline.from_config(manifest["codec"])
    if codec.fitted and state is None:
        raise StoreError(f"the cache {loc} uses the fitted codec {_codec_id(manifest)!r}, but its manifest names no "
                         f"fitted state: the fitted state is missing and no record can be decoded (the manifest was "
                         f"written by hand or by a broken tool); {FIX}")
    if state is None:
        return codec
    where = loc / manifest[FIELD]["name"]
    if not codec.fitted:
        raise StoreError(f"the cache {loc} names a fitted state ({where}), but its codec {codec.spec} fits nothing: "
                         f"the manifest is damaged; {FIX}")
    try:
        return codec.with_state(state)
    except CodecError as exc:
        raise StoreError(f"the fitted state {where} of the cache {loc} does not fit its codec {codec.spec} ({exc}); "
                         f"{FIX}") from None
