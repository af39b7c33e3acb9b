"""erpack.cluster.s3local: a real moto server on loopback, a bucket, the environment set and restored."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("moto.server", reason="the `scale` and `test` extras install moto[server]")


def test_local_s3_serves_a_bucket_counts_requests_and_restores_the_environment(monkeypatch):
    from erpack.cluster.s3local import local_s3
    from erpack.store.location import open_location

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://elsewhere.invalid")
    with local_s3("erpack-s3local") as s3:
        assert s3.url == "s3://erpack-s3local" and os.environ["AWS_ENDPOINT_URL"] == s3.endpoint
        before = s3.requests()
        loc = open_location(f"{s3.url}/prefix")
        loc.write_atomic("a.bin", b"0123456789")
        assert loc.read("a.bin", 2, 5) == b"234"
        assert s3.requests() > before
        assert any(method == "GET" and rng == "bytes=2-4" for method, _, rng in s3.log)
    assert os.environ["AWS_ENDPOINT_URL"] == "http://elsewhere.invalid"
