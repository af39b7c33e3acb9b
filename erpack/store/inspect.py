"""cache_stats: what a cache holds and what it costs on disk, from the manifest and shard indexes.

Sizes count everything on disk (manifest, framing, ids, dead records) unless named `payload`:
`bits_per_value` is the honest storage rate, `payload_bits_per_value` the codec's alone.
"""

from __future__ import annotations

import numpy as np

from erpack.store.format import FLAG_TRUNCATED
from erpack.store.manifest import MANIFEST, is_sealed


def _ratio(a, b):
    return float(a) / float(b) if b else None


def _summary(values: np.ndarray) -> dict:
    if not len(values):
        return {"mean": None, "median": None, "max": None}
    return {"mean": float(values.mean()), "median": float(np.median(values)), "max": int(values.max())}


def _cat(parts: list, dtype=np.int64) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


def cache_stats(reader) -> dict:
    """A JSON-able dict for `erpack inspect`: model, layer, codec, counts, sizes, rates, shards."""
    meta, hidden = reader.meta, reader.hidden_size
    tokens, sizes, payloads, flags, shards = [], [], [], [], []
    for shard, live in reader.live_masks():
        tokens.append(shard.entries["tokens"][live].astype(np.int64))
        sizes.append(shard.record_size()[live])
        payloads.append(shard.entries["payload_len"][live].astype(np.int64))
        flags.append(shard.entries["flags"][live])
        shards.append({"name": shard.name, "records": shard.count, "live": int(live.sum()),
                       "tokens": int(tokens[-1].sum()), "bytes": shard.size})
    tokens, sizes, payloads, flags = _cat(tokens), _cat(sizes), _cat(payloads), _cat(flags, np.uint32)
    n_tokens = int(tokens.sum())
    values = n_tokens * hidden
    disk = sum(s["bytes"] for s in shards) + (reader.path / MANIFEST).stat().st_size
    records = sum(s["records"] for s in shards)
    return {
        "path": str(reader.path),
        "format": f"{reader.manifest['format']} v{reader.manifest['format_version']}",
        "sealed": is_sealed(reader.manifest),
        "model": meta.get("model"),
        "layer": meta.get("layer"),
        "max_length": meta.get("max_length"),
        "tokenizer": meta.get("tokenizer"),
        "hidden_size": hidden,
        "codec": reader.codec.spec,
        "codec_config": reader.manifest["codec"],
        "documents": len(reader),
        "tokens": n_tokens,
        "truncated": int(np.count_nonzero(flags & FLAG_TRUNCATED)),
        "records": records,
        "dead_records": records - len(reader),
        "bytes_on_disk": disk,
        "payload_bytes": int(payloads.sum()),
        "bytes_per_token": _ratio(disk, n_tokens),
        "bytes_per_document": {k: v for k, v in _summary(sizes).items() if k != "max"},
        "tokens_per_document": _summary(tokens),
        "bits_per_value": _ratio(8 * disk, values),
        "payload_bits_per_value": _ratio(8 * int(payloads.sum()), values),
        "compression_vs_fp32": _ratio(4 * values, disk),
        "compression_vs_fp16": _ratio(2 * values, disk),
        "shards": shards,
    }
