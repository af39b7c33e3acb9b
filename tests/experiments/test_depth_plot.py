"""tools/depth_plot.py on small result files written here: the figure, the table of points, a missing method
named on the page, pruning rows copied from a results.jsonl, and --check. Run as a user runs it (a subprocess)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _tool(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, str(ROOT / "tools" / "depth_plot.py"), *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=ROOT)


def _exit_file(folder: Path) -> None:
    """tools/exit_speed.py's format: the plain int8 graph and the exit graphs at the threshold chosen."""
    paths = {"plain-int8": {"accuracy": 0.90, "mean_layers": 3.0, "documents_per_second": 50.0},
             "exits-int8": {"accuracy": 0.89, "mean_layers": 1.5, "documents_per_second": 90.0},
             "exits-int8-every-layer": {"accuracy": 0.90, "mean_layers": 3.0, "documents_per_second": 48.0},
             "exits-fp32": {"accuracy": 0.89, "mean_layers": 1.5, "documents_per_second": 40.0}}
    doc = {"model": str(folder / "no-such-task-model"), "rule": {"rule": "dact", "threshold": 0.03},
           "command": "python tools/exit_speed.py TM CACHE LABELS WORK OUT", "paths": paths}
    (folder / "onnx-tiny-dact-s0.json").write_text(json.dumps(doc))


def _ode_file(folder: Path) -> None:
    rows = [{"steps": s, "beta": 3 / s, "mean_layers": float(s), "accuracy": a, "seconds": None}
            for s, a in ((1, 0.70), (2, 0.86), (3, 0.88))]
    for r, speed, size in ((rows[0], 4.0, 2_000_000), (rows[2], 1.0, 8_000_000)):  # S = 2 not timed
        r.update(speed_vs_full=speed, graph_bytes=size, measured_how="ONNX Runtime int8 (dynamic), 1 thread")
    doc = {"name": "m-k3-tiny", "model": "m", "layer": 3, "steps_trained": 3, "rows": rows,
           "command": "python tools/ode_steps.py --name m-k3-tiny", "machine": {"cpu": "test CPU", "usable_cores": 2}}
    (folder / "ode-m-k3-tiny.json").write_text(json.dumps(doc))


def _results_jsonl(path: Path) -> None:
    rows = [{"model": "m", "dataset": "tiny", "seed": 0, "level": lv, "layer": 3, "params": p,
             "test": {"accuracy": a}, "latency_ms": ms, "latency_batch": [32, 128], "threads": 1, "plan": {"x": 1}}
            for lv, p, a, ms in ((0.0, 1000, 0.88, 100.0), (0.4, 600, 0.87, 70.0), (0.6, 400, 0.85, 50.0))]
    rows.append({**rows[0], "dataset": "other"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _cache_manifest(folder: Path) -> Path:
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"meta": {"layer": 3, "model": {"name": "m", "num_layers": 6}}}))
    return folder


def _plot(folder: Path, page: Path, *extra):
    return _tool("--model", "m", "--layer", "3", "--data", "tiny", "--folder", folder, "--results", page, *extra)


