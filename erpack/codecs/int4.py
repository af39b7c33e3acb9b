"""int4: 4-bit codes in groups of g consecutive channels of a token, one float16 scale per group
(absmax / 7, codes -7..7), or with `asym=1` a float16 scale and zero point (min, (max - min) / 15,
codes 0..15).

When H is not a multiple of g the last group of each token is shorter (H mod g channels) and has
its own scale. Scales and zero points are counted: g=32 costs 4 + 16/32 = 4.5 bits a value
(asym: 5.0) before zstd.
Layout after the header: scales float16[T, G] (then zero points float16[T, G]), codes packed as nibbles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from erpack.codecs import nibbles
from erpack.codecs.base import ArrayCodec, check_range, param
from erpack.codecs.registry import register_codec
from erpack.errors import CodecError


def grouped(x: np.ndarray, g: int) -> np.ndarray:
    """(T, H) -> (T, G, g), the last group padded with zeros when g does not divide H."""
    T, H = x.shape
    G = -(-H // g)
    if G * g != H:
        x = np.concatenate([x, np.zeros((T, G * g - H), x.dtype)], axis=1)
    return x.reshape(T, G, g)


def as_f16(v: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        out = v.astype("<f2")
    if not np.isfinite(out).all():
        raise CodecError(f"int4: a group scale {float(np.abs(v).max()):g} overflows float16; use int8c or int4c")
    return out


@register_codec
@dataclass(frozen=True)
class Int4(ArrayCodec):
    codec_id = "int4"
    tag = 7
    primary = "g"
    description = "4-bit codes, float16 scale (and zero point with asym=1) per group of g channels of a token."
    g: int = param(32, "channels per group (the last group of a token is shorter if g does not divide H)")
    asym: bool = param(False, "1: scale and zero point per group (min..max); 0: symmetric absmax scale")

    def __post_init__(self):
        check_range(self.codec_id, "g", self.g, 2, 1 << 16)

    def body_size(self, T: int, H: int) -> int:
        G = -(-H // self.g)
        return (4 if self.asym else 2) * T * G + nibbles.packed_size(T * H)

    def _encode(self, x: np.ndarray) -> bytes:
        T, H = x.shape
        xg = grouped(x, self.g)  # (T, G, g)
        if self.asym:
            lo = as_f16(xg.min(axis=2))  # (T, G)
            scale = as_f16((xg.max(axis=2) - lo.astype(np.float32)) / np.float32(15))
            s, z, qmin, qmax = scale.astype(np.float32), lo.astype(np.float32), 0, 15
        else:
            scale = as_f16(np.abs(xg).max(axis=2) / np.float32(7))
            s, z, qmin, qmax = scale.astype(np.float32), np.float32(0), -7, 7
        inv = np.divide(1.0, s, out=np.zeros_like(s), where=s > 0)
        q = np.rint((xg - (z[:, :, None] if self.asym else z)) * inv[:, :, None])
        np.clip(q, qmin, qmax, out=q)
        codes = (q - qmin).astype(np.uint8).reshape(T, -1)[:, :H]
        head = scale.tobytes() + (lo.tobytes() if self.asym else b"")
        return head + nibbles.pack(codes)

    def _decode(self, body, out: np.ndarray) -> None:
        T, H = out.shape
        G = -(-H // self.g)
        scale = np.frombuffer(body, dtype="<f2", count=T * G).astype(np.float32).reshape(T, G)
        offset = 2 * T * G
        if self.asym:
            zero = np.frombuffer(body, dtype="<f2", count=T * G, offset=offset).astype(np.float32).reshape(T, G)
            offset += 2 * T * G
            head_ok = np.isfinite(scale).all() and np.isfinite(zero).all()
        else:
            head_ok = np.isfinite(scale).all()
        if not head_ok:
            raise CodecError("int4: the blob's group scales are not finite; the blob is garbled")
        codes = nibbles.unpack(body, T * H, offset).reshape(T, H)
        q = codes.astype(np.float32) if self.asym else codes.view(np.int8) - np.int8(7)
        step = np.repeat(scale, self.g, axis=1)[:, :H]  # (T, H)
        np.multiply(q, step, out=out)
        if self.asym:
            out += np.repeat(zero, self.g, axis=1)[:, :H]
