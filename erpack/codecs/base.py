"""The codec model (after numcodecs): small self-describing objects that turn data into bytes and back.

Two kinds. An *array codec* turns one record, a float32 (T, H) array of layer-k hidden states, into
bytes: it is the first and only array stage of a pipeline. A *byte codec* turns bytes into bytes
(shuffle, zstd) and may follow. Every codec is a frozen dataclass whose fields are its parameters:
`get_config()` is `{"id": codec_id, **params}` (JSON), `from_config` rebuilds it, `__post_init__`
validates, so a config read from disk describes the codec completely.

Array codecs start their bytes with a 10-byte header (codec tag, format version, T, H): decode checks
it against the shape it is given, and every data-dependent parameter (scales, steps) travels in the
bytes after it, so a blob decodes with nothing but its codec config and its shape.

Two kinds of array codec need more, and say so by class attributes:
- `fitted`: the codec learns from a calibration sample (`fit`) what every record of a cache shares;
  what it learnt is a `FittedState` (erpack/codecs/state.py) that travels beside the records (in the
  cache, sealed by the manifest) and is given back with `with_state` before the codec decodes.
- `needs_tokens`: encode and decode take the record's token ids (`tokens`, int array (T,)).
An array codec whose blob length varies with the data (entropy coding inside) sets `exact_size =
False`: `body_size` is then the most a record of that shape can take, and decoding checks `<=`.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import struct
from typing import Any, ClassVar

import numpy as np

from erpack.errors import CodecError

HEADER = struct.Struct("<BBII")  # tag, format version, tokens T, hidden H
FORMAT_VERSION = 1
MAX_DIM = 2**31 - 1


def param(default, help: str):
    """A codec parameter: a dataclass field with a default and a one-line help."""
    return dataclasses.field(default=default, metadata={"help": help})


class Codec:
    """Base of every codec. Subclasses are frozen dataclasses and set the class attributes below."""

    codec_id: ClassVar[str]
    kind: ClassVar[str]  # "array" or "bytes"
    lossless: ClassVar[bool] = False
    description: ClassVar[str] = ""
    primary: ClassVar[str | None] = None  # the parameter `name:value` sets in a spec string

    # ---- configuration ------------------------------------------------------------------------
    @classmethod
    def param_fields(cls) -> list[dataclasses.Field]:
        return list(dataclasses.fields(cls)) if dataclasses.is_dataclass(cls) else []

    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in self.param_fields()}

    def get_config(self) -> dict[str, Any]:
        return {"id": self.codec_id, **self.params()}

    @classmethod
    def from_config(cls, config: dict) -> Codec:
        config = dict(config)
        found = config.pop("id", cls.codec_id)
        if found != cls.codec_id:
            raise CodecError(f"config id {found!r} given to codec {cls.codec_id!r}")
        names = [f.name for f in cls.param_fields()]
        unknown = sorted(set(config) - set(names))
        if unknown:
            known = ", ".join(names) or "none"
            raise CodecError(f"codec {cls.codec_id!r} has no parameter {unknown[0]!r}; its parameters: {known}")
        types = {f.name: f.type for f in cls.param_fields()}
        return cls(**{k: coerce(cls.codec_id, k, types[k], v) for k, v in config.items()})

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """What `list_codecs()` and `erpack codecs` show for this codec."""
        return {
            "id": cls.codec_id,
            "kind": cls.kind,
            "lossless": cls.lossless,
            "params": [
                {"name": f.name, "type": type_name(f.type), "default": f.default, "help": f.metadata.get("help", "")}
                for f in cls.param_fields()
            ],
            "primary": cls.primary,
            "description": cls.description,
        }


def type_name(t) -> str:
    return t if isinstance(t, str) else t.__name__


def coerce(codec_id: str, name: str, t, value):
    """A parameter value as its declared type (int, float or bool); strings come from spec strings."""
    t = type_name(t)
    try:
        if t == "bool":
            if isinstance(value, str):
                low = value.strip().lower()
                if low not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError(value)
                return low in ("1", "true", "yes")
            if value in (0, 1):
                return bool(value)
            raise ValueError(value)
        if t == "int":
            if isinstance(value, bool):
                raise ValueError(value)
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if t == "float":
            if isinstance(value, bool):
                raise ValueError(value)
            out = float(value)
            if not math.isfinite(out):
                raise ValueError(value)
            return out
    except (TypeError, ValueError):
        raise CodecError(f"codec {codec_id!r}: parameter {name}={value!r} is not a valid {t}") from None
    return value


def check_range(codec_id: str, name: str, value, lo, hi) -> None:
    if not (lo <= value <= hi):
        raise CodecError(f"codec {codec_id!r}: {name}={value!r} is out of range; use {lo} <= {name} <= {hi}")


def check_shape(shape) -> tuple[int, int]:
    """(T, H) as two ints >= 1: a record has at least one token."""
    try:
        T, H = shape
        T, H = operator.index(T), operator.index(H)
    except (TypeError, ValueError):
        raise CodecError(f"shape {shape!r} is not (tokens, hidden) integers") from None
    if not (1 <= T <= MAX_DIM and 1 <= H <= MAX_DIM):
        raise CodecError(f"shape {(T, H)} is invalid: a record needs at least one token and one channel")
    return T, H


class ArrayCodec(Codec):
    """float32 (T, H) -> bytes. Subclasses set `tag` and implement `body_size`, `_encode`, `_decode`."""

    kind: ClassVar[str] = "array"
    tag: ClassVar[int]
    fitted: ClassVar[bool] = False  # needs fit() (or with_state) before it codes
    needs_tokens: ClassVar[bool] = False  # encode/decode take the record's token ids
    exact_size: ClassVar[bool] = True  # body_size is exact (else an upper bound)

    # ---- fitted state (codecs with fitted = True override these) --------------------------------
    @property
    def state(self):
        """The FittedState this codec codes with (None for codecs that fit nothing, or not yet fitted)."""
        return self.__dict__.get("_state")

    def fit(self, records, *, context: dict | None = None, seed: int = 0) -> ArrayCodec:
        """A copy of this codec fitted on `records`, a sequence of (x float32 (T, H), token ids (T,) or
        None); `context` (model, layer...) is stored with the state so that a reader can check it.
        Deterministic for a given sample and seed. Codecs that fit nothing return themselves."""
        return self

    def with_state(self, state) -> ArrayCodec:
        """A copy of this codec holding `state` (read back from a cache)."""
        if state is not None:
            raise CodecError(f"{self.codec_id}: this codec fits nothing, but a fitted state was given")
        return self

    def _attach(self, state) -> ArrayCodec:
        """A copy of this frozen codec with `state` attached (not a parameter: get_config leaves it out)."""
        other = dataclasses.replace(self)
        object.__setattr__(other, "_state", state)
        return other

    def require_state(self) -> None:
        if self.fitted and self.state is None:
            raise CodecError(
                f"codec {self.codec_id!r} is fitted on data and has no fitted state; fit it on a sample "
                "(erpack compress / encode --codec do) or read it from the cache that holds it"
            )

    def check_tokens(self, tokens, T: int) -> np.ndarray | None:
        """The record's token ids as int64 (T,), or None for a codec that does not use them."""
        if not self.needs_tokens:
            return None
        if tokens is None:
            raise CodecError(
                f"codec {self.codec_id!r} needs each record's token ids and none were given; "
                "the cache holds no token ids (written by an older erpack): re-encode it with this one"
            )
        tokens = np.asarray(tokens)
        if tokens.shape != (T,) or tokens.dtype.kind not in "iu":
            raise CodecError(f"{self.codec_id}: token ids must be an integer array of shape ({T},), got {tokens.dtype} {tokens.shape}")
        return tokens.astype(np.int64, copy=False)

    def encoded_size(self, shape) -> int:
        """Exact length of `encode(x)` for an x of this shape (header included)."""
        T, H = check_shape(shape)
        return HEADER.size + self.body_size(T, H)

    def encode(self, x: np.ndarray, tokens=None) -> bytes:
        x = self.check_input(x)
        T, H = x.shape
        self.require_state()
        tokens = self.check_tokens(tokens, T)
        body = self._encode(x) if tokens is None else self._encode_tokens(x, tokens)
        return HEADER.pack(self.tag, FORMAT_VERSION, T, H) + body

    def decode(self, buf, shape, out: np.ndarray | None = None, tokens=None) -> np.ndarray:
        T, H = check_shape(shape)
        return self.decode_checked(as_bytes_view(buf), T, H, out, tokens=tokens)

    def decode_checked(self, view: memoryview, T: int, H: int, out: np.ndarray | None = None,
                       expected: int | None = None, tokens=None) -> np.ndarray:
        """decode for a shape already checked by check_shape, and the blob size if known (the
        pipeline's fast path)."""
        self.require_state()
        tokens = self.check_tokens(tokens, T)
        self.check_header(view, T, H, expected)
        y = np.empty((T, H), dtype=np.float32) if out is None else self.check_out(out, T, H)
        if tokens is None:
            self._decode(view[HEADER.size :], y)
        else:
            self._decode_tokens(view[HEADER.size :], y, tokens)
        return y

    def check_header(self, view: memoryview, T: int, H: int, expected: int | None = None) -> None:
        """Raise CodecError unless the blob has the length a (T, H) record takes (`expected`, if the
        caller knows it) and its header names this codec, this format and shape (T, H)."""
        if expected is None:
            expected = HEADER.size + self.body_size(T, H)
        if self.exact_size and len(view) != expected or not HEADER.size <= len(view) <= expected:
            raise CodecError(
                f"{self.codec_id}: {len(view)} bytes cannot hold a ({T}, {H}) record, which takes {expected}; "
                "the blob is truncated, padded or belongs to another shape or codec"
            )
        tag, version, t, h = HEADER.unpack_from(view)
        if tag != self.tag:
            raise CodecError(f"{self.codec_id}: blob header carries tag {tag}, not {self.tag}; it was written by another codec")
        if version != FORMAT_VERSION:
            raise CodecError(f"{self.codec_id}: blob format version {version} is unknown (this erpack reads {FORMAT_VERSION}); upgrade erpack")
        if (t, h) != (T, H):
            raise CodecError(f"{self.codec_id}: blob holds shape ({t}, {h}), but ({T}, {H}) was asked for")

    def decode_batch(self, views: list[memoryview], lengths: list[int], out: np.ndarray, tokens=None) -> None:
        """Decode record r (`views[r]`, lengths[r] tokens) into out[r, :lengths[r]] of a float32
        (B, T, H) batch and zero the rows past each record's length; `tokens[r]` are record r's
        token ids where the codec needs them. Codecs whose dequantization vectorises over a batch
        override this; the default decodes record by record."""
        H = out.shape[2]
        for r, (view, T) in enumerate(zip(views, lengths)):
            self.decode_checked(view, T, H, out[r, :T], tokens=None if tokens is None else tokens[r])
            out[r, T:] = 0

    # ---- helpers -------------------------------------------------------------------------------
    finite_only: ClassVar[bool] = True

    def check_input(self, x) -> np.ndarray:
        if not isinstance(x, np.ndarray):
            raise CodecError(f"{self.codec_id}: expected a numpy array, got {type(x).__name__}")
        if x.dtype != np.float32:
            raise CodecError(f"{self.codec_id}: expected float32 activations, got {x.dtype}; convert with x.astype(np.float32)")
        if x.ndim != 2:
            raise CodecError(f"{self.codec_id}: expected a 2-D (tokens, hidden) array, got shape {x.shape}")
        check_shape(x.shape)
        x = np.ascontiguousarray(x)
        if self.finite_only and not np.isfinite(x).all():
            t, h = np.argwhere(~np.isfinite(x))[0]
            raise CodecError(
                f"{self.codec_id}: value {x[t, h]} at token {t}, channel {h} is not finite; "
                "only the lossless fp32 codec stores NaN or inf"
            )
        return x

    @staticmethod
    def check_out(out, T: int, H: int) -> np.ndarray:
        if out is None:
            return np.empty((T, H), dtype=np.float32)
        if not isinstance(out, np.ndarray) or out.shape != (T, H) or out.dtype != np.float32 or not out.flags.c_contiguous:
            got = f"{out.dtype} {out.shape}" if isinstance(out, np.ndarray) else type(out).__name__
            raise CodecError(f"out must be a C-contiguous float32 array of shape ({T}, {H}), got {got}")
        return out

    def body_size(self, T: int, H: int) -> int:
        raise NotImplementedError

    def _encode(self, x: np.ndarray) -> bytes:
        raise NotImplementedError

    def _decode(self, body: memoryview, out: np.ndarray) -> None:
        raise NotImplementedError

    def _encode_tokens(self, x: np.ndarray, tokens: np.ndarray) -> bytes:
        """_encode of a codec with needs_tokens."""
        raise NotImplementedError

    def _decode_tokens(self, body: memoryview, out: np.ndarray, tokens: np.ndarray) -> None:
        """_decode of a codec with needs_tokens."""
        raise NotImplementedError


class ByteCodec(Codec):
    """bytes -> bytes. `decode` never allocates more than `max_size` (or len(out)) bytes of output."""

    kind: ClassVar[str] = "bytes"

    def max_encoded_size(self, n: int) -> int:
        """Largest length `encode` can return for an input of n bytes."""
        raise NotImplementedError

    def encode(self, buf) -> bytes:
        raise NotImplementedError

    def decode(self, buf, out=None, *, max_size: int | None = None) -> bytes:
        raise NotImplementedError


def as_bytes_view(buf) -> memoryview:
    """A flat byte view of any buffer (bytes, bytearray, memoryview, contiguous ndarray)."""
    try:
        return memoryview(buf).cast("B")
    except TypeError:
        if isinstance(buf, np.ndarray):
            return memoryview(np.ascontiguousarray(buf)).cast("B")
        raise CodecError(f"expected a bytes-like buffer, got {type(buf).__name__}") from None


def write_out(data: bytes, out):
    """numcodecs semantics: with out given, copy the decoded bytes into it and return it."""
    if out is None:
        return data
    view = as_bytes_view(out)
    if len(view) != len(data):
        raise CodecError(f"out holds {len(view)} bytes but the decoded data is {len(data)} bytes")
    view[:] = data
    return out
