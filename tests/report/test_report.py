"""erpack report on a tiny cache: valid self-contained HTML with tables and images, Markdown, JSON;
and the projection arithmetic on a hand-computed case."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest

from tests.bench import tiny
from tests.remote import reads_urls, upload_cache


# ---- arithmetic, by hand -------------------------------------------------------------------------
def test_fit_recovers_a_linear_size():
    from erpack.report.project import fit_bytes

    a, b = fit_bytes([10, 20, 40], [100 + 3 * 10, 100 + 3 * 20, 100 + 3 * 40])
    assert (a, b) == (pytest.approx(100), pytest.approx(3))
    assert fit_bytes([5, 5], [50, 70]) == (0.0, pytest.approx(12.0))  # one length: 120 bytes / 10 tokens


def test_projection_and_break_even_by_hand():
    from erpack.report.project import break_even, corpus_tokens, monthly_cost, projected_bytes

    # 1e6 documents of 400 tokens mean, 100 bytes per document + 50 per token: 1e6 * 20100 bytes
    assert projected_bytes(100, 50, 1e6, 400) == pytest.approx(2.01e10)
    assert monthly_cost(2 * 2**30, 0.023) == pytest.approx(0.046)  # $ per GiB-month
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
    assert again == json.loads(json.dumps(rep.as_dict(), default=float))  # report.json is the Report's as_dict()
    assert all(f.endswith(".png") for f in written["figures"])


def test_numbers_are_consistent(report):
    from erpack.report.project import projected_bytes

    rep, _ = report
    cache, fp32, int4 = rep.rows
    assert cache["kind"] == "cache" and fp32["kind"] == int4["kind"] == "re-encoded sample"
    assert fp32["bits_per_value"] > cache["bits_per_value"] > int4["bits_per_value"]
    assert fp32["sqnr_db"] is None and int4["sqnr_db"] > 5  # fp32 decodes the reference exactly
    m = rep.profile["mean"]  # the profile defaults to the first cache
    assert rep.profile["tokens"] == cache["tokens"]
    for r in rep.rows:
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


# ---- the reference of re-encoded samples, and the units ----------------------------------------
@pytest.fixture(scope="module")
def lossy_first(tmp_path_factory):
    """A tiny int8 cache and an fp32 cache of the same corpus, the lossy one listed first."""
    from erpack.encode import encode_corpus

    t = tiny.build(tmp_path_factory.mktemp("lossy-first"))
    fp32 = t["root"] / "cache-fp32"
    encode_corpus(str(t["corpus"]), fp32, model=str(t["model"]), layer=tiny.LAYER, codec="fp32", batch_size=8)
    return t["cache"], fp32


def _report(caches, codecs, tmp_path):
    from erpack.report import ReportConfig, build_report, write_report

    rep = build_report(ReportConfig(caches=[str(c) for c in caches], codecs=codecs, documents=1e6, sample=10,
                                    time_lower=False))
    return rep, write_report(rep, tmp_path / "report.html")


def test_codecs_are_projected_from_the_lossless_cache(lossy_first, tmp_path):
    pytest.importorskip("matplotlib")
    int8, fp32 = lossy_first
    rep, written = _report([int8, fp32], ["bf16"], tmp_path)
    bf16 = rep.rows[-1]
    assert rep.inputs["codecs_reencoded_from"] == str(fp32) and bf16["reference"] == str(fp32)
    assert bf16["reference_lossless"] and str(fp32) in bf16["source"]
    assert not any("lossy cache" in n for n in rep.notes)
    # bf16 of the real values: 16 bits a value plus framing, not the fewer bits of re-quantized int8 values
    assert bf16["payload_bits_per_value"] == pytest.approx(16, abs=0.5)


def test_a_lossy_reference_is_said(lossy_first, tmp_path):
    pytest.importorskip("matplotlib")
    int8, _ = lossy_first
    rep, written = _report([int8], ["bf16"], tmp_path)
    assert rep.rows[-1]["reference_lossless"] is False
    note = [n for n in rep.notes if "lossy cache" in n]
    assert note and str(int8) in note[0] and "lossless cache" in note[0]
    assert "lossy cache" in open(written["markdown"], encoding="utf-8").read()


def test_one_unit_convention(lossy_first, tmp_path):
    """Sizes, prices, chart axis and JSON keys all in binary units (GiB = 2^30), labelled so."""
    import re

    from erpack.report.units import human_size

    pytest.importorskip("matplotlib")
    assert human_size(1.5 * 2**30) == "1.50 GiB" and human_size(3 * 2**40) == "3.00 TiB" and human_size(10) == "10 B"
    int8, fp32 = lossy_first
    rep, written = _report([int8, fp32], ["int4c:19+zstd:3"], tmp_path)
    md = open(written["markdown"], encoding="utf-8").read()
    page = open(written["html"], encoding="utf-8").read()
    for text in (md, page):
        assert "per GiB-month" in text and "MiB/s" in text
        assert not re.search(r"\d (KB|MB|GB|TB|PB)\b|GB-month|MB/s|10\^12", text), re.findall(r".{30}(?:GB|TB|MB).{10}", text)
    config = rep.as_dict()["config"]
    assert "price_per_gib_month" in config and "price_per_gb_month" not in config
    assert "GiB" in rep.formulas["monthly_cost"]


def test_storage_chart_axis_is_in_tib():
    """The storage chart's axis says TiB and its bars are bytes / 2^40."""
    pytest.importorskip("matplotlib")
    from erpack.report import plots

    row = {"codec": "fp32", "model": "m", "layer": 1, "kind": "cache",
           "projection": {"bytes": 2 * 2**40, "monthly_cost": 1.0, "documents": 10}}
    ax = plots.storage_figure([row]).axes[0]
    assert "TiB" in ax.get_xlabel() and ax.patches[0].get_width() == pytest.approx(2.0)
    assert "2.00 TiB" in ax.texts[0].get_text()


