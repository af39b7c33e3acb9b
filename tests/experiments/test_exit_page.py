"""docs/results/early-exit.md is what its committed result files render (tools/exit_page.py), and the render
reads those files alone: a section per encoder, speed files given to their encoder, the target judged from
the numbers, notes files included."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from erpack.experiments.exit_page import page_text, read_groups, verdict

ROOT = Path(__file__).resolve().parents[2]
DEPTH = ROOT / "docs" / "results" / "depth"


def _tool(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, str(ROOT / "tools" / "exit_page.py"), *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=ROOT)


def test_the_committed_page_is_what_the_committed_files_render(tmp_path):
    page = (ROOT / "docs" / "results" / "early-exit.md").read_text()
    assert page_text(DEPTH) == page
    # the same files copied elsewhere (the task model folders and caches they name are absent there too)
    copy = tmp_path / "depth"
    copy.mkdir()
    for p in [*DEPTH.glob("*-runs.json"), *DEPTH.glob("onnx-*.json"), *DEPTH.glob("*-notes.md")]:
        shutil.copy(p, copy / p.name)
    assert page_text(copy) == page
    out = _tool("--check")
    assert out.returncode == 0, out.stderr


def _run(data, rule, seed, share, loss, model="tm"):
    return {"data": data, "rule": rule, "seed": seed, "train_documents": 100, "validation_documents": 200,
            "test_documents": 400, "test_accuracy": 0.9 - loss / 100, "threshold": 0.1, "mean_layers": 6 * share,
            "mean_layers_fraction": share, "test_accuracy_no_exits": 0.9, "loss_points_vs_no_exits": loss,
            "model": f"/nowhere/{model}-{data}-{rule}-s{seed}",
            "validation": {"budget": 0.5, "documents": 200, "layers": 6}}


def _speed(model: str) -> dict:
    paths = {"plain-int8": {"accuracy": 0.9, "mean_layers": 6.0, "documents_per_second": 50.0},
             "exits-int8": {"accuracy": 0.89, "mean_layers": 2.4, "documents_per_second": 100.0},
             "exits-int8-every-layer": {"accuracy": 0.9, "mean_layers": 6.0, "documents_per_second": 48.0}}
    return {"model": model, "documents": 400, "rule": {"rule": "dact", "threshold": 0.1}, "threads": 1,
            "batch_size": 32, "command": "python tools/exit_speed.py ...", "paths": paths}


def test_sections_per_encoder_and_verdicts_from_the_numbers(tmp_path):
    runs = [_run("bbc", "dact", 0, 0.4, 0.4, "mp"), _run("bbc", "patience", 0, 0.8, 0.0, "mp"),
            _run("rt", "dact", 0, 0.5, 1.5, "mp")]
    (tmp_path / "mpnet-k6-runs.json").write_text(json.dumps({"command": "python tools/exit_table.py W O",
                                                             "train_subset": "sha256(seed:id)", "runs": runs}))
    (tmp_path / "minilm-k3-runs.json").write_text(json.dumps({"command": "c", "runs": [_run("bbc", "dact", 0, 0.5, 0)]}))
    (tmp_path / "mpnet-k6-notes.md").write_text("MPNet at reduced sizes: 100 training articles.\n")
    (tmp_path / "onnx-mpnet-bbc-dact-s0.json").write_text(json.dumps(_speed("/elsewhere/tm")))
    (tmp_path / "onnx-bbc-dact-s0.json").write_text(json.dumps(_speed("/nowhere/tm-bbc-dact-s0")))
    (tmp_path / "onnx-odd-s0.json").write_text(json.dumps(_speed("/nowhere/unknown")))
    (tmp_path / "onnx-rt-dact-s0-again.json").write_text(json.dumps(_speed("/nowhere/mp-rt-dact-s0")))
    groups = read_groups(tmp_path)
    assert set(groups["mpnet-k6"]["speed"]) == {"bbc-dact-s0", "rt-dact-s0-again"}  # by name, by task model
    assert set(groups["minilm-k3"]["speed"]) == {"bbc-dact-s0"}  # by the task model it names
    assert set(groups[""]["speed"]) == {"odd-s0"}
    assert verdict(runs[0]) == (True, "") and verdict(runs[1]) == (False, "80% of L - k")
    assert verdict(runs[2]) == (False, "1.50 points lost, budget 1")
    text = page_text(tmp_path)
    assert text.index("## MiniLM k = 3") < text.index("## MPNet k = 6")
    mp = text[text.index("## MPNet k = 6"):]
    assert "MPNet at reduced sizes: 100 training articles." in mp and "mpnet-k6-notes.md" in mp
    assert "| bbc | patience | 0 | 0.1 | 90.00 | 90.00 | +0.00 | 4.80 | 80% | no: 80% of L - k |" in mp
    assert "**dact: on 1 of 2 runs.**" in mp and "Not on rt seed 0 (1.50 points lost, budget 1)" in mp
    assert "its floor is 33% of L - k" in mp
    assert "| bbc-dact-s0 | 400 | 50.0 | 48.0 | 100.0 | 2.40 | 2.08x | 2.00x | 90.00 / 90.00 / 89.00 |" in mp
    assert "| rt-dact-s0 | 400 |" in mp  # a speed file named otherwise, found by its task model
    assert "took the first N" not in mp  # its runs file records the seeded sample
    assert "took the first N" in text[:text.index("## MPNet k = 6")]  # the older file does not
    assert "`onnx-odd-s0.json` (no runs file)" in text
    assert "Exits on a pruned task model" not in text  # its files are absent


def test_check_fails_on_a_stale_page_and_says_what_to_run(tmp_path):
    shutil.copy(DEPTH / "minilm-k3-runs.json", tmp_path / "minilm-k3-runs.json")
    page = tmp_path / "early-exit.md"
    page.write_text("stale\n")
    out = _tool("--folder", tmp_path, "--page", page, "--check")
    assert out.returncode == 1 and "out of date: run python tools/exit_page.py" in out.stderr
    assert page.read_text() == "stale\n"
    assert _tool("--folder", tmp_path, "--page", page).returncode == 0
    assert _tool("--folder", tmp_path, "--page", page, "--check").returncode == 0


def _train_out(model: str, accuracy: float) -> str:
    """The last line of `erpack train --json` for a plain run (no exits), as tools/exit_table.py reads it."""
    return json.dumps({"documents": {"train": 100, "validation": 200, "test": 400}, "output": model,
                       "config": {"train_limit": None},
                       "recycled": {"test": {"accuracy": accuracy}, "best_epoch": 2, "train_seconds_per_epoch": 9.0,
                                    "notes": {}}}) + "\n"


def test_exit_table_merge_keeps_earlier_runs_and_pairs_them_with_new_plain_models(tmp_path):
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"command": "python tools/exit_table.py GONE old.json",
                               "machine": {"cpu": "Old CPU", "cores": 2, "time": "2026-12-01 17:15:25 UTC"},
                               "runs": [_run("bbc", "dact", 0, 0.4, 0.4, "mp"), _run("bbc", "dact", 1, 0.4, 0.0, "mp")]}))
    work = tmp_path / "work"
    work.mkdir()
    (work / "train-bbc-none-0.out").write_text("epoch 1 ...\n" + _train_out("tm-bbc-none-s0", 0.905))
    (work / "train-bbc-none-1.out").write_text("")  # unfinished: skipped
    out = tmp_path / "depth" / "mpnet-k6-runs.json"
    out.parent.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "exit_table.py"), str(work), str(out), "--merge", str(old)],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    doc = json.loads(out.read_text())
    assert [(r["rule"], r["seed"], r.get("measured_by")) for r in doc["runs"]] == [("dact", 0, 0), ("dact", 1, 0),
                                                                                  ("none", 0, None)]
    assert doc["merged"] == [{"command": "python tools/exit_table.py GONE old.json",
                              "machine": {"cpu": "Old CPU", "cores": 2, "time": "2026-12-01 17:15:25 UTC"}}]
    seed0 = doc["runs"][0]
    assert seed0["test_accuracy_plain_model"] == 0.905
    assert abs(seed0["loss_points_vs_plain_model"] - 100 * (0.905 - 0.896)) < 1e-9
    assert "test_accuracy_plain_model" not in doc["runs"][1]  # no plain model for seed 1
    text = page_text(out.parent)
    assert "Of these, bbc dact seed 0, bbc dact seed 1 were measured earlier, by `python tools/exit_table.py GONE old.json`" in text
    assert "Against a plain task model trained without exits (bbc seed 0: 90.50): dact 0.90 points below it" in text


def _exit_out(model: str, e: dict) -> str:
    """The last line of `erpack train --json` for a dact run, with its early_exit record `e`."""
    return json.dumps({"documents": {"train": 100, "validation": 200, "test": 400}, "output": model,
                       "config": {"train_limit": None},
                       "recycled": {"test": {"accuracy": 0.88, "mean_layers": 2.4, "mean_layers_fraction": 0.4},
                                    "best_epoch": 2, "train_seconds_per_epoch": 9.0,
                                    "notes": {"early_exit": dict(e, rule="dact", threshold=0.2)}}}) + "\n"


def test_exit_table_reads_the_mixture_of_old_and_new_records_and_the_page_names_the_reference(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    old = {"validation": {"accuracy": 0.87, "accuracy_all_layers": 0.875, "budget": 0.5, "documents": 200},
           "test_all_layers": {"accuracy": 0.875}}  # before the head was the reference: the mixture's
    new = {"reference": "head", "note": "no dact threshold ...",
           "validation": {"accuracy": 0.87, "reference": "head", "accuracy_all_layers": 0.885, "accuracy_mixture": 0.875,
                          "within_budget": False, "budget": 0.5, "documents": 200},
           "test_all_layers": {"accuracy": 0.89}, "test_mixture": {"accuracy": 0.875}}
    for seed, e in ((0, old), (1, new)):
        (work / f"train-rt-dact-{seed}.out").write_text(_exit_out(f"tm-rt-dact-s{seed}", e))
        (work / f"eval-rt-dact-{seed}.json").write_text(json.dumps({"metrics": {"accuracy": 0.89}}))  # --no-early-exit
    out = tmp_path / "depth" / "mpnet-k6-runs.json"
    out.parent.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "exit_table.py"), str(work), str(out)],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    runs = json.loads(out.read_text())["runs"]
    assert [r["test_accuracy_every_layer_rule"] for r in runs] == [0.875, 0.875]  # the mixture, either way
    assert [r["test_accuracy_no_exits"] for r in runs] == [0.89, 0.89]
    text = page_text(out.parent)
    assert "not the head (trained before the budget's reference was the task head, docs/depth.md): rt dact seed 0." in text
    assert ("- Out of budget, rt dact seed 1: no threshold kept validation accuracy within 0.5 point of the head's "
            "88.50, the mixture 87.50; the most accurate was kept (87.00).") in text
