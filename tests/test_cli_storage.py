"""Caches at a URL through the command line: bad input fails at once (exit 2) with a message that names
the URL and says what to do; `--storage-options` is checked JSON. Against the moto S3 server of
tests/services.py (a real server on loopback, no mocks)."""

from __future__ import annotations

import pytest

from erpack.cli import main

# every command that reads a cache: its arguments around the cache URL
COMMANDS = {
    "inspect": lambda c: ["inspect", c],
    "verify": lambda c: ["verify", c],
    "train": lambda c: ["train", c, "--labels", "labels.jsonl", "-o", "model-out"],
    "eval": lambda c: ["eval", "model-folder", c, "--labels", "labels.jsonl"],
    "prune": lambda c: ["prune", "model-folder", c, "--labels", "labels.jsonl", "-o", "pruned", "--heads", "0.5"],
    "predict": lambda c: ["predict", "graph.onnx", c, "-o", "p.jsonl"],
    "predict-ray": lambda c: ["predict", "graph.onnx", c, "--engine", "ray", "--out", "parts"],
    "compress": lambda c: ["compress", c, "--codec", "int8z"],
    "export": lambda c: ["export", "model-folder", "-o", "m.onnx", "--calibration-cache", c],
    "bench": lambda c: ["bench", "corpus.jsonl", "--cache", c],
    "report": lambda c: ["report", c],
}


def _fresh_s3_clients():
    """fsspec reuses a file system made with the same options; a test that changes the environment
    (credentials) needs a new one, as a new process would make."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


@pytest.mark.parametrize("command", COMMANDS)
def test_no_cache_at_the_url(s3_bucket, capsys, command):
    url = f"{s3_bucket}/nothing-here"
    assert main(COMMANDS[command](url)) == 2
    err = capsys.readouterr().err
    assert f"{url}: no cache there (no manifest.json)" in err and "erpack encode" in err


def test_bucket_that_does_not_exist(s3_server, capsys):
    assert main(["inspect", "s3://erpack-no-such-bucket/c"]) == 2
    err = capsys.readouterr().err
    assert "s3://erpack-no-such-bucket/c" in err and "bucket 'erpack-no-such-bucket' does not exist" in err


def test_unreachable_endpoint(s3_bucket, capsys):
    options = ('{"endpoint_url": "http://127.0.0.1:9", "config_kwargs": {"connect_timeout": 0.5, '
               '"read_timeout": 0.5, "retries": {"max_attempts": 1}}}')
    assert main(["train", f"{s3_bucket}/c", "--labels", "x.jsonl", "-o", "m", "--storage-options", options]) == 2
    err = capsys.readouterr().err
    assert f"{s3_bucket}/c" in err and "cannot reach the storage endpoint http://127.0.0.1:9" in err
    assert "check the endpoint" in err


def test_missing_credentials(s3_bucket, capsys, monkeypatch, tmp_path):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    _fresh_s3_clients()
    try:
        assert main(["predict", "graph.onnx", f"{s3_bucket}/c", "-o", "p.jsonl"]) == 2
    finally:
        _fresh_s3_clients()
    err = capsys.readouterr().err
    assert f"{s3_bucket}/c" in err and "no credentials" in err and "AWS_ACCESS_KEY_ID" in err


def test_unknown_scheme(capsys):
    assert main(["eval", "model", "foo://bucket/cache", "--labels", "x.jsonl"]) == 2
    err = capsys.readouterr().err
    assert "foo://bucket/cache" in err and "no foo:// file system" in err


@pytest.mark.parametrize("text,says", [("{bad", "is not valid JSON"), ("[1, 2]", "must be a JSON object")])
def test_bad_storage_options(capsys, text, says):
    assert main(["inspect", "s3://erpack-any/c", "--storage-options", text]) == 2
    err = capsys.readouterr().err
    assert "--storage-options" in err and says in err


def test_local_paths_keep_their_messages(tmp_path, capsys):
    """A local folder that is no cache is reported by the store as before (no URL check on paths)."""
    assert main(["inspect", str(tmp_path / "missing")]) == 2
    assert str(tmp_path / "missing") in capsys.readouterr().err


def _small_cache(where) -> None:
    from erpack.store import CacheWriter
    from tests.store.conftest import make_meta, pipe, records

    with CacheWriter(where, meta=make_meta(), codec=pipe("fp32")) as w:
        w.commit_shard(records(12))


def test_verify_and_compress_out_on_s3(s3_bucket, s3_server, tmp_path, capsys, monkeypatch):
    """verify reads a cache at a URL; compress --out writes one there (and the endpoint may come from
    --storage-options instead of the environment)."""
    import json

    _small_cache(tmp_path / "local")
    url = f"{s3_bucket}/int8"
    assert main(["compress", str(tmp_path / "local"), "--codec", "int8z", "--out", url]) == 0
    assert f"wrote    {url}: 12 documents" in capsys.readouterr().out
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    options = json.dumps({"endpoint_url": s3_server.endpoint})
    assert main(["verify", url, "--storage-options", options, "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["ok"] and report["documents"] == 12
