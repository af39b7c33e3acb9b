"""`erpack train` and `erpack eval` from a cache on the moto S3 server give the results they give from
a local copy (seeded training repeats exactly; the remote reader is read through the prefetcher), and
so do they with --shard-cache (each shard downloaded once, checked, then read as a local file)."""

from __future__ import annotations

import json

from erpack.cli import main
from tests.remote import reads_urls, upload_cache

pytestmark = reads_urls


def _last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_train_and_eval_from_s3_equal_the_local_copy(tiny, s3_bucket, tmp_path, capsys):
    url = upload_cache(tiny["cache"], f"{s3_bucket}/caches/tiny")
    runs = {}
    shard_cache = ["--shard-cache", str(tmp_path / "shards")]
    for tag, cache, more in [("local", str(tiny["cache"]), []), ("s3", url, []), ("s3-copies", url, shard_cache)]:
        out = tmp_path / f"tm-{tag}"
        assert main(["train", cache, "--labels", str(tiny["labels"]), "-o", str(out), "--epochs", "2",
                     "--batch-size", "8", "--seed", "0", "--json", *more]) == 0
        trained = _last_json(capsys)
        preds = tmp_path / f"p-{tag}.jsonl"
        assert main(["eval", str(out), cache, "--labels", str(tiny["labels"]), "--split", "test",
                     "--predictions", str(preds), "--json", *more]) == 0
        runs[tag] = (trained, _last_json(capsys), preds.read_text())
    (t_local, e_local, p_local), (t_s3, e_s3, p_s3) = runs["local"], runs["s3"]
    copies = runs["s3-copies"]
    assert copies[1]["metrics"] == runs["s3"][1]["metrics"] and copies[2] == runs["s3"][2]
    assert len(list((tmp_path / "shards").glob("*.ers"))) == 1  # the cache's one shard, downloaded once
    assert t_s3["cache"] == url and t_s3["documents"] == t_local["documents"]
    def losses(t):
        return [(e["train_loss"], e["validation"]) for e in t["recycled"]["epochs"]]

    assert losses(t_s3) == losses(t_local) == losses(runs["s3-copies"][0])  # the same losses, bit for bit
    assert e_s3["metrics"] == e_local["metrics"] and e_s3["documents"] == e_local["documents"] == 8
    assert p_s3 == p_local
