"""The token-task table (erpack.experiments.token_table, tools/token_table.py) on a tiny real run: MiniLM
k = 3, the truecasing task on a few BBC articles, the full fine-tune and `upper` from the cache; its
result file and the page rendered from it."""

from __future__ import annotations

import json

import pytest

from erpack.errors import InputError
from erpack.experiments.grid import RESULTS, load_results
from erpack.experiments.page import Published, publish
from erpack.experiments.token_table import page_text, read_results, run_token_table, token_grid, write_results

MACHINE = {"cpu": "test CPU", "usable_cores": 2, "torch_threads": 1, "python": "3", "versions": {}}


def test_unknown_token_task_is_refused_before_any_work(tmp_path):
    with pytest.raises(InputError, match="unknown token task.*truecase, punctuation"):
        token_grid("minilm", ["truecasing"], tmp_path / "w")
    assert not (tmp_path / "w").exists()


def test_a_tiny_run_gives_micro_f1_against_the_full_fine_tune(tmp_path):
    import transformers

    transformers.logging.set_verbosity_error()
    grid = token_grid("minilm", ["truecase"], tmp_path / "w", sizes=(6, 2, 3), modes=("upper",), seeds=(0,),
                      epochs=1, token_max_length=32, token_batch_size=4)
    results = run_token_table(grid, "python tools/token_table.py --tiny", MACHINE)
    kinds = sorted(r["kind"] for r in load_results(grid.work / RESULTS))
    assert kinds == ["baseline", "encode", "recycled"]
    (res,) = results
    assert (res["model"], res["layer"], res["task"], res["metric"]) == ("minilm", 3, "truecase", "micro_f1")
    (row,) = res["rows"]
    assert row["mode"] == "upper" and row["seeds"] == [0]
    assert 0.0 <= row["test_micro_f1_mean"] <= 1.0 and 0.0 <= row["baseline_micro_f1_mean"] <= 1.0
    assert row["delta_points_mean"] == pytest.approx(100 * (row["test_micro_f1_mean"] - row["baseline_micro_f1_mean"]))
    assert row["epoch_time_ratio"] == pytest.approx(row["seconds_per_epoch"] / row["baseline_seconds_per_epoch"])
    run = next(r for r in load_results(grid.work / RESULTS) if r["kind"] == "recycled")
    assert set(run["result"]["test"]) >= {"micro_f1", "macro_f1", "accuracy", "per_label"}

    assert run_token_table(grid, "python tools/token_table.py --tiny", MACHINE, run=False) == results  # resumes
    (path,) = write_results(tmp_path / "out", results)
    assert path.name == "minilm-k3-truecase.json" and json.loads(path.read_text()) == json.loads(json.dumps(res))
    text = page_text(read_results(tmp_path / "out"))
    assert "## minilm k = 3, bbc-truecase, 6 training articles, 1 epoch(s)" in text and "Made by `python tools/token_table.py --tiny`" in text
    assert "| minilm, 3 | truecase | int8z | upper | 0 |" in text
    assert text.index("## Summary") < text.index("## minilm k = 3")
    assert "| minilm, 3 | truecase | 6 | 1 | upper | 1 |" in text  # the summary: size, epochs, mode, seeds
    page = tmp_path / "token-tasks.md"
    stale = publish(page, text, check=True, tool="t")
    assert stale.rc == 1 and stale.message == f"{page.parent.name}/{page.name} is out of date: run t"
    assert publish(page, text, check=False, tool="t").rc == 0
    assert publish(page, text, check=True, tool="t") == Published(page)

    # another split in the same WORK: its own cache and run from the cache, the full fine-tune shared
    at2 = token_grid("minilm", ["truecase"], grid.work, sizes=(6, 2, 3), modes=("upper",), seeds=(0,), layer=2,
                     epochs=1, token_max_length=32, token_batch_size=4)
    (res2,) = run_token_table(at2, "python tools/token_table.py --tiny --layer 2", MACHINE)
    rows = load_results(grid.work / RESULTS)
    assert sorted((r["kind"], r["layer"]) for r in rows if r["kind"] != "encode") == [
        ("baseline", 3), ("recycled", 2), ("recycled", 3)]
    assert res2["layer"] == 2 and res2["settings"]["layer"] == 2
    assert res2["rows"][0]["baseline_micro_f1_mean"] == row["baseline_micro_f1_mean"]
    assert res2["rows"][0]["test_micro_f1_mean"] == next(r for r in rows if r.get("layer") == 2 and
                                                         r["kind"] == "recycled")["result"]["test"]["micro_f1"]
    assert run_token_table(grid, "python tools/token_table.py --tiny", MACHINE, run=False) == results  # k = 3 as was

    # epoch times alone, interleaved: the result gains their medians and what measured them, the page a line
    grid.timing, grid.rounds = 4, 1
    (timed,) = run_token_table(grid, "python tools/token_table.py --tiny", MACHINE,
                               timing={"command": "python tools/token_table.py --timing 4", "machine": MACHINE})
    assert {k: v for k, v in timed.items() if k != "timing"} == res  # the accuracy runs are untouched
    (t,) = timed["timing"]["rows"]
    assert (t["what"], t["documents"], t["rounds"], t["layer"]) == ("upper int8z", 4, 1, 3)
    assert t["ratio"] == pytest.approx(t["seconds"] / t["full_seconds"])
    line = next(x for x in page_text([timed]).splitlines() if x.startswith("Epoch times only (no evaluation)"))
    assert "1 interleaved round(s) on the first 4 training articles" in line and "`python tools/token_table.py --timing 4`" in line


def test_the_results_page_is_what_its_result_files_render():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "docs" / "results"
    text = page_text(read_results(root / "tokens"))
    assert publish(root / "token-tasks.md", text, check=True, tool="python tools/token_table.py --render-only").rc == 0
