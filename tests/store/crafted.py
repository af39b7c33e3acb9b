"""Caches written byte by byte with the store's own building blocks, as an attacker (or a bug) could:
records with valid crc32s that claim any shape, and manifests with correct sha256s and checksums."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from erpack.store.manifest import MANIFEST, dump_manifest, new_manifest
from erpack.store.shard import ShardBuilder


def write_cache(folder: Path, meta: dict, codec_config: dict, rows: list, version: int | None = None) -> Path:
    """One shard of `rows` ((doc_id, payload bytes, tokens, hidden)) and a manifest listing it with
    the right size, sha256 and counts, at `version` (default: the one this erpack writes; 2 is sealed)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "shard-000000.ers", "wb") as f:
        builder = ShardBuilder(f)
        for doc_id, payload, tokens, hidden in rows:
            builder.add(doc_id.encode(), payload, tokens, hidden, 0)
        sha = builder.finish()
    manifest = new_manifest(copy.deepcopy(meta), codec_config)
    manifest["format_version"] = version or manifest["format_version"]
    tokens = sum(r[2] for r in rows)
    manifest["counts"] = {"documents": len(rows), "tokens": tokens, "truncated": 0, "records": len(rows),
                          "bytes": builder.size}
    manifest["shards"] = [{"name": "shard-000000.ers", "documents": len(rows), "tokens": tokens, "truncated": 0,
                           "bytes": builder.size, "sha256": sha}]
    (folder / MANIFEST).write_bytes(dump_manifest(manifest))
    return folder


def rewrite_manifest(folder: Path, edit) -> None:
    """Apply edit(manifest dict) and write the manifest back as erpack would (resealed when version >= 2)."""
    manifest = json.loads((folder / MANIFEST).read_bytes())
    edit(manifest)
    (folder / MANIFEST).write_bytes(dump_manifest(manifest))
