"""Bounded memory on any input: records with valid crc32s that claim a huge T or a wrong H are
refused, naming shard, record and id, before anything of their claimed size is allocated.

The records are built with the store's own ShardBuilder, listed in a manifest with the right sha256
and checksum (tests/store/crafted.py). A child process capped at 2 GiB of address space proves that
no read allocates what the records claim (7 GiB and more)."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zstandard

from erpack.errors import CorruptRecordError
from erpack.store import CacheReader, verify_cache
from tests.store.conftest import make_meta, pipe
from tests.store.crafted import write_cache

ROOT = Path(__file__).resolve().parents[2]
H = 384
ONE = np.ones((1, H), np.float32)


def payload(spec: str, x=ONE) -> bytes:
    return pipe(spec).encode(x)


def crafted(folder: Path, spec: str, rows: list, max_length=16) -> Path:
    """A cache of one honest record ("ok") then `rows` ((doc_id, payload, T, H)), meta hidden H."""
    meta = make_meta(hidden=H, max_length=max_length)
    if max_length is None:
        del meta["max_length"]
    return write_cache(folder, meta, pipe(spec).get_config(), [("ok", payload(spec), 1, H), *rows])


CASES = {  # name: (spec, rows, max_length, what the error says)
    "t-2^31": ("fp32+zstd:1", [("bomb", payload("fp32+zstd:1"), 2**31 - 1, H)], 16, "more than the manifest's max_length 16"),
    "t-5M": ("fp32", [("bomb", payload("fp32"), 5_000_000, H)], 16, "more than the manifest's max_length 16"),
    "h-2^31": ("fp32", [("bomb", payload("fp32"), 1, 2**31 - 1)], 16, f"hidden size 2147483647, but the manifest's model.hidden_size is {H}"),
    "h-other": ("int8c", [("bomb", payload("int8c", np.ones((1, 8), np.float32)), 1, 8)], 16, "hidden size 8"),
    # no max_length in the meta: T is bounded by what the payload can hold
    "t-5M-nomax": ("fp32", [("bomb", payload("fp32"), 5_000_000, H)], None, "does not decode"),
    "zstd-nosize": ("fp32+zstd:1", [("bomb", zstandard.ZstdCompressor(write_content_size=False).compress(
        bytes(4 * H * 5_000_000 // 1000)), 5_000_000, H)], None, "does not decode"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_crafted_record_is_refused_by_name(tmp_path, case):
    spec, rows, max_length, reason = CASES[case]
    cache = crafted(tmp_path / case, spec, rows, max_length)
    r = CacheReader(cache)
    assert r.get("ok").shape == (1, H)
    for attempt in (lambda: r.get("bomb"), lambda: r.get_batch(["ok", "bomb"]), lambda: list(r)):
        with pytest.raises(CorruptRecordError) as e:
            attempt()
        msg = str(e.value)
        assert "shard-000000.ers, record 1 (doc id 'bomb')" in msg and reason in msg and "erpack verify" in msg
    report = verify_cache(cache)
    assert [(f.shard, f.record_index, f.doc_id) for f in report.failures] == [("shard-000000.ers", 1, "bomb")]
    assert reason in report.failures[0].error


CHILD = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
from erpack.errors import ErpackError
from erpack.store import CacheReader, verify_cache
def verify(folder):
    if not verify_cache(folder).ok:
        raise ErpackError("verify found damage")

out = []
for folder in sys.argv[1:]:
    r = CacheReader(folder)
    for name, fn in (("get", lambda: r.get("bomb")), ("get_batch", lambda: r.get_batch(["ok", "bomb"])),
                     ("iterate", lambda: list(r)), ("verify", lambda: verify(folder))):
        try:
            fn()
            out.append([folder, name, "accepted"])
        except ErpackError as exc:
            out.append([folder, name, "refused"])
        except MemoryError as exc:
            out.append([folder, name, "MemoryError"])
print(json.dumps(out))
"""


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_AS"), reason="needs RLIMIT_AS (Linux)")
def test_no_read_allocates_what_a_record_claims(tmp_path):
    folders = [str(crafted(tmp_path / case, *CASES[case][:3])) for case in sorted(CASES)]
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", CHILD, *folders], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout.splitlines()[-1])
    assert len(results) == 4 * len(folders)
    assert [r for r in results if r[2] != "refused"] == []


def test_verify_reports_a_crafted_record(tmp_path, capsys):
    from erpack.cli import main

    cache = crafted(tmp_path / "c", *CASES["t-2^31"][:3])
    assert main(["verify", str(cache)]) == 1
    out = capsys.readouterr().out
    assert "FAILED     shard-000000.ers: record 1 (doc id 'bomb')" in out and "max_length 16" in out
    assert "re-encode 1 live document(s) ('bomb')" in out


@pytest.mark.parametrize("spec", ["fp32+zstd:1", "fp32+zstd:19", "fp32+shuffle:4+zstd:level=3,streams=4", "int8c+zstd:1"])
def test_highly_compressible_records_still_decode(spec):
    """The zstd expansion cap (32768 bytes out per 4 bytes of a frame, zstd's RLE block) never refuses
    a real frame: all-zero and constant records of the largest max_length compress the most."""
    codec = pipe(spec)
    for x in (np.zeros((512, 768), np.float32), np.full((512, 768), 0.5, np.float32)):
        blob = codec.encode(x)
        y = codec.decode(blob, shape=x.shape)
        np.testing.assert_allclose(y, x, atol=0 if codec.lossless else 0.01)
        np.testing.assert_array_equal(codec.decode_batch([blob, blob], [x.shape, x.shape])[1], y)
