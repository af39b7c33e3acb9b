"""`erpack encode --engine ray` on a local Ray instance: the same cache as one process (JSONL,
Parquet; a folder and S3), a worker killed mid-run, resume after the driver is SIGKILLed."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from erpack.encode import encode_corpus
from erpack.store import CacheReader, verify_cache
from erpack.store.manifest import load_manifest
from tests.cluster.conftest import CODEC, LAYER, compare_caches, corpus_rows, write_jsonl, write_parquet

pytest.importorskip("ray", reason="the `scale` extra installs Ray")

from erpack.cluster.encode import RayOptions, encode_on_ray  # noqa: E402
from erpack.corpus import Columns  # noqa: E402

SHARD = 16


def single(corpus, out, model) -> Path:
    encode_corpus(str(corpus), out, model=str(model), layer=LAYER, codec=CODEC, shard_size=SHARD, batch_size=8)
    return out


def on_ray(corpus, out, model, workers=2, **kw):
    return encode_on_ray(str(corpus), str(out), model=str(model), layer=LAYER, codec=CODEC, shard_size=SHARD,
                         batch_size=8, ray_options=RayOptions(workers=workers, threads_per_worker=1), **kw)


def download(url: str, dest: Path) -> Path:
    import fsspec

    fs, root = fsspec.url_to_fs(url)
    for path in fs.find(root):  # the shards, manifest.json and the id index (index/)
        local = dest / path[len(root):].lstrip("/")
        local.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(path, str(local))
    return dest


def test_jsonl_and_parquet_on_two_workers_equal_one_process(ray_local, tiny_folder, tmp_path):
    rows = corpus_rows(150)
    jsonl = write_jsonl(tmp_path / "c.jsonl", rows)
    (tmp_path / "parts").mkdir()
    for k in range(3):  # a folder of Parquet files, columns renamed
        write_parquet(tmp_path / "parts" / f"p{k}.parquet", rows[k * 50:(k + 1) * 50], id="key", text="body")
    want = single(jsonl, tmp_path / "single", tiny_folder)
    for name, corpus, cols in (("jsonl", jsonl, None), ("parquet", tmp_path / "parts", Columns.of("key", "body"))):
        s = on_ray(corpus, tmp_path / name, tiny_folder, columns=cols)
        assert (s.encoded, s.documents_in_corpus, s.cache_documents) == (150, 150, 150)
        assert verify_cache(tmp_path / name).ok
        report = compare_caches(want, tmp_path / name)
        print(name, json.dumps(report))
        assert report["max_diff_in_steps"] <= 1.0
        with CacheReader(want) as a, CacheReader(tmp_path / name) as b:  # the workers stored the input ids
            assert all(b.get_tokens(d) is not None and b.get_tokens(d).tolist() == a.get_tokens(d).tolist()
                       for d in a.ids())
        shards = load_manifest(tmp_path / name)["shards"]
        assert all(s["name"].startswith("shard-") and s["documents"] <= SHARD for s in shards)
    again = on_ray(jsonl, tmp_path / "jsonl", tiny_folder)  # everything cached: nothing to do
    assert (again.encoded, again.already_in_cache, again.cache_documents) == (0, 150, 150)


def test_into_s3_equals_one_process(ray_local, tiny_folder, tmp_path, s3_bucket):
    import fsspec

    rows = corpus_rows(80, seed=1)
    jsonl = write_jsonl(tmp_path / "c.jsonl", rows)
    fs, _ = fsspec.url_to_fs(s3_bucket)
    for k in range(2):  # the corpus read from S3 too: a folder of two Parquet files
        local = write_parquet(tmp_path / f"p{k}.parquet", rows[k * 40:(k + 1) * 40])
        fs.put_file(str(local), f"{s3_bucket}/corpus/p{k}.parquet")
    url = f"{s3_bucket}/cache"
    s = on_ray(f"{s3_bucket}/corpus/", url, tiny_folder)
    assert (s.encoded, s.cache_documents) == (80, 80)
    assert verify_cache(url).ok
    report = compare_caches(single(jsonl, tmp_path / "single", tiny_folder), download(url, tmp_path / "copy"))
    print("s3", json.dumps(report))
    assert report["max_diff_in_steps"] <= 1.0


def test_a_jsonl_corpus_in_s3_is_read_on_ray(ray_local, tiny_folder, tmp_path, s3_bucket):
    """Ray's JSON-lines reader takes no file system: a remote JSONL corpus goes through Arrow's reader."""
    import fsspec

    rows = corpus_rows(40, seed=2)
    fs, _ = fsspec.url_to_fs(s3_bucket)
    fs.put_file(str(write_jsonl(tmp_path / "c.jsonl", rows)), f"{s3_bucket}/corpus/c.jsonl")
    s = on_ray(f"{s3_bucket}/corpus/c.jsonl", tmp_path / "cache", tiny_folder)
    assert (s.encoded, s.cache_documents) == (40, 40)
    assert sorted(CacheReader(tmp_path / "cache").ids()) == sorted(r["id"] for r in rows)


def test_a_rerun_skips_unchanged_documents_and_stops_at_a_changed_one(ray_local, tiny_folder, tmp_path):
    """Cached documents are compared by token hash on Ray as on one process: nothing stale passes."""
    from erpack.errors import InputError

    rows = corpus_rows(30, seed=3)
    corpus = write_jsonl(tmp_path / "c.jsonl", rows)
    on_ray(corpus, tmp_path / "cache", tiny_folder)
    again = on_ray(corpus, tmp_path / "cache", tiny_folder)
    assert (again.encoded, again.unchanged, again.already_in_cache) == (0, 30, 30)
    k = min(range(len(rows)), key=lambda i: len(rows[i]["text"]))  # doubled, it still fits max_length
    rows[k] = {**rows[k], "text": rows[k]["text"] + " " + rows[k]["text"]}
    write_jsonl(tmp_path / "c.jsonl", rows)
    with pytest.raises(InputError, match=rf"document {rows[k]['id']!r} changed since it was encoded"):
        on_ray(corpus, tmp_path / "cache", tiny_folder)
    assert verify_cache(tmp_path / "cache").ok and len(CacheReader(tmp_path / "cache")) == 30


def test_a_missing_column_is_an_error_naming_it(ray_local, tiny_folder, tmp_path):
    from erpack.errors import InputError

    f = write_parquet(tmp_path / "c.parquet", corpus_rows(5), id="key")
    with pytest.raises(InputError, match=r"c.parquet: no column 'id' for ids \(--id-column\)"):
        on_ray(f, tmp_path / "out", tiny_folder)
    with pytest.raises(InputError, match=r"no column 'txt' for texts \(--text-column\)"):
        on_ray(f, tmp_path / "out", tiny_folder, columns=Columns.of("key", "txt"))
    rows = corpus_rows(20)
    rows[13]["text"] = "   "
    bad = write_jsonl(tmp_path / "bad.jsonl", rows)  # found by a worker: its error reaches the caller
    with pytest.raises(InputError, match=r"bad.jsonl: document 'd00013' has an empty text"):
        on_ray(bad, tmp_path / "out2", tiny_folder, workers=1)


def test_a_worker_killed_mid_run_is_restarted_and_the_result_is_the_same(ray_local, tiny_folder, tmp_path,
                                                                        monkeypatch):
    jsonl = write_jsonl(tmp_path / "c.jsonl", corpus_rows(600, seed=2))
    pids = tmp_path / "pids"
    monkeypatch.setenv("ERPACK_WORKER_PIDS", str(pids))  # each actor writes its pid there
    killed = []

    def kill_first_worker():
        while not (pids.exists() and pids.read_text().strip()):
            time.sleep(0.05)
        time.sleep(0.3)  # mid-run: some batches done, most to do
        pid = int(pids.read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    killer = threading.Thread(target=kill_first_worker, daemon=True)
    killer.start()
    s = on_ray(jsonl, tmp_path / "killed", tiny_folder, workers=1)
    killer.join(timeout=5)
    assert killed, "no worker was killed"
    assert len(set(pids.read_text().split())) >= 2, "the killed worker was not restarted"
    assert (s.encoded, s.cache_documents) == (600, 600)
    assert verify_cache(tmp_path / "killed").ok
    manifest = load_manifest(tmp_path / "killed")
    listed = {e["name"] for e in manifest["shards"]}
    assert {p.name for p in (tmp_path / "killed").glob("shard-*")} == listed  # the dead worker's shards removed
    report = compare_caches(single(jsonl, tmp_path / "single", tiny_folder), tmp_path / "killed")
    print("worker killed", json.dumps(report))
    assert report["max_diff_in_steps"] <= 1.0


# ---- the driver killed with SIGKILL, then rerun ---------------------------------------------------------
def encode_cmd(corpus, out, model) -> list[str]:
    return [sys.executable, "-m", "erpack", "encode", str(corpus), "-o", str(out), "--model", str(model),
            "--layer", str(LAYER), "--codec", CODEC, "--shard-size", "8", "--batch-size", "8", "--engine", "ray",
            "--workers", "1", "--threads-per-worker", "1"]


def committed_shards(out: Path) -> int:
    try:
        return len(json.loads((out / "manifest.json").read_text())["shards"])
    except (OSError, ValueError, KeyError):
        return 0


def kill_after_commits(cmd, out: Path, rng: random.Random, env: dict, timeout: float = 120) -> bool:
    """Start cmd; once a shard more than before is committed, SIGKILL it at a random moment. True if killed."""
    before = committed_shards(out)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    start = time.monotonic()
    while proc.poll() is None and committed_shards(out) <= before and time.monotonic() - start < timeout:
        time.sleep(0.05)
    time.sleep(rng.uniform(0.0, 1.0))
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


@pytest.mark.slow
def test_the_driver_killed_then_rerun_loses_and_duplicates_nothing(tiny_folder, tmp_path):
    jsonl = write_jsonl(tmp_path / "c.jsonl", corpus_rows(600, seed=3))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).parents[2]))
    whole = tmp_path / "whole"
    subprocess.run(encode_cmd(jsonl, whole, tiny_folder), env=env, check=True, capture_output=True)
    out, rng = tmp_path / "killed", random.Random(11)
    kills = sum(kill_after_commits(encode_cmd(jsonl, out, tiny_folder), out, rng, env) for _ in range(3))
    assert kills >= 2
    done = subprocess.run(encode_cmd(jsonl, out, tiny_folder) + ["--json"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["cache_documents"] == 600 and summary["already_in_cache"] + summary["encoded"] == 600
    verify = subprocess.run([sys.executable, "-m", "erpack", "verify", str(out)], env=env, capture_output=True)
    assert verify.returncode == 0, verify.stdout
    report = compare_caches(whole, out)
    print("driver killed", kills, "times:", json.dumps(report))
    assert report["max_diff_in_steps"] <= 1.0


@pytest.mark.real
@pytest.mark.slow
def test_minilm_on_two_workers_equals_one_process(ray_local, tmp_path):
    from erpack.assets import load_dataset

    rows = [{"id": r.id, "text": r.text} for r in load_dataset("rotten_tomatoes", limit=96)]
    jsonl = write_jsonl(tmp_path / "c.jsonl", rows)
    encode_corpus(str(jsonl), tmp_path / "single", model="minilm", layer=3, codec=CODEC, shard_size=SHARD)
    s = encode_on_ray(str(jsonl), str(tmp_path / "ray"), model="minilm", layer=3, codec=CODEC, shard_size=SHARD,
                      ray_options=RayOptions(workers=2, threads_per_worker=1))
    assert (s.encoded, s.cache_documents) == (96, 96) and verify_cache(tmp_path / "ray").ok
    report = compare_caches(tmp_path / "single", tmp_path / "ray")
    print("minilm k=3", json.dumps(report))
    assert report["max_diff_in_steps"] <= 1.0
