"""tools/bench_scale_read.py on a small cache: every pass reads every document, and the request
counts say what the reads cost (one ranged GET per record for random batches, read-ahead in order,
nothing from S3 once the shard cache is warm)."""

from __future__ import annotations

from erpack.store import CacheWriter
from tests.store.conftest import make_meta, pipe, records


def test_the_read_bench_reads_everything_and_counts_requests(tmp_path, s3_server):
    from tools.bench_scale_read import PASSES, measure, table

    with CacheWriter(tmp_path / "c", meta=make_meta(), codec=pipe("int8z")) as w:
        for s in range(3):
            w.commit_shard(records(20, seed=s, prefix=f"s{s}"))
    rows = measure(tmp_path / "c", batch_size=8, seed=1, shard_cache=True, server=s3_server)["rows"]
    by = {(r["pass"], r["source"]): r for r in rows}
    assert len(rows) == 3 * 4 and all(r["documents"] == 60 for r in rows)
    assert len({r["tokens"] for r in rows}) == 1 and len({r["stored_bytes"] for r in rows}) == 1
    for kind in PASSES:
        warm = by[(kind, "s3 --shard-cache (warm)")]["by_kind"]
        cold = by[(kind, "s3 --shard-cache (cold)")]["by_kind"]
        assert not any("shard" in k for k in warm) and cold["GET shard (range)"] == 3  # each shard downloaded once
    assert by[("train", "s3")]["by_kind"]["GET shard (range)"] == 60  # one ranged GET per record
    assert by[("in-order", "s3")]["by_kind"]["GET shard (range)"] <= 6  # trailer + read-ahead per shard
    assert len(table(rows)) == 2 + len(rows)
