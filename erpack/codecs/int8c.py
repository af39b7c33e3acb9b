"""int8c: 8-bit codes with one step per block of tokens, widened per channel where the range needs it.

See steps.py for the allocation. The `snr` parameter is the quality each block is quantized to
(the expected SQNR in dB); zstd afterwards removes the code space a narrow channel leaves unused,
so `int8c+zstd` lands near 7 bits a value at 41 dB on MiniLM / MPNet middle layers.
Layout after the header: per block delta float32[nb], e uint8[nb, H]; then codes int8[T, H].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from erpack.codecs import steps
from erpack.codecs.base import HEADER, ArrayCodec, check_range, param
from erpack.codecs.registry import register_codec
from erpack.errors import CodecError


@register_codec
@dataclass(frozen=True)
class Int8C(ArrayCodec):
    codec_id = "int8c"
    tag = 5
    primary = "snr"
    description = (
        "8-bit codes, one step per block of tokens set for a target SQNR, widened per channel for "
        "outlier channels (delta*2^(e/8)); 8 + (32 + 8H)/(block*H) bits a value before zstd."
    )
    snr: float = param(41.0, "target SQNR in dB of each block (higher: finer step, more bits after zstd)")
    block: int = param(64, "tokens per block sharing one step; 0 = the whole record")

    QMAX = 127

    def __post_init__(self):
        check_range(self.codec_id, "snr", self.snr, 1.0, 99.0)
        check_range(self.codec_id, "block", self.block, 0, 1 << 20)

    def body_size(self, T: int, H: int) -> int:
        _, nb = steps.n_blocks(T, self.block)
        return 4 * nb + nb * H + T * H

    def _encode(self, x: np.ndarray) -> bytes:
        delta, e, q = steps.quantize(x, self.QMAX, self.snr, self.block)
        return delta.astype("<f4").tobytes() + e.tobytes() + q.tobytes()

    def _decode(self, body, out: np.ndarray) -> None:
        T, H = out.shape
        B, nb = steps.n_blocks(T, self.block)
        raw = np.frombuffer(body, dtype=np.uint8)
        step = steps.read_steps(body, raw, nb, H, self.codec_id)
        q = raw[4 * nb + nb * H :].view(np.int8).reshape(T, H)
        steps.dequantize(q, step, B, out)

    def decode_batch(self, views, lengths, out: np.ndarray, tokens=None) -> None:
        """Every record's codes go into one int8 (B, T, H) scratch batch and its block steps into
        (B, blocks, H), then one multiply per block column dequantizes the whole batch: the blocks
        of every record start at multiples of `block`, so token i of any record is in block i // block."""
        B, T, H = out.shape
        blk = self.block or T  # block 0: one block per record, at most T tokens
        nblk = -(-T // blk)
        codes = steps.scratch_codes((B, T, H))
        delta = np.ones((B, nblk), dtype=np.float32)
        e = np.zeros((B, nblk, H), dtype=np.uint8)  # blocks past a record's end: step 1 times code 0
        for r, (view, t) in enumerate(zip(views, lengths)):
            nb = -(-t // blk)
            self.check_header(view, t, H, HEADER.size + 4 * nb + nb * H + t * H)
            raw = np.frombuffer(view, dtype=np.uint8, offset=HEADER.size)
            delta[r, :nb] = np.frombuffer(view, dtype="<f4", count=nb, offset=HEADER.size)
            e[r, :nb] = raw[4 * nb : 4 * nb + nb * H].reshape(nb, H)
            codes[r, :t] = raw[4 * nb + nb * H :].view(np.int8).reshape(t, H)
            codes[r, t:] = 0
        if not (np.isfinite(delta).all() and (delta > 0).all()):
            raise CodecError(f"{self.codec_id}: a blob's block step is not a finite positive number; the blob is garbled")
        scale = steps.SCALES.take(e)  # (B, nblk, H)
        scale *= delta[:, :, None]
        full = T // blk
        if full:  # splitting the token axis of a view gives a view: the products land in out
            np.multiply(codes[:, : full * blk].reshape(B, full, blk, H), scale[:, :full, None, :],
                        out=out[:, : full * blk].reshape(B, full, blk, H))
        if full < nblk:
            np.multiply(codes[:, full * blk :], scale[:, full, None, :], out=out[:, full * blk :])
