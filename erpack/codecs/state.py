"""A fitted codec's state: what a codec learnt from a calibration sample, as one self-describing file.

    state = FittedState(codec="tc", version=1, meta={...}, arrays={"basis": B, ...})
    data = state.to_bytes()                       # safetensors bytes; no pickle
    again = FittedState.from_bytes(data, source="s3://bucket/cache/codec-state.safetensors")

The file is safetensors (arrays by name, little-endian, with a JSON header), and its header's
`__metadata__` holds `format` ("erpack-codec-state"), `codec` (the codec id), `version` (the codec's
state format) and `meta` (JSON: what it was fitted on: model, layer, hidden size, sample, seed). The
bytes are canonical for given arrays and meta, so the same fit gives the same sha256. A cache keeps
it beside its shards and seals its sha256 in the manifest (docs/cache-format.md).

Reading is bounded and checked: the header length, its JSON, every tensor's dtype, shape and byte
range; a damaged or foreign file raises CodecError naming `source`.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from erpack.errors import CodecError

FORMAT = "erpack-codec-state"
MAX_HEADER = 1 << 20  # bytes of safetensors JSON header a state may have
DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I8": np.int8, "U8": np.uint8,
          "I16": np.int16, "U16": np.uint16, "I32": np.int32, "U32": np.uint32, "I64": np.int64}
NAMES = {np.dtype(v).str.lstrip("<|"): k for k, v in DTYPES.items()}


@dataclass(frozen=True)
class FittedState:
    codec: str
    version: int
    meta: dict
    arrays: dict = field(default_factory=dict)  # name -> numpy array

    def to_bytes(self) -> bytes:
        """Canonical safetensors bytes: tensors sorted by name, packed in that order, little-endian.
        Made once per state (a state is not changed after it is made): writers ask for its bytes and
        sha256 at every shard."""
        return self._bytes

    @cached_property
    def _bytes(self) -> bytes:
        header: dict = {"__metadata__": {
            "format": FORMAT, "codec": self.codec, "version": str(self.version),
            "meta": json.dumps(self.meta, sort_keys=True, ensure_ascii=False),
        }}
        blobs, at = [], 0
        for name in sorted(self.arrays):
            a = np.ascontiguousarray(self.arrays[name])
            kind = NAMES.get(a.dtype.newbyteorder("<").str.lstrip("<|"))
            if kind is None:
                raise CodecError(f"fitted state array {name!r} has dtype {a.dtype}, which a state cannot hold")
            raw = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
            header[name] = {"dtype": kind, "shape": list(a.shape), "data_offsets": [at, at + len(raw)]}
            blobs.append(raw)
            at += len(raw)
        text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
        text += b" " * (-len(text) % 8)  # safetensors pads the header to 8 bytes with spaces
        return struct.pack("<Q", len(text)) + text + b"".join(blobs)

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self._bytes).hexdigest()

    @classmethod
    def from_bytes(cls, data, *, source: str = "fitted state") -> FittedState:
        data = memoryview(data).cast("B")
        bad = f"{source} is not a valid erpack codec state"
        if len(data) < 8:
            raise CodecError(f"{bad}: {len(data)} bytes is too short; restore the file or re-fit the codec")
        (n,) = struct.unpack_from("<Q", data)
        if n > MAX_HEADER or 8 + n > len(data):
            raise CodecError(f"{bad}: its header claims {n} bytes (file {len(data)}); restore the file or re-fit the codec")
        try:
            header = json.loads(bytes(data[8 : 8 + n]).decode("utf-8"))
            info = header.pop("__metadata__")
            if info.get("format") != FORMAT:
                raise ValueError(f"format {info.get('format')!r}")
            codec, version, meta = info["codec"], int(info["version"]), json.loads(info["meta"])
            if not isinstance(meta, dict) or not isinstance(codec, str):
                raise ValueError("meta is not an object")
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as e:
            raise CodecError(f"{bad}: its header does not parse ({e}); restore the file or re-fit the codec") from None
        body = data[8 + n :]
        arrays, end = {}, 0
        for name, spec in sorted(header.items(), key=lambda kv: kv[1].get("data_offsets", [0])[0] if isinstance(kv[1], dict) else 0):
            try:
                dtype = np.dtype(DTYPES[spec["dtype"]]).newbyteorder("<")
                shape = tuple(int(d) for d in spec["shape"])
                lo, hi = (int(v) for v in spec["data_offsets"])
            except (KeyError, TypeError, ValueError) as e:
                raise CodecError(f"{bad}: tensor {name!r} is described wrongly ({e!r})") from None
            count = int(np.prod(shape, dtype=np.int64)) if shape else 1
            if lo != end or hi - lo != count * dtype.itemsize or any(d < 0 for d in shape) or hi > len(body):
                raise CodecError(f"{bad}: tensor {name!r} does not fit its byte range [{lo}, {hi}) of {len(body)}")
            arrays[name] = np.frombuffer(body, dtype=dtype, count=count, offset=lo).reshape(shape).astype(dtype.newbyteorder("="))
            end = hi
        if end != len(body):
            raise CodecError(f"{bad}: {len(body) - end} bytes follow its last tensor; restore the file or re-fit the codec")
        return cls(codec=codec, version=version, meta=meta, arrays=arrays)

    def describe(self) -> dict:
        """What inspect shows: codec, version, bytes, sha256 and the fit's meta."""
        return {"codec": self.codec, "version": self.version, "bytes": len(self._bytes),
                "sha256": self.sha256, "meta": self.meta}


def context_of(meta: dict) -> dict:
    """What a fitted state is bound to, from a cache's meta: {"model": {"name", "weights_sha256",
    "hidden_size"}, "layer": k}. A codec stores it (given to fit as `context`) in `state.meta["context"]`
    and a cache reader refuses a state whose context differs from its manifest's (check_context)."""
    model = meta.get("model") or {}
    return {"model": {k: model.get(k) for k in ("name", "weights_sha256", "hidden_size")},
            "layer": meta.get("layer")}


def context_problem(state: FittedState, meta: dict) -> str | None:
    """Why `state` was not fitted for the cache that `meta` describes (another model, weights, hidden
    size or layer), or None. The model's name is shown, not compared: the weights hash is its identity."""
    have, want = state.meta.get("context"), context_of(meta)
    if not isinstance(have, dict):
        return "it records no context (the model and layer it was fitted on)"
    got = []
    for key in ("weights_sha256", "hidden_size"):
        a, b = (have.get("model") or {}).get(key), want["model"][key]
        if a != b:
            got.append(f"model.{key} {a!r} (the cache: {b!r})")
    if have.get("layer") != want["layer"]:
        got.append(f"layer {have.get('layer')!r} (the cache: {want['layer']!r})")
    if not got:
        return None
    name = (have.get("model") or {}).get("name")
    return f"it was fitted on {name!r} with " + ", ".join(got)
