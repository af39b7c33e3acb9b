"""SIGKILL at random moments while committing shards, resume each time: nothing lost, nothing extra.

The child commits one shard per fixed chunk of ids and skips chunks already in the cache (what
the encoder does to resume), printing a line after each commit. The parent kills it a random few
commits in, up to 5 ms after the last line (inside the next commit or between two), so every kill
lands mid-run whatever the machine's load. After several kills and a final uninterrupted resume,
the folder must be byte-for-byte the folder an uninterrupted run writes: same shards, same manifest.
The same on the S3 server (the child writes to an s3:// URL): uploads are whole or absent.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from erpack.store import CacheReader, verify_cache
from erpack.store.location import open_location
from erpack.store.manifest import load_manifest
from tests.store.conftest import snapshot

ROOT = Path(__file__).resolve().parents[2]
CHUNKS, PER_CHUNK = 40, 6

CHILD = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from tests.store.conftest import make_meta, pipe, records
from erpack.store import CacheWriter
print("ready", flush=True)
with CacheWriter(sys.argv[1], meta=make_meta(), codec=pipe("fp16"), mode="append", on_duplicate="error") as w:
    for c in range({CHUNKS}):
        chunk = records({PER_CHUNK}, seed=c, start=c * {PER_CHUNK})
        if all(w.contains(doc_id) for doc_id, _ in chunk):
            continue
        w.commit_shard(chunk)
        print("committed", flush=True)
print("done", flush=True)
"""


def run_child(path, kill: tuple[int, float] | None) -> bool:
    """Run the writer; with kill = (commits, seconds), SIGKILL it that long after its commits-th commit
    of this run. True when it finished."""
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, cwd=ROOT)  # env: AWS_*
    try:
        assert p.stdout.readline() == b"ready\n"
        if kill is not None:
            commits, seconds = kill
            for _ in range(commits):
                if p.stdout.readline() != b"committed\n":  # finished (or died) before that many commits
                    break
            time.sleep(seconds)
            p.send_signal(signal.SIGKILL)
        out = p.stdout.read()
        p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return p.returncode == 0 and out.endswith(b"done\n")


@pytest.mark.slow
def test_sigkill_and_resume_loses_nothing(tmp_path):
    reference = tmp_path / "reference"
    assert run_child(reference, None)
    crashed = tmp_path / "crashed"
    rng = random.Random(1234)
    progress = []
    for _ in range(6):
        finished = run_child(crashed, (rng.randint(1, 5), rng.uniform(0, 0.005)))
        progress.append(len(CacheReader(crashed)) if (crashed / "manifest.json").exists() else 0)
        if finished:
            break
    assert run_child(crashed, None)  # resume to the end
    assert any(0 < n < CHUNKS * PER_CHUNK for n in progress), f"no kill landed mid-run: {progress}"
    assert verify_cache(crashed).ok
    r, ref = CacheReader(crashed), CacheReader(reference)
    assert len(r) == CHUNKS * PER_CHUNK and r.ids() == ref.ids()
    for (a_id, a_buf, a_shape), (b_id, b_buf, b_shape) in zip(r.iter_encoded(), ref.iter_encoded()):
        assert (a_id, a_shape, bytes(a_buf)) == (b_id, b_shape, bytes(b_buf))
    assert snapshot(crashed) == snapshot(reference)  # every byte of every file


def remote_snapshot(url: str) -> dict:
    loc = open_location(url)
    return {name: loc.read(name) for name in loc.listdir()}


@pytest.mark.slow
def test_sigkill_and_resume_on_s3(s3_bucket):
    reference, crashed = f"{s3_bucket}/reference", f"{s3_bucket}/crashed"
    assert run_child(reference, None)
    rng = random.Random(99)
    progress = []
    for _ in range(4):
        finished = run_child(crashed, (rng.randint(1, 8), rng.uniform(0, 0.02)))
        loc = open_location(crashed)
        progress.append(load_manifest(loc)["counts"]["documents"] if loc.exists("manifest.json") else 0)
        if finished:
            break
    assert run_child(crashed, None)
    assert any(0 < n < CHUNKS * PER_CHUNK for n in progress), f"no kill landed mid-run: {progress}"
    assert verify_cache(crashed).ok
    assert remote_snapshot(crashed) == remote_snapshot(reference)
