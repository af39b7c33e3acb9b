"""cache_stats: what a cache holds and what it costs on disk, from the manifest and the id index (or the
shard indexes of the shards it does not cover).

Works on a reader of a local folder or a URL (it reads `reader.location`, else `reader.path`).

Sizes count everything on disk (manifest, framing, ids, token ids, dead records, a fitted codec's
state) unless named `payload`: `bits_per_value` is the honest storage rate, state included;
`bits_per_value_without_state` leaves the fitted state out (what the records cost once the state is
amortized over a large cache); `payload_bits_per_value` is the codec's alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from erpack.store.format import FLAG_TOKENS, FLAG_TOKENS_U32, FLAG_TRUNCATED
from erpack.store.location import open_location
from erpack.store.manifest import MANIFEST, is_sealed


def _ratio(a, b):
    return float(a) / float(b) if b else None


def _summary(values: np.ndarray) -> dict:
    if not len(values):
        return {"mean": None, "median": None, "max": None}
    return {"mean": float(values.mean()), "median": float(np.median(values)), "max": int(values.max())}


def _cat(parts: list, dtype=np.int64) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


@dataclass
class ShardStats:
    """One shard as listed by inspect: its records, the live ones among them, their tokens, its bytes."""

    name: str
    records: int
    live: int
    tokens: int
    bytes: int


@dataclass
class CacheStats:
    """What a cache holds (model, layer, codec, documents, tokens) and what it costs on disk.

    Sizes count everything on disk unless named `payload`; rates are None for an empty cache.
    `bytes_per_document` holds mean and median, `tokens_per_document` mean, median and max.
    `token_id_bytes`: what the live records' token ids take (inside the shards' bytes). `codec_state`:
    the manifest's {name, bytes, sha256} of a fitted codec's state (None without one), `state_bytes`
    its size (0 without one), counted in bytes_on_disk and bits_per_value.
    as_dict() is the JSON `erpack inspect --json` prints."""

    path: str
    format: str
    sealed: bool
    model: dict | None
    layer: int | None
    max_length: int | None
    tokenizer: dict | None
    hidden_size: int
    codec: str
    codec_config: list | dict
    documents: int
    tokens: int
    truncated: int
    records: int
    dead_records: int
    bytes_on_disk: int
    payload_bytes: int
    token_id_bytes: int
    codec_state: dict | None
    state_bytes: int
    bytes_per_token: float | None
    bytes_per_document: dict
    tokens_per_document: dict
    bits_per_value: float | None
    bits_per_value_without_state: float | None
    payload_bits_per_value: float | None
    compression_vs_fp32: float | None
    compression_vs_fp16: float | None
    shards: list[ShardStats]

    def as_dict(self) -> dict:
        return asdict(self)


def _live_records(reader) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[ShardStats]]:
    """Per live record: tokens, bytes on disk, payload bytes, flags; and each shard's stats. From the
    reader's live_records (the id index and the manifest where the index covers a shard: no shard read)."""
    tokens, sizes, payloads, flags, shards = [], [], [], [], []
    for shard in reader.live_records():
        tokens.append(shard.tokens)
        sizes.append(shard.sizes)
        payloads.append(shard.payload_len)
        flags.append(shard.flags)
        shards.append(ShardStats(name=shard.name, records=shard.count, live=shard.live,
                                 tokens=int(shard.tokens.sum()), bytes=shard.size))
    return _cat(tokens), _cat(sizes), _cat(payloads), _cat(flags, np.uint32), shards


def cache_stats(reader) -> CacheStats:
    """CacheStats of an open CacheReader, from its manifest and id index, or the shard indexes past it (no
    record is read)."""
    meta, hidden = reader.meta, reader.hidden_size
    tokens, sizes, payloads, flags, shards = _live_records(reader)
    n_tokens = int(tokens.sum())
    values = n_tokens * hidden
    loc = getattr(reader, "location", None) or open_location(reader.path)  # a folder or a URL
    index = sum(p["bytes"] for p in reader.manifest.get("id_index", {"parts": []})["parts"])
    state = reader.manifest.get("codec_state")
    state_bytes = state["bytes"] if state else 0
    without_state = sum(s.bytes for s in shards) + loc.size(MANIFEST) + index
    disk = without_state + state_bytes
    width = np.where(flags & FLAG_TOKENS, np.where(flags & FLAG_TOKENS_U32, 4, 2), 0)
    records = sum(s.records for s in shards)
    return CacheStats(
        path=str(loc.local) if loc.is_local else loc.url,
        format=f"{reader.manifest['format']} v{reader.manifest['format_version']}",
        sealed=is_sealed(reader.manifest),
        model=meta.get("model"),
        layer=meta.get("layer"),
        max_length=meta.get("max_length"),
        tokenizer=meta.get("tokenizer"),
        hidden_size=hidden,
        codec=reader.codec.spec,
        codec_config=reader.manifest["codec"],
        documents=len(reader),
        tokens=n_tokens,
        truncated=int(np.count_nonzero(flags & FLAG_TRUNCATED)),
        records=records,
        dead_records=records - len(reader),
        bytes_on_disk=disk,
        payload_bytes=int(payloads.sum()),
        token_id_bytes=int((width * tokens).sum()),
        codec_state=dict(state) if state else None,
        state_bytes=state_bytes,
        bytes_per_token=_ratio(disk, n_tokens),
        bytes_per_document={k: v for k, v in _summary(sizes).items() if k != "max"},
        tokens_per_document=_summary(tokens),
        bits_per_value=_ratio(8 * disk, values),
        bits_per_value_without_state=_ratio(8 * without_state, values),
        payload_bits_per_value=_ratio(8 * int(payloads.sum()), values),
        compression_vs_fp32=_ratio(4 * values, disk),
        compression_vs_fp16=_ratio(2 * values, disk),
        shards=shards,
    )