def test_the_page_names_a_missing_method_and_tables_every_point(tmp_path):
    pytest.importorskip("matplotlib", reason="the `report` extra (matplotlib) draws the figure")
    folder, page = tmp_path / "depth", tmp_path / "adaptive-depth.md"
    folder.mkdir()
    _exit_file(folder)
    _ode_file(folder)
    out = _plot(folder, page)
    assert out.returncode == 0, out.stderr
    png = folder / "adaptive-depth-m-k3-tiny.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = page.read_text()
    assert "![accuracy against upper-stack speed](depth/adaptive-depth-m-k3-tiny.png)" in text
    assert "- **pruning**: no result file for pruning on m k = 3, tiny" in text
    # the exit point: half the layers (bound 2.00), measured 90/50 = 1.80 of the plain int8 graph, -1 point
    assert "| early exit | dact threshold 0.03 | 0.8900 | -1.00 | 1.50 of 3 | 2.00 | 1.80 | 90.0 |" in text
    assert "| early exit | no exits (plain int8 graph) | 0.9000 | +0.00 | 3.00 of 3 | 1.00 | 1.00 | 50.0 |" in text
    assert "every-layer" not in text and "fp32 graph" not in text
    # an ODE step count without a speed has its bound only, and "—" where nothing was measured
    assert "| ODE steps | S = 2 (beta 1.5) | 0.8600 | -2.00 | 2.00 of 3 | 1.50 | — | — | not measured" in text
    assert "| ODE steps | S = 1 (beta 3) | 0.7000 | -18.00 | 1.00 of 3 | 3.00 | 4.00 | — | ONNX Runtime int8" in text
    # faster than the bound: said, with the graphs' sizes
    assert ("ode-m-k3-tiny.json, S = 1 (beta 3): measured 4.00x, above its compute bound 3.00x: the graphs compared "
            "differ in more than the layers they run (graph sizes in that file: S=1 2.00 MB, S=3 8.00 MB)") in text
    assert "L/(L-k) = 6/3 = 2.00" in text
    assert "records no encoder" in text  # the exit file's task model folder is not readable here
    assert "`python tools/ode_steps.py --name m-k3-tiny`; test CPU, 2 usable cores" in text
    assert "machine not recorded in the file" in text
    assert _plot(folder, page, "--check").returncode == 0


def test_pruning_rows_are_copied_then_drawn_and_nothing_at_all_is_said_plainly(tmp_path):
    pytest.importorskip("matplotlib", reason="the `report` extra (matplotlib) draws the figure")
    folder, page = tmp_path / "depth", tmp_path / "adaptive-depth.md"
    folder.mkdir()
    out = _plot(folder, page)
    assert out.returncode == 0, out.stderr
    text = page.read_text()
    for name in ("early exit", "ODE steps", "pruning"):
        assert f"- **{name}**: no result file" in text
    assert "No figure: no points to draw." in text and not list(folder.glob("*.png"))

    _results_jsonl(tmp_path / "results.jsonl")
    out = _tool("--import-pruning", tmp_path / "results.jsonl", "--model", "m", "--data", "tiny", "--seed", "0",
                "--cache", _cache_manifest(tmp_path / "cache"), "--pruning-command", "python tools/prune_table.py X",
                "--folder", folder)
    assert out.returncode == 0, out.stderr
    doc = json.loads((folder / "prune-m-k3-tiny.json").read_text())
    assert [r["level"] for r in doc["rows"]] == [0.0, 0.4, 0.6] and doc["num_layers"] == 6
    assert "plan" not in doc["rows"][0] and doc["command"] == "python tools/prune_table.py X"
    assert _plot(folder, page, "--check").returncode == 1  # the page no longer matches the files
    assert _plot(folder, page).returncode == 0
    text = page.read_text()
    # 60%: parameters 1000/400 = 2.50 bound, latency 100/50 = 2.00 measured, 32 documents in 50 ms
    assert "| pruning | 60% pruned | 0.8500 | -3.00 | — | 2.50 | 2.00 | 640.0 | PyTorch fp32 latency" in text
    assert "- **pruning**" not in text and (folder / "adaptive-depth-m-k3-tiny.png").exists()


def test_pruning_rows_of_another_data_set_are_refused(tmp_path):
    _results_jsonl(tmp_path / "results.jsonl")
    out = _tool("--import-pruning", tmp_path / "results.jsonl", "--model", "m", "--data", "rt", "--cache",
                _cache_manifest(tmp_path / "cache"), "--pruning-command", "x", "--folder", tmp_path)
    assert out.returncode == 2 and "no rows for model m, data set rt, seed 0" in out.stderr


def test_help_teaches_the_three_uses():
    out = _tool("--help")
    assert out.returncode == 0 and "--import-pruning" in out.stdout and "--sweep-exits" in out.stdout


def test_the_committed_page_matches_the_committed_result_files():
    """docs/results/adaptive-depth.md is rendered from docs/results/depth/*.json: a new or changed result file
    means `python tools/depth_plot.py` (MiniLM k = 3, BBC by default) must be run again."""
    out = _tool("--check")
    assert out.returncode == 0, out.stderr
