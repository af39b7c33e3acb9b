"""The table scripts in tools/ run as commands: --help, a bad cell refused before any work, results pages.

They are run as a user runs them (a subprocess), never imported by file path.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.experiments.rows import run

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("train_table.py", "prune_table.py", "codec_table.py", "subset_corpus.py", "tc_table.py", "token_table.py",
         "ode_steps.py", "exit_table.py", "exit_speed.py", "depth_plot.py", "exit_page.py", "exit_lr.py",
         "seeded_corpus.py")


def _tool(name: str, *args, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, str(ROOT / "tools" / name), *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=cwd or ROOT)


@pytest.mark.parametrize("name", TOOLS)
def test_each_tool_answers_help(name):
    out = _tool(name, "--help")
    assert out.returncode == 0, out.stderr
    assert "usage:" in out.stdout


def test_an_unknown_mode_fails_before_anything_is_written(tmp_path):
    out = _tool("train_table.py", "--work", tmp_path / "w", "--modes", "upper,adaptor", "--datasets", "rt")
    assert out.returncode == 2 and "unknown mode 'adaptor'" in out.stderr
    assert not (tmp_path / "w").exists()


def test_train_table_writes_a_results_page_from_its_results(tmp_path):
    rows = [run("baseline", 0, 0.80), run("recycled", 0, 0.79, mode="adapter-r8-ln", codec="int8z")]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    page = tmp_path / "results" / "training.md"
    out = _tool("train_table.py", "--work", tmp_path, "--table-only", "--results", page)
    assert out.returncode == 0, out.stderr
    text = page.read_text()
    assert f"Made by `python tools/train_table.py --work {tmp_path} --table-only --results {page}`" in text
    assert "| a | m, 3 | rt | int8z | adapter-r8-ln |" in text and "-1.00" in text
    assert json.loads(out.stdout.splitlines()[-1])["rows"][0]["delta_points_mean"] == pytest.approx(-1.0)


def test_prune_table_writes_a_results_page_with_its_verdicts(tmp_path):
    rows = [{"model": "minilm", "dataset": "rt", "seed": 0, "level": level, "params": int(1e6 * (1 - level)),
             "test": {"accuracy": acc}, "latency_ms": ms, "threads": 1}
            for level, acc, ms in ((0.0, 0.80, 10.0), (0.4, 0.795, 6.0), (0.6, 0.70, 4.0))]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    page = tmp_path / "pruning.md"
    out = _tool("prune_table.py", "--work", tmp_path, "--table-only", "--results", page)
    assert out.returncode == 0, out.stderr
    assert "minilm/rt: largest level within 1 point: 40%, latency x0.60 (meets <= 0.65)" in out.stdout
    text = page.read_text()
    assert "| minilm | rt | 40% | 0.60M | 0.60 | 6.0 | 0.60 |" in text
    assert "- minilm/rt: largest level within 1 point: 40%" in text


def test_codec_table_renders_an_earlier_run_into_a_results_page(tmp_path):
    row = {"set": "minilm k=3 / rotten_tomatoes", "spec": "int8c:41+zstd:3", "bits_per_value": 7.1,
           "ratio_vs_fp32": 4.5, "sqnr_db": 41.0, "mean_token_cosine": 0.99996, "encode_MBps": 250.0,
           "decode_MBps": 1200.0, "batch_decode_MBps": 1100.0}
    result = {"command": "python tools/codec_table.py --quick", "machine": "Some CPU, 2 CPU cores, Python 3.11",
              "versions": "numpy 2", "date": "2026-12-01", "seconds": 5.0, "load_average": [0.1, 0.2],
              "sets": [{"name": row["set"], "docs": 3, "tokens": 30, "hidden": 384}], "rows": [row]}
    earlier = tmp_path / "run.txt"
    earlier.write_text("a table\n" + json.dumps(result) + "\n")
    page = tmp_path / "codecs.md"
    out = _tool("codec_table.py", "--from-json", earlier, "--no-doc", "--results", page)
    assert out.returncode == 0, out.stderr
    text = page.read_text()
    assert "Made by `python tools/codec_table.py --quick`" in text and "on Some CPU, 2 CPU cores" in text
    assert "| int8 | `int8c:41+zstd:3` | yes | 7.100 | 41.00 | 1100 |  |" in text


def test_seeded_corpus_draws_each_split_by_a_seeded_permutation(tmp_path):
    out = tmp_path / "corpus.jsonl"
    done = _tool("seeded_corpus.py", "bbc", 12, 0, "all", out)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    from erpack.assets import load_dataset

    full = load_dataset("bbc")
    train = [r for r in full if r.split == "train"]
    import numpy as np

    assert [r["id"] for r in rows if r["split"] == "train"] == [
        train[i].id for i in sorted(np.random.default_rng(0).permutation(len(train))[:12])]
    assert not any(r["split"] == "validation" for r in rows)
    assert sum(r["split"] == "test" for r in rows) == sum(r.split == "test" for r in full)
    assert len({r["label"] for r in rows if r["split"] == "train"}) > 1  # BBC is stored by class; a draw is not
    bad = _tool("seeded_corpus.py", "bbc", "some", 0, 0, tmp_path / "bad.jsonl")
    assert bad.returncode == 2 and "give a number of documents or `all`" in bad.stderr
    assert not (tmp_path / "bad.jsonl").exists()


def test_token_table_keeps_each_splits_command_and_its_timing_apart(tmp_path):
    """Two splits in one WORK: each result names the command that measured it, and --timing adds the
    interleaved epoch times (with their own command) to the result of its split only."""
    work, out, page = tmp_path / "w", tmp_path / "out", tmp_path / "page.md"
    tiny = ("--tasks", "truecase", "--modes", "upper", "--seeds", "0", "--sizes", "6,2,3", "--max-length", "32",
            "--epochs", "1", "--batch-size", "4", "--work", work, "--out", out, "--page", page)
    for layer in (("--layer", "2"), ()):
        done = _tool("token_table.py", *layer, *tiny)
        assert done.returncode == 0, done.stderr
    timed = _tool("token_table.py", "--layer", "2", *tiny, "--timing", "4", "--rounds", "1")
    assert timed.returncode == 0, timed.stderr
    k2, k3 = (json.loads((out / f"minilm-k{k}-truecase.json").read_text()) for k in (2, 3))
    assert "--layer 2" in k2["command"] and "--timing" not in k2["command"] and "--layer" not in k3["command"]
    assert "--timing 4" in k2["timing"]["command"] and "timing" not in k3
    assert [r["what"] for r in k2["timing"]["rows"]] == ["upper int8z"]
    assert "Epoch times only (no evaluation), in 1 interleaved round(s) on the first 4 training articles" in page.read_text()
