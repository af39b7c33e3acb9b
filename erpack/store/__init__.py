"""The cache on disk: one folder, a manifest.json and shard files of checksummed records.

    from erpack.store import CacheWriter, CacheReader
    with CacheWriter(path, meta=meta, codec=pipeline, mode="append") as w:
        w.commit_shard([(doc_id, activations), ...])   # one shard, committed atomically
    r = CacheReader(path); r.get(doc_id); r.verify(); r.stats()

The byte layout, commit protocol and compatibility rules: docs/cache-format.md.
"""

from erpack.store.format import FORMAT_NAME, FORMAT_VERSION
from erpack.store.inspect import CacheStats
from erpack.store.reader import CacheReader, MissingDocumentError
from erpack.store.verify import VerifyReport, verify_cache
from erpack.store.writer import CacheWriter

__all__ = ["CacheReader", "CacheWriter", "CacheStats", "MissingDocumentError", "VerifyReport", "verify_cache",
           "FORMAT_NAME", "FORMAT_VERSION"]