def test_labels_outside_the_axes_are_not_cut():
    """A point label past the axes' edge is inside the PNG (the canvas grows to what is drawn)."""
    import struct

    pytest.importorskip("matplotlib")
    from erpack.report import plots

    fig, ax = plots._plt().subplots(figsize=(4, 3))
    ax.scatter([1.0], [1.0])
    ax.annotate("int4:32+shuffle:4+zstd:9 " * 2, (1.0, 1.0), xytext=(3, 3), textcoords="offset points")
    png = plots._png(fig)
    width = struct.unpack(">I", png[16:20])[0]  # the PNG header's width, in pixels at dpi 110
    assert width > 4 * 110 + 100  # wider than the 4-inch figure by the label's overhang


@reads_urls
def test_report_of_caches_on_s3_equals_the_local_one(lossy_first, s3_bucket, s3_server, tmp_path, capsys,
                                                     monkeypatch):
    """`erpack report s3://...` measures what it measures on the local copies (sizes, SQNR against the
    lossless one), with the endpoint given only by --storage-options, which the report names but never
    stores (it may hold credentials)."""
    from erpack.cli import main

    int8, fp32 = lossy_first
    urls = [upload_cache(int8, f"{s3_bucket}/int8"), upload_cache(fp32, f"{s3_bucket}/fp32")]
    common = ["--no-lower-timing", "--sample", "10", "--documents", "1e6", "--json"]
    assert main(["report", str(int8), str(fp32), "-o", str(tmp_path / "local.html"), *common]) == 0
    local = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    options = json.dumps({"endpoint_url": s3_server.endpoint})
    assert main(["report", *urls, "-o", str(tmp_path / "s3.html"), "--storage-options", options, *common]) == 0
    remote = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["source"] for r in remote["rows"]] == urls and remote["config"]["storage_options"] == ["endpoint_url"]
    for a, b in zip(local["rows"], remote["rows"]):
        for key in ("codec", "documents", "tokens", "bytes", "bits_per_value", "sqnr_db"):
            assert a[key] == b[key], key


@reads_urls
def test_bench_reads_a_cache_on_s3(lossy_first, s3_bucket, tmp_path, capsys):
    """`erpack bench --cache s3://...`: the erpack path reads the remote cache (no page-cache eviction there)."""
    from erpack.cli import main

    int8, _ = lossy_first
    url = upload_cache(int8, f"{s3_bucket}/int8")
    root = int8.parent
    assert main(["bench", str(root / "corpus.jsonl"), "--model", str(root / "tiny-bert"), "--layer", str(tiny.LAYER),
                 "--cache", url, "--paths", "erpack-torch", "--limit", "8", "--split", "all", "--repeats", "1",
                 "--warmup", "0", "--work", str(tmp_path / "work"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [c["path"] for c in result["caches"]] == [url] and [p["path"] for p in result["paths"]] == ["erpack-torch"]
    assert result["paths"][0]["codec"] == "int8+zstd:3" and result["paths"][0]["documents_per_second"] > 0
