"""`erpack verify`: check every byte of a cache or a bundle; exit 0 when all is good, 1 listing what failed."""

from __future__ import annotations

import json

from erpack.cli import CLIError
from erpack.cli.storage import add_storage_options, cache_where
from erpack.deploy.bundle import is_bundle
from erpack.deploy.verify import BundleReport, verify_bundle
from erpack.errors import CorruptManifestError
from erpack.store import verify_cache
from erpack.store.verify import Failure, VerifyReport, manifest_failure, seal_cache

RESTORE = "restore it from a copy of the cache, or re-encode the corpus into a new folder"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "verify",
        help="check the manifest's checksum, every shard's sha256 and every record's checksum and decoding; exit 1 on damage",
        description=(
            "Read a whole cache and check it: manifest.json is sealed by its checksum (format version 2 on; a "
            "version-1 manifest has none and gets a warning), a fitted codec's state file is there with the "
            "size and sha256 the manifest seals and belongs to the cache's model and layer, each shard it "
            "lists exists with the size and "
            "sha256 the manifest recorded, its header, index, padding and footer are intact, every record's "
            "crc32 matches and agrees with the index, its tokens and hidden size fit the manifest (hidden "
            "size equal, tokens at most max_length), it decodes with the cache's codec to float32 (tokens, "
            "hidden), and the manifest's counts match the shards. Prints a summary, each failure (shard, "
            "record index, document id, byte offset, what is wrong) and what to do. Exit status: 0 all good, "
            "1 something failed (a damaged manifest too), 2 not a cache (no manifest) or one this erpack cannot "
            "read. Re-encode the documents it lists (appending with on_duplicate='replace' supersedes a "
            "damaged record). Given a bundle folder (erpack export --bundle; it holds bundle.json), checks its "
            "manifest's checksum, each file's size and sha256, that each graph loads and records the cache "
            "identity the manifest records, and that the tokenizer and codec load: exit 0, or 1 listing each "
            "damaged file."
        ),
    )
    p.add_argument("cache", metavar="CACHE", help="cache folder (the one holding manifest.json) or URL (s3://bucket/prefix, "
                   "...), or a bundle folder (the one holding bundle.json)")
    p.add_argument("--no-decode", action="store_true",
                   help="check checksums and framing only, skip decoding every record (faster)")
    p.add_argument("--seal", action="store_true",
                   help="after a full check that finds nothing wrong, rewrite a version-1 manifest as version 2, "
                        "sealed by its checksum (atomic, holding the writer lock; shards are not touched)")
    p.add_argument("--json", action="store_true", help="also print the whole report as one JSON document on the last line")
    add_storage_options(p)
    p.set_defaults(run=run)


def _where(f: Failure) -> str:
    if f.record_index is not None:
        return f"record {f.record_index} (doc id {f.doc_id!r}) at byte {f.offset}"
    return "whole file" if f.offset is None else f"byte {f.offset}"


def summary(report: VerifyReport) -> list[str]:
    """The human report: what was checked, each warning and failure, the result and what to do."""
    live = f"{report.documents} live documents" if report.documents is not None else (
        f"live documents unknown: {len(report.unreadable)} shard(s) cannot be read")
    lines = [f"cache      {report.path}",
             f"checked    {len(report.shards)} shards, {report.records} records ({live}); "
             + ("manifest checksum, " if report.sealed else "")
             + "sha256, crc32" + (", decoding" if report.decoded else
                                  " (decoding skipped: the fitted state failed)" if _state_failures(report) else
                                  " (decoding skipped: --no-decode)")]
    lines += [f"warning    {w}" for w in report.warnings]
    for f in report.failures:
        dead = " [dead record, superseded]" if f.live is False else ""
        lines.append(f"FAILED     {f.shard}: {_where(f)}: {f.error}{dead}")
    if report.ok:
        sealed = " and the manifest is sealed now" if report.sealed_now else ""
        return lines + [f"result     OK: every shard and record checks out{sealed}"]
    bad = sorted({f.shard for f in report.failures})
    lines.append(f"result     FAILED: {len(report.failures)} problem(s) in {', '.join(bad)}")
    return lines + [f"action     {a}" for a in actions(report)]


