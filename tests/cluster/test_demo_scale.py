"""`erpack demo --scale`: the corpus-scale demo end to end in a subprocess (its own moto S3 server on
loopback and its own local Ray), and its bad input (exit status 2, one line)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.services import free_port

pytest.importorskip("ray", reason="the `scale` extra installs Ray")


def erpack(*args, timeout=120, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "erpack", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.parametrize(("args", "message"), [
    (["--storage", "s3://b"], "--storage and --address belong to --scale"),
    (["--scale", "--workers", "0"], "--workers must be at least 1"),
])
def test_bad_flags_are_one_line_and_exit_2(args, message):
    done = erpack("demo", *args)
    assert done.returncode == 2 and message in done.stderr, done.stderr


@pytest.mark.slow  # s3fs and botocore retry a refused connection for about 30 s before saying so
def test_an_unreachable_storage_endpoint_is_named(tmp_path):
    env = {**os.environ, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens there
           "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}
    done = erpack("demo", "--scale", "--quick", "--out", tmp_path / "d", "--storage", "s3://erpack-nowhere/demo",
                  env=env, timeout=180)
    assert done.returncode == 2, done.stderr
    assert "s3://erpack-nowhere/demo" in done.stderr, done.stderr


@pytest.mark.real
@pytest.mark.slow
def test_scale_demo_end_to_end(tmp_path):
    """Encode on Ray into the local S3 server, verify from it, train from it, export, predict on Ray into
    Parquet parts on it: every step's figures hold together, and the JSON document is the file's."""
    out = tmp_path / "scale"
    done = erpack("demo", "--scale", "--quick", "--out", out, "--json", timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    for i, name in enumerate(("services", "encode", "verify", "train", "export", "predict"), 1):
        assert any(line.startswith(f"[{i}/6] {name}") for line in lines), done.stdout
    r = json.loads(lines[-1])
    assert r == json.loads((out / "demo-scale.json").read_text())
    s = r["steps"]
    assert r["ok"] and r["storage"].startswith("s3://")
    assert s["services"]["local_server"] and s["services"]["workers"] == 2
    enc = s["encode"]
    assert enc["cache"].startswith("s3://") and enc["encode"]["encoded"] == enc["documents"] == 160
    assert s["verify"]["ok"] and s["verify"]["documents"] == 160 and s["verify"]["shards"] >= 2
    test_docs = enc["splits"]["test"]
    assert s["train"]["documents"]["test"] == test_docs
    assert s["export"]["parity_max_diff"] <= s["export"]["tolerance"]
    p = s["predict"]
    assert p["output"].startswith("s3://") and p["parts"] >= 2
    assert p["documents"] == p["predicted"] == p["read_back"] == test_docs and p["missing"] == 0
    assert isinstance(p["accuracy"], float) and 0.0 <= p["accuracy"] <= 1.0
    assert p["matches_pytorch"]
    for name in ("encode", "verify", "train", "export", "predict"):  # every step went to the server
        assert s[name]["requests"] > 0 and s[name]["seconds"] > 0
