"""CacheReader: random access by document id and in-order iteration over a cache, memory-mapped.

Opening reads manifest.json once, maps every listed shard and reads its index (not its records).
The reader sees exactly the shards that manifest lists: a writer appending meanwhile adds shards
it will not see, and never changes the ones it maps. Reading never modifies the folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from erpack.batching import mask_from_lengths
from erpack.codecs import Pipeline
from erpack.errors import CodecError, StoreError
from erpack.store.format import FLAG_TRUNCATED
from erpack.store.inspect import CacheStats, cache_stats
from erpack.store.manifest import load_manifest, mismatch_error, subset_mismatches
from erpack.store.shard import RecordLimits, ShardFile, decode_payload
from erpack.store.verify import VerifyReport, verify_cache


class MissingDocumentError(StoreError, KeyError):
    """A document id the cache does not hold (a KeyError too, so dict-style code works)."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0]) if self.args else ""


class CacheReader:
    """Read-only view of a cache folder. `verify_checksums=False` skips the per-record crc32 (the
    framing, the index and each record's (T, H) against the manifest are still checked)."""

    def __init__(self, path, verify_checksums: bool = True):
        self.path = Path(path)
        self.verify_checksums = verify_checksums
        self.manifest = load_manifest(self.path)
        self.meta = self.manifest["meta"]
        self.codec = Pipeline.from_config(self.manifest["codec"])
        self.limits = RecordLimits.from_meta(self.meta)  # every record's (T, H) is checked against it
        self._shards: list[ShardFile] = []
        try:
            for entry in self.manifest["shards"]:
                self._shards.append(ShardFile(self.path / entry["name"], expected_size=entry["bytes"], limits=self.limits))
        except BaseException:
            self.close()
            raise
        self._index_ids()

    def _index_ids(self) -> None:
        """id -> (shard, record) for live records; later records of an id supersede earlier ones."""
        where: dict[str, tuple[int, int]] = {}
        for s, shard in enumerate(self._shards):
            for i, doc_id in enumerate(shard.ids):
                where[doc_id] = (s, i)
        self._where = where
        self._order = [
            doc_id for s, shard in enumerate(self._shards) for i, doc_id in enumerate(shard.ids)
            if where[doc_id] == (s, i)
        ]

    # ---- what the cache is --------------------------------------------------------------------
    @property
    def layer(self):
        return self.meta.get("layer")

    @property
    def hidden_size(self) -> int:
        return self.meta["model"]["hidden_size"]

    def check_compatible(self, expected_meta: dict, codec_config: dict | None = None) -> None:
        """Raise ManifestMismatchError unless every field given in expected_meta (nested dicts may
        be partial) equals the stored one, and the codec config too when given."""
        found = subset_mismatches(self.meta, expected_meta)
        if codec_config is not None and codec_config != self.manifest["codec"]:
            found.append(("codec", self.manifest["codec"], codec_config))
        if found:
            raise mismatch_error(self.path, found, "the caller expects")

    # ---- ids --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._order)

    def ids(self) -> list[str]:
        """Live document ids in order: shards in commit order, records in their order in a shard."""
        return list(self._order)

    def __contains__(self, doc_id) -> bool:
        return doc_id in self._where

    def _locate(self, doc_id: str) -> tuple[ShardFile, int]:
        try:
            s, i = self._where[doc_id]
        except (KeyError, TypeError):
            raise MissingDocumentError(
                f"document {doc_id!r} is not in the cache {self.path} ({len(self)} documents): "
                f"encode it first, or check the id (`erpack inspect {self.path}`)"
            ) from None
        if self._shards is None:
            raise StoreError(f"the reader of {self.path} is closed")
        return self._shards[s], i

    def info(self, doc_id: str) -> dict:
        """Where a document lives and what its record holds, without reading the record."""
        shard, i = self._locate(doc_id)
        e = shard.entries[i]
        return {"shard": shard.name, "record_index": i, "offset": int(e["offset"]),
                "tokens": int(e["tokens"]), "payload_bytes": int(e["payload_len"]),
                "truncated": bool(int(e["flags"]) & FLAG_TRUNCATED)}

    def token_hash(self, doc_id: str) -> int | None:
        """The u64 hash of the token ids that made the document's record (erpack.tokens.token_hash),
        or None where unknown (a version-1 shard, or a writer that gave none)."""
        shard, i = self._locate(doc_id)
        return shard.token_hash(i)

    # ---- records ------------------------------------------------------------------------------
    def get_encoded(self, doc_id: str) -> tuple[memoryview, tuple[int, int]]:
        """(encoded payload, (tokens, hidden)): a zero-copy view, valid while the reader is open."""
        shard, i = self._locate(doc_id)
        payload, shape, _ = shard.read(i, verify=self.verify_checksums)
        return payload, shape

    def get(self, doc_id: str) -> np.ndarray:
        """The document's activations, float32 (tokens, hidden)."""
        shard, i = self._locate(doc_id)
        payload, shape, _ = shard.read(i, verify=self.verify_checksums)
        return decode_payload(self.codec, shard, i, payload, shape)

    def get_batch(self, doc_ids, out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Several documents as one padded batch: hidden float32 (B, T, H), T the longest of them, zero
        past each document's length, and attention mask int64 (B, T), 1 on real tokens. Decoded by
        `Pipeline.decode_batch` (one dequantization for the batch where the codec allows); `out`, a
        (B, T, H) float32 array, is reused if given. A record that fails is named in the error."""
        located = [self._locate(d) for d in doc_ids]
        if not located:
            raise StoreError("get_batch needs at least one document id")
        reads = [shard.read(i, verify=self.verify_checksums) for shard, i in located]
        shapes = [shape for _, shape, _ in reads]
        try:
            hidden = self.codec.decode_batch([payload for payload, _, _ in reads], shapes, out)
        except CodecError:  # find the record and say which: decode_payload names shard, record and id
            for (shard, i), (payload, shape, _) in zip(located, reads):
                decode_payload(self.codec, shard, i, payload, shape)
            raise
        return hidden, mask_from_lengths([t for t, _ in shapes], hidden.shape[1])  # (B, T, H), (B, T)

    def iter_encoded(self) -> Iterator[tuple[str, memoryview, tuple[int, int]]]:
        for doc_id in self._order:
            shard, i = self._locate(doc_id)
            payload, shape, _ = shard.read(i, verify=self.verify_checksums)
            yield doc_id, payload, shape

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        for doc_id in self._order:
            shard, i = self._locate(doc_id)
            payload, shape, _ = shard.read(i, verify=self.verify_checksums)
            yield doc_id, decode_payload(self.codec, shard, i, payload, shape)

    def live_masks(self) -> list[tuple[ShardFile, np.ndarray]]:
        """(shard, bool mask over its records: True where the record is the live one for its id)."""
        out = []
        for s, shard in enumerate(self._shards or ()):
            live = [self._where[d] == (s, i) for i, d in enumerate(shard.ids)]
            out.append((shard, np.array(live, dtype=bool)))
        return out

    # ---- whole-cache reports ------------------------------------------------------------------
    def verify(self, decode: bool = True) -> VerifyReport:
        """Check every shard's sha256 and every record's framing, crc32 and decoding (see verify.py)."""
        return verify_cache(self.path, decode=decode, manifest=self.manifest, codec=self.codec)

    def stats(self) -> CacheStats:
        """What the cache holds and what it costs (see inspect.py); reads only the indexes."""
        return cache_stats(self)

    def close(self) -> None:
        for shard in self._shards or ():
            shard.close()
        self._shards = None

    def __enter__(self) -> CacheReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CacheReader({str(self.path)!r}, documents={len(self)}, codec={self.codec.spec!r})"

