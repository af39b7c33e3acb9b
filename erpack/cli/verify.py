"""`erpack verify`: check every byte of a cache; exit 0 when all is good, 1 listing what failed."""

from __future__ import annotations

import json


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "verify",
        help="check every shard's sha256 and every record's checksum and decoding; exit 1 on damage",
        description=(
            "Read a whole cache and check it: each shard listed in manifest.json exists with the size and "
            "sha256 the manifest recorded, its header, index and footer are intact, every record's crc32 "
            "matches and agrees with the index, every record decodes with the cache's codec to float32 "
            "(tokens, hidden), and the manifest's counts match the shards. Prints a summary and each "
            "failure (shard, record index, document id, byte offset, what is wrong). Exit status: 0 all "
            "good, 1 something failed, 2 not a readable cache. Re-encode the documents it lists (appending "
            "with on_duplicate='replace' supersedes a damaged record)."
        ),
    )
    p.add_argument("cache", metavar="CACHE", help="cache folder (the one holding manifest.json)")
    p.add_argument("--no-decode", action="store_true",
                   help="check checksums and framing only, skip decoding every record (faster)")
    p.add_argument("--json", action="store_true", help="also print the whole report as one JSON document on the last line")
    p.set_defaults(run=run)


def run(args) -> int:
    from erpack.store import verify_cache

    report = verify_cache(args.cache, decode=not args.no_decode)
    failures = report["failures"]
    bad_shards = [s["name"] for s in report["shards"] if not s["ok"]]
    print(f"cache      {report['path']}")
    print(f"checked    {len(report['shards'])} shards, {report['records']} records "
          f"({report['documents']} live documents); sha256, crc32"
          + (", decoding" if report["decoded"] else " (decoding skipped: --no-decode)"))
    for w in report["warnings"]:
        print(f"warning    {w}")
    for f in failures:
        where = f"record {f['record_index']} (doc id {f['doc_id']!r}) at byte {f['offset']}" \
            if f["record_index"] is not None else ("whole file" if f["offset"] is None else f"byte {f['offset']}")
        dead = " [dead record, superseded]" if f.get("live") is False else ""
        print(f"FAILED     {f['shard']}: {where}: {f['error']}{dead}")
    if report["ok"]:
        print("result     OK: every shard and record checks out")
    else:
        ids = sorted({f["doc_id"] for f in failures if f["doc_id"] is not None and f.get("live") is not False})
        print(f"result     FAILED: {len(failures)} problem(s) in {len(bad_shards)} shard(s) "
              f"({', '.join(bad_shards) or 'manifest'}); {len(ids)} live document(s) to re-encode")
    if args.json:
        print(json.dumps(report))
    return 0 if report["ok"] else 1
