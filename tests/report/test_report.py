"""erpack report on a tiny cache: valid self-contained HTML with tables and images, Markdown, JSON;
and the projection arithmetic on a hand-computed case."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest

from tests.bench import tiny


# ---- arithmetic, by hand -------------------------------------------------------------------------
def test_fit_recovers_a_linear_size():
    from erpack.report.project import fit_bytes

    a, b = fit_bytes([10, 20, 40], [100 + 3 * 10, 100 + 3 * 20, 100 + 3 * 40])
    assert (a, b) == (pytest.approx(100), pytest.approx(3))
    assert fit_bytes([5, 5], [50, 70]) == (0.0, pytest.approx(12.0))  # one length: 120 bytes / 10 tokens


def test_projection_and_break_even_by_hand():
    from erpack.report.project import GB, break_even, corpus_tokens, monthly_cost, projected_bytes

    # 1e6 documents of 400 tokens mean, 100 bytes per document + 50 per token: 1e6 * 20100 bytes
    assert projected_bytes(100, 50, 1e6, 400) == pytest.approx(2.01e10)
    assert monthly_cost(2 * GB, 0.023) == pytest.approx(0.046)
    assert corpus_tokens(None, 8e8, 400) == (2e6, 8e8)
    assert corpus_tokens(1e6, None, 400) == (1e6, 4e8)
    # T = 1e6 tokens; lower 100 us/token, codec encode 10 us, read 10 us; $3.6/hour = $0.001/s; $1/month, 1 month
    # encode once: 1e6 * 110e-6 = 110 s = $0.11; + $1 storage = $1.11 up front
    # each run saves (100 s - 10 s) * $0.001 = $0.09  ->  n* = 1.11 / 0.09 = 12.33
    be = break_even(1e6, 100e-6, 10e-6, 10e-6, 1.0, 3.6, months=1)
    assert be["encode_seconds"] == pytest.approx(110) and be["saved_per_run"] == pytest.approx(0.09)
    assert be["break_even_runs"] == pytest.approx(1.11 / 0.09) and be["break_even_runs_ceil"] == 13
    assert break_even(1e6, 10e-6, 1e-6, 20e-6, 1.0, 3.6)["break_even_runs"] is None  # reading costs more: never


# ---- the report on a tiny cache ------------------------------------------------------------------
class Tags(HTMLParser):
    """Counts tags and checks that table markup is balanced."""

    def __init__(self):
        super().__init__()
        self.count: dict[str, int] = {}
        self.stack: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.count[tag] = self.count.get(tag, 0) + 1
        if tag in ("table", "tr", "td", "th", "ul", "li", "h2"):
            self.stack.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_endtag(self, tag):
        if tag in ("table", "tr", "td", "th", "ul", "li", "h2"):
            assert self.stack and self.stack.pop() == tag, f"unbalanced </{tag}>"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    pytest.importorskip("matplotlib", reason="the `report` extra (matplotlib) draws the figures")
    from erpack.bench import BenchConfig, run_bench
    from erpack.report import ReportConfig, build_report, write_report

    t = tiny.build(tmp_path_factory.mktemp("report"))
    bench = run_bench(BenchConfig(corpus=str(t["corpus"]), model=str(t["model"]), layer=tiny.LAYER,
                                  caches=[str(t["cache"])], paths=["full-torch", "erpack-torch"], limit=None,
                                  split="all", repeats=1, warmup=0, work=str(t["root"] / "work"),
                                  command="erpack bench (test)")).as_dict()
    bench_file = t["root"] / "bench.json"
    bench_file.write_text("card line\n" + json.dumps(bench) + "\n")
    cfg = ReportConfig(caches=[str(t["cache"])], codecs=["fp32", "int4c:19+zstd:3"], bench=[str(bench_file)],
                       documents=1_000_000, sample=20, command="erpack report (test)")
    rep = build_report(cfg)
    written = write_report(rep, t["root"] / "out" / "report.html")
    return rep, written


def test_html_is_valid_and_self_contained(report):
    rep, written = report
    text = open(written["html"], encoding="utf-8").read()
    p = Tags()
    p.feed(text)
    p.close()
    assert not p.stack, p.stack
    assert p.count["table"] >= 4 and p.count["img"] >= 3
    assert all(src.startswith("data:image/png;base64,") for src in p.images)
    assert "src=\"http" not in text and "<script" not in text  # nothing fetched
    for needle in ("Measured size per codec", "Projected", "break-even runs", "int4c:19+zstd:3", "erpack report (test)",
                   "erpack bench (test)", "n/a (untrained head)"):
        assert needle in text, needle


def test_markdown_and_json_beside_it(report):
    rep, written = report
    md = open(written["markdown"], encoding="utf-8").read()
    assert md.startswith("# erpack storage-cost report") and "| `int8+zstd:3` |" in md and "![storage](" in md
    again = json.loads(open(written["json"], encoding="utf-8").read())
    assert again["kind"] == "erpack-report" and len(again["rows"]) == 3
    assert all(f.endswith(".png") for f in written["figures"])


def test_numbers_are_consistent(report):
    from erpack.report.project import projected_bytes

    rep, _ = report
    cache, fp32, int4 = rep["rows"]
    assert cache["kind"] == "cache" and fp32["kind"] == int4["kind"] == "re-encoded sample"
    assert fp32["bits_per_value"] > cache["bits_per_value"] > int4["bits_per_value"]
    assert fp32["sqnr_db"] is None and int4["sqnr_db"] > 5  # fp32 decodes the reference exactly
    m = rep["profile"]["mean"]  # the profile defaults to the first cache
    assert rep["profile"]["tokens"] == cache["tokens"]
    for r in rep["rows"]:
        assert r["projection"]["bytes"] == pytest.approx(projected_bytes(r["fit"]["a"], r["fit"]["b"], 1e6, m))
        assert r["break_even"] is not None and r["break_even"]["encode_seconds"] > 0
    # the cache's own fit reproduces its measured size (within the manifest and shard headers)
    assert projected_bytes(cache["fit"]["a"], cache["fit"]["b"], cache["documents"], cache["tokens"] / cache["documents"]) \
        == pytest.approx(cache["bytes"], rel=0.05)
    assert cache["bench"] and cache["bench"][0]["path"] == "erpack-torch"


def test_bad_bench_file_fails_first(tmp_path):
    from erpack.errors import InputError
    from erpack.report import ReportConfig, build_report

    bad = tmp_path / "b.json"
    bad.write_text('{"kind": "something-else"}\n')
    with pytest.raises(InputError, match="not erpack-bench"):
        build_report(ReportConfig(caches=[str(tmp_path)], bench=[str(bad)]))
