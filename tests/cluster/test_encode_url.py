"""`erpack encode` (the single-process engine) with the cache and the corpus at URLs: memory:// and the
moto S3 server of tests/services.py (a real server on loopback, no mocks). Resume after a SIGKILL,
append, and the same records as a local encode; a tiny random BERT keeps it to seconds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from erpack.cli import main
from erpack.encode import encode_corpus
from erpack.store import CacheReader, verify_cache
from erpack.store.manifest import load_manifest
from tests.cluster.conftest import CODEC, LAYER, corpus_rows, write_jsonl, write_parquet

pytest.importorskip("fsspec", reason="the `scale` extra installs fsspec")

SHARD = 8


def encode(corpus, out, model, **kw):
    return encode_corpus(str(corpus), out, model=str(model), layer=LAYER, codec=CODEC, shard_size=SHARD,
                         batch_size=8, **kw)


def same_records(a, b) -> None:
    """Both caches hold the same ids with byte-equal decoded records (one engine, the same batches)."""
    ra, rb = CacheReader(a), CacheReader(b)
    assert sorted(ra.ids()) == sorted(rb.ids()) and len(rb.ids()) == len(set(rb.ids()))
    for doc_id in ra.ids():
        assert np.array_equal(ra.get(doc_id), rb.get(doc_id)), doc_id


def memory_url() -> str:
    return f"memory://encode-{uuid.uuid4().hex[:8]}"


def test_into_memory_resume_and_append_equal_a_local_encode(tiny_folder, tmp_path):
    rows = corpus_rows(40, seed=4)
    first = write_jsonl(tmp_path / "first.jsonl", rows[:30])
    both = write_jsonl(tmp_path / "both.jsonl", rows)
    url = memory_url()
    s = encode(first, url, tiny_folder)
    assert (s.encoded, s.cache_documents, s.output) == (30, 30, url)
    again = encode(first, url, tiny_folder)  # resume: everything cached and unchanged
    assert (again.encoded, again.unchanged) == (0, 30)
    more = encode(both, url, tiny_folder)  # append the 10 new ones
    assert (more.encoded, more.unchanged, more.cache_documents, more.appended) == (10, 30, 40, True)
    assert verify_cache(url).ok
    encode(first, tmp_path / "local", tiny_folder)
    encode(both, tmp_path / "local", tiny_folder)
    same_records(tmp_path / "local", url)


def test_the_corpus_at_a_url_too(tiny_folder, tmp_path):
    import fsspec

    rows = corpus_rows(30, seed=5)
    src = memory_url()
    fs = fsspec.filesystem("memory")
    for k in range(3):  # a folder of Parquet files, columns renamed
        local = write_parquet(tmp_path / f"p{k}.parquet", rows[k * 10:(k + 1) * 10], id="key", text="body")
        fs.put_file(str(local), f"{src}/parts/p{k}.parquet")
    write_jsonl(tmp_path / "c.jsonl", rows)
    fs.put_file(str(tmp_path / "c.jsonl"), f"{src}/c.jsonl")
    encode(tmp_path / "c.jsonl", tmp_path / "local", tiny_folder)
    s = encode(f"{src}/parts/", tmp_path / "from-parquet", tiny_folder, id_column="key", text_column="body")
    assert (s.encoded, s.documents_in_corpus) == (30, 30)
    same_records(tmp_path / "local", tmp_path / "from-parquet")
    out = memory_url()
    assert encode(f"{src}/c.jsonl", out, tiny_folder).encoded == 30
    same_records(tmp_path / "local", out)


def test_a_bad_line_of_a_remote_corpus_names_its_url(tiny_folder, tmp_path):
    import fsspec

    from erpack.errors import InputError

    src = memory_url()
    rows = corpus_rows(5)
    rows[3]["text"] = " "
    fsspec.filesystem("memory").pipe_file(f"{src}/c.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    with pytest.raises(InputError, match=r"memory://.*/c.jsonl:4: document 'd00003' has an empty text"):
        encode(f"{src}/c.jsonl", tmp_path / "out", tiny_folder)
    assert not (tmp_path / "out").exists()  # checked whole before any work
    with pytest.raises(InputError, match="does not exist"):
        encode(f"{src}/missing.jsonl", tmp_path / "out", tiny_folder)


def test_the_command_line_writes_a_url_and_checks_storage_options(tiny_folder, tmp_path, capsys):
    corpus = write_jsonl(tmp_path / "c.jsonl", corpus_rows(12))
    url = memory_url()
    args = ["encode", str(corpus), "-o", url, "--model", str(tiny_folder), "--layer", str(LAYER), "--codec", CODEC,
            "--shard-size", str(SHARD)]
    assert main(args + ["--storage-options", "{}", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["output"], summary["cache_documents"], summary["engine"]) == (url, 12, "single")
    for text, says in (("{bad", "is not valid JSON"), ("[1, 2]", "must be a JSON object")):
        assert main(args + ["--storage-options", text]) == 2
        err = capsys.readouterr().err
        assert "--storage-options" in err and says in err


# ---- S3: SIGKILL after a commit, then rerun ------------------------------------------------------------
def s3_manifest_shards(url: str) -> int:
    import fsspec

    fs, root = fsspec.url_to_fs(url, skip_instance_cache=True)
    try:
        return len(json.loads(fs.cat_file(f"{root}/manifest.json"))["shards"])
    except (OSError, ValueError, KeyError):
        return 0


def test_sigkill_after_a_commit_on_s3_then_rerun_equals_a_local_encode(tiny_folder, tmp_path, s3_bucket, s3_server):
    corpus = write_jsonl(tmp_path / "c.jsonl", corpus_rows(120, seed=6))
    url = f"{s3_bucket}/cache"
    cmd = [sys.executable, "-m", "erpack", "encode", str(corpus), "-o", url, "--model", str(tiny_folder),
           "--layer", str(LAYER), "--codec", CODEC, "--shard-size", str(SHARD), "--batch-size", "8"]
    env = dict(os.environ, **s3_server.env, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).parents[2]))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    start = time.monotonic()
    while proc.poll() is None and s3_manifest_shards(url) < 1 and time.monotonic() - start < 120:
        time.sleep(0.02)
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert killed, "the encode finished before it could be killed; make the corpus larger"
    committed = s3_manifest_shards(url)
    assert 1 <= committed < 120 // SHARD
    done = subprocess.run(cmd + ["--json"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["cache_documents"] == 120 and summary["unchanged"] + summary["encoded"] == 120
    assert summary["unchanged"] >= committed * SHARD // 2
    assert verify_cache(url).ok
    listed = {e["name"] for e in load_manifest(url)["shards"]}
    import fsspec

    fs, root = fsspec.url_to_fs(url, skip_instance_cache=True)
    on_s3 = {p.rsplit("/", 1)[-1] for p in fs.ls(root, detail=False, refresh=True)}
    assert {n for n in on_s3 if n.startswith("shard-")} == listed  # no leftover of the killed run
    encode(corpus, tmp_path / "local", tiny_folder)
    same_records(tmp_path / "local", url)
