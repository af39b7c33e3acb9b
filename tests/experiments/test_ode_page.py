"""docs/results/ode-steps.md is rendered from the result files in docs/results/depth/ (tools/ode_steps.py --render)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_committed_page_matches_the_result_files(monkeypatch):
    from erpack.experiments.ode_steps import PAGE, page_body

    monkeypatch.chdir(ROOT)  # RESULTS and PAGE are relative to the repository, as the tool runs
    body, page = "\n".join(page_body()), PAGE.read_text()
    assert body in page, ("docs/results/ode-steps.md is out of date: python tools/ode_steps.py --render "
                          "--results docs/results/ode-steps.md")