def _state_failures(report: VerifyReport) -> list:
    """Failures of the fitted codec state file (named codec-state-*, or codec_state when unnamed)."""
    return [f for f in report.failures if f.shard.startswith("codec-state-") or f.shard == "codec_state"]


def actions(report: VerifyReport) -> list[str]:
    """What to do about each kind of failure in the report, one line each."""
    failures, out = report.failures, []
    for name in report.unreadable:
        error = next(f.error for f in failures if f.shard == name and f.record_index is None)
        out.append(f"{name} cannot be read ({error}), so the documents it holds cannot be listed: {RESTORE}")
    records = [f for f in failures if f.record_index is not None]
    ids = sorted({f.doc_id for f in records if f.live is not False})
    if ids:
        shown = ", ".join(map(repr, ids[:10])) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
        out.append(f"re-encode {len(ids)} live document(s) ({shown}): encode them again into this cache with "
                   f"--on-duplicate replace (the damaged records stay, dead), or re-encode into a new folder")
    if records and not ids:
        out.append("every damaged record is dead (superseded by a newer record of its id): reads are not "
                   "affected; to drop them, re-encode into a new folder")
    state = _state_failures(report)
    if state:
        out.append(f"{state[0].shard}: the codec's fitted state cannot be used, so no record can be decoded: restore "
                   f"it from a copy of the cache, or re-encode the corpus into a new folder")
    named = {f.shard for f in records} | set(report.unreadable) | {f.shard for f in state}
    other = sorted({f.shard for f in failures if f.shard not in named})
    if other:
        out.append(f"{', '.join(other)}: the manifest's records of the shards (sha256 or counts) disagree with "
                   f"the files, which check out: restore manifest.json from a copy of the cache, or re-encode "
                   f"into a new folder")
    return out


def bundle_summary(report: BundleReport) -> list[str]:
    lines = [f"bundle     {report.path}",
             f"checked    {report.files} files ({report.bytes / 1e6:.2f} MB): manifest checksum, sizes, sha256; graphs "
             f"{', '.join(report.graphs) or 'none'} loaded; tokenizer and codec"]
    lines += [f"warning    {w}" for w in report.warnings]
    lines += [f"FAILED     {f['file']}: {f['error']}" for f in report.failures]
    if report.ok:
        return lines + ["result     OK: every file of the bundle checks out"]
    bad = sorted({f["file"] for f in report.failures})
    return lines + [f"result     FAILED: {len(report.failures)} problem(s) in {', '.join(bad)}",
                    "action     copy the bundle again from where it was made, or export it again "
                    "(erpack export TASK_MODEL --bundle DIR --overwrite)"]


def run(args) -> int:
    if is_bundle(args.cache):
        if args.seal or args.no_decode:
            raise CLIError("--seal and --no-decode apply to a cache; a bundle is checked whole")
        report = verify_bundle(args.cache)
        print("\n".join(bundle_summary(report)))
        if args.json:
            print(json.dumps(report.as_dict()))
        return 0 if report.ok else 1
    if args.seal and args.no_decode:
        raise CLIError("--seal needs the full check: drop --no-decode")
    cache = cache_where(args.cache, args)
    try:
        report = seal_cache(cache) if args.seal else verify_cache(cache, decode=not args.no_decode)
    except CorruptManifestError as exc:  # damage found (exit 1), not a folder that is no cache (exit 2)
        report = manifest_failure(args.cache, exc)
        print("\n".join([f"cache      {args.cache}", f"FAILED     {exc}",
                         "result     FAILED: manifest.json is damaged, so no shard or record can be checked",
                         "action     restore manifest.json from a copy of the cache, or re-encode the corpus "
                         "into a new folder"]))
        if args.json:
            print(json.dumps(report.as_dict()))
        return 1
    print("\n".join(summary(report)))
    if args.json:
        print(json.dumps(report.as_dict()))
    return 0 if report.ok else 1
