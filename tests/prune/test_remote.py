"""`erpack prune` from a cache on the moto S3 server: the same importance, plan and scores as from the
local copy."""

from __future__ import annotations

import json

from erpack.cli import main
from tests.remote import reads_urls, upload_cache

pytestmark = reads_urls


def test_prune_from_s3_equals_the_local_copy(tiny_task, s3_bucket, tmp_path, capsys):
    url = upload_cache(tiny_task["cache"], f"{s3_bucket}/caches/tiny")
    out = {}
    for tag, cache in [("local", str(tiny_task["cache"])), ("s3", url)]:
        assert main(["prune", str(tiny_task["task_model"]), cache, "--labels", str(tiny_task["labels"]), "--heads",
                     "0.5", "--epochs", "1", "--samples", "8", "-o", str(tmp_path / tag), "--json"]) == 0
        out[tag] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    local, s3 = out["local"], out["s3"]
    assert s3["cache"] == url and s3["plan"] == local["plan"]
    assert s3["test"] == local["test"] and s3["test_unpruned"] == local["test_unpruned"]
