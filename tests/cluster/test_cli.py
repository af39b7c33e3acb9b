"""`erpack encode --engine ray` from the command line: bad input is one line and exit status 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.cluster.conftest import corpus_rows, write_jsonl, write_parquet
from tests.services import free_port

pytest.importorskip("ray", reason="the `scale` extra installs Ray")


def erpack(*args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "erpack", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def test_an_unreachable_address_is_said_at_once(tmp_path):
    corpus = write_jsonl(tmp_path / "c.jsonl", corpus_rows(3))
    port = free_port()  # nothing listens there
    done = erpack("encode", corpus, "-o", tmp_path / "out", "--engine", "ray", "--address", f"127.0.0.1:{port}")
    assert done.returncode == 2, done.stderr
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port}" in done.stderr and "--address" in done.stderr
    bad = erpack("encode", corpus, "-o", tmp_path / "out", "--engine", "ray", "--address", "nonsense")
    assert bad.returncode == 2 and "expected host:port" in bad.stderr


def test_options_the_engine_does_not_take_are_refused(tmp_path):
    corpus = write_jsonl(tmp_path / "c.jsonl", corpus_rows(3))
    done = erpack("encode", corpus, "-o", tmp_path / "out", "--engine", "ray", "--on-duplicate", "replace")
    assert done.returncode == 2 and "--on-duplicate error" in done.stderr
    done = erpack("encode", corpus, "-o", tmp_path / "out", "--engine", "ray", "--workers", "0")
    assert done.returncode == 2 and "--workers must be >= 1" in done.stderr
    done = erpack("encode", corpus, "-o", tmp_path / "out", "--engine", "ray", "--storage-options", "[1]")
    assert done.returncode == 2 and "--storage-options must be a JSON object" in done.stderr


def test_a_missing_column_exits_2_naming_file_and_column(tmp_path, tiny_folder):
    corpus = write_parquet(tmp_path / "c.parquet", corpus_rows(3), text="body")
    done = erpack("encode", corpus, "-o", tmp_path / "out", "--engine", "ray", "--model", tiny_folder)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "c.parquet: no column 'text' for texts; pass --text-column NAME" in done.stderr
    assert "Traceback" not in done.stderr
