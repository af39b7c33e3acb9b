"""`erpack export --calibration-cache s3://...`: the cached records of a remote cache calibrate and check
the export as those of the local copy do."""

from __future__ import annotations

import json

from erpack.cli import main
from tests.remote import reads_urls, upload_cache

pytestmark = reads_urls


def test_calibration_cache_on_s3_equals_the_local_copy(tiny, s3_bucket, tmp_path, capsys):
    url = upload_cache(tiny["cache"], f"{s3_bucket}/caches/tiny")
    out = {}
    for tag, cache in [("local", str(tiny["cache"])), ("s3", url)]:
        assert main(["export", str(tiny["task_model"]), "-o", str(tmp_path / f"{tag}.onnx"), "--quantize", "static",
                     "--calibration-cache", cache, "--calibration-docs", "16", "--json"]) == 0
        out[tag] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["s3"]["parity"]["passed"] and out["s3"]["notes"] == out["local"]["notes"]
    assert [v["variant"] for v in out["s3"]["variants"]] == [v["variant"] for v in out["local"]["variants"]]
    for a, b in zip(out["local"]["variants"], out["s3"]["variants"]):  # calibrated alike: the same agreement
        assert a["agreement"] == b["agreement"]
