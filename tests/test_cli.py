"""The command line: help that explains every option, errors without tracebacks."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from erpack.cli import build_parser, main


def _subcommands():
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices


def test_every_subcommand_and_option_has_help():
    for name, sub in _subcommands().items():
        assert sub.description, f"`erpack {name}` has no description"
        for action in sub._actions:
            if action.dest != "help":
                assert action.help, f"`erpack {name}` option {action.option_strings or action.dest} has no help"


def test_help_runs_as_a_program():
    out = subprocess.run([sys.executable, "-m", "erpack", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "demo" in out.stdout
    out = subprocess.run([sys.executable, "-m", "erpack", "demo", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--layer" in out.stdout and "--documents" in out.stdout


@pytest.mark.parametrize("argv, message", [
    (["demo", "--dataset", "imdb", "--documents", "1"], "unknown built-in data set 'imdb'"),
    (["demo", "--model", "no-such-org/no-such-model", "--documents", "1"], "cannot load model 'no-such-org/no-such-model'"),
    (["demo", "--documents", "0"], "--documents must be at least 1"),
    (["demo", "--prune", "1"], "--prune must be in [0, 1)"),
])
def test_user_error_is_a_message_and_exit_2(capsys, argv, message):
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err


@pytest.mark.real
def test_demo_end_to_end_json(capsys, tmp_path):
    """The quick demo runs every step for real: it resumes a half-encoded cache, the caches verify, the task
    models score, the served graph predicts exactly what PyTorch scored, and the report is written."""
    from erpack.demo import DemoConfig, write_subset
    from erpack.encode import encode_corpus
    from erpack.store import verify_cache

    out = tmp_path / "demo"
    cfg = DemoConfig.quick(out=str(out))
    half = tmp_path / "half.jsonl"
    write_subset(cfg.dataset, cfg.documents, half)
    half.write_text("".join(half.read_text().splitlines(keepends=True)[:80]))
    encode_corpus(str(half), str(out / "cache-lossless"), layer=3, codec="lossless", max_length=cfg.max_length)
    rc = main(["demo", "--quick", "--out", str(out), "--json"])
    lines = capsys.readouterr().out.strip().splitlines()
    r = json.loads(lines[-1])
    assert rc == 0 and r["ok"]
    assert [line.split()[1] for line in lines if line.startswith("[")] == list(r["steps"])
    s = r["steps"]
    assert list(s) == ["parity", "encode", "compress", "train", "prune", "export", "predict", "report"]
    assert r["layer"] == 3 and r["num_layers"] == 6
    assert s["parity"]["parity_max_abs_diff"] <= 1e-5 and s["parity"]["tokens"] > s["parity"]["documents"]

    enc = s["encode"]
    assert enc["documents"] == 160 and all(enc["splits"].values()) and enc["labels"] == ["fresh", "rotten"]
    assert enc["verified"] and enc["encode"]["cache_documents"] == 160
    assert enc["encode"]["already_in_cache"] == 80 and enc["encode"]["encoded"] == 80  # resumed
    for cache in (out / "cache-lossless", out / "cache-int8z"):
        assert verify_cache(cache).ok

    rows = {row["preset"]: row for row in s["compress"]["rows"]}
    assert set(rows) == {"int8z", "int4z", "bf16z", "lossless"}
    assert rows["lossless"]["sqnr_db"] is None  # decoded exactly
    assert rows["int4z"]["bits_per_value"] < rows["int8z"]["bits_per_value"] < rows["bf16z"]["bits_per_value"] \
        < rows["lossless"]["bits_per_value"]
    assert rows["int4z"]["sqnr_db"] < rows["int8z"]["sqnr_db"] < rows["bf16z"]["sqnr_db"]
    assert s["compress"]["cache"]["documents"] == 160

    test_docs = enc["splits"]["test"]
    assert 0.0 <= s["train"]["accuracy"] <= 1.0 and s["train"]["documents"]["test"] == test_docs
    assert 0.0 <= s["prune"]["accuracy"] <= 1.0
    assert s["prune"]["heads_kept"] < s["prune"]["heads_total"] and s["prune"]["params_after"] < s["prune"]["params_before"]
    assert s["export"]["parity_max_diff"] <= s["export"]["tolerance"]
    assert [v["variant"] for v in s["export"]["variants"]] == ["int8-dynamic"]
    assert (out / "onnx" / "model.onnx").is_file() and (out / "onnx" / "model.int8-dynamic.onnx").is_file()

    pred = s["predict"]
    assert pred["documents"] == test_docs and pred["provider"] == "CPUExecutionProvider"
    assert pred["accuracy"] == pytest.approx(s["prune"]["accuracy"]) and pred["matches_pytorch"]
    assert len((out / "predictions.jsonl").read_text().splitlines()) == test_docs

    rep = s["report"]
    for f in [rep["files"][k] for k in ("html", "markdown", "json")] + rep["files"]["figures"]:
        assert Path(f).is_file()
    assert {row["codec"] for row in rep["rows"]} >= {"int8c:41+zstd:3"} and len(rep["rows"]) == 4
    assert all(row["bytes_per_token"] > 0 and row["projected_bytes"] > 0 for row in rep["rows"])
    assert json.loads((out / "demo.json").read_text())["steps"]["predict"]["accuracy"] == pred["accuracy"]


def test_cli_reference_in_docs_is_current():
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "tools" / "cli_docs.py"), "--check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_output_into_a_closed_pipe_ends_quietly():
    """`erpack assets | head -1`: the reader leaves before the command writes; no BrokenPipeError."""
    read, write = os.pipe()
    os.close(read)  # a real pipe whose reader is gone, as after `head` exits
    try:
        out = subprocess.run([sys.executable, "-m", "erpack", "assets"], stdout=write, stderr=subprocess.PIPE,
                             text=True, timeout=300)
    finally:
        os.close(write)
    assert "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr, out.stderr
    assert out.returncode == 141 and out.stderr == ""


def test_os_errors_are_one_line_naming_the_file():
    from erpack.cli import os_error_message

    full = os_error_message("encode", OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/c/shard-000003.ers.tmp"))
    assert full.startswith("could not write /c/shard-000003.ers.tmp: the disk is full")
    assert "committed before it are intact" in full and "rerun the same command to resume" in full
    denied = os_error_message("train", OSError(errno.EACCES, os.strerror(errno.EACCES), "/ro/model"))
    assert "/ro/model: permission denied" in denied and "resume" not in denied and "\n" not in denied
