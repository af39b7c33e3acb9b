"""Bundles of the task models that are not one prediction per document from one graph: a token-classification
model (a label per word, issue 21), a model with exits (per-layer graphs run with batch compaction, issue 22)
and a shared-block model unrolled for S ODE steps (issue 22). Tiny random models: the token task's uses
MiniLM's real tokenizer on real BBC truecasing words (tests/export/test_export_tokens.py); the exits and ODE
models are the depth tests' (tests/depth/conftest.py); the bundles are tests/deploy/conftest.py's."""

from __future__ import annotations

import json

import numpy as np
import pytest

from erpack.cli import main
from tests.depth.conftest import tiny_caches  # noqa: F401  (the fixture, shared)
from tests.depth.test_exits_regression import reg  # noqa: F401  (the fixture, shared)
from tests.export.conftest import write_jsonl
from tests.export.tokens import LABELS, lines, predict_rows, reference_labels, word_labels


# ---- token classification -------------------------------------------------------------------------
def test_a_token_bundle_records_its_rule_and_matches_pytorch_per_token(token_bundle):
    from erpack.deploy import Bundle

    out, s = token_bundle
    b = Bundle.load(out)
    assert (b.task, b.labels, b.manifest["task"]["subwords"]) == ("token-classification", LABELS, "first")
    assert s.text_parity["max_diff"] < 1e-3 and s.text_parity["argmax_agreement"] >= 0.99


def test_a_token_bundle_labels_each_word_of_a_text_as_predict_does(token_bundle, tok):  # noqa: F811
    from erpack.deploy import BundleRuntime

    rt = BundleRuntime(token_bundle[0], device="cpu")
    docs = tok["docs"][1:6]
    int8 = BundleRuntime(token_bundle[0], "int8", device="cpu").predict_texts([" ".join(d.words) for d in docs]).rows
    assert [r["words"] for r in int8] == [list(d.words) for d in docs]
    rows = rt.predict_texts(["  ".join(d.words) for d in docs], ids=[d.id for d in docs]).rows  # runs of spaces too
    agree = total = 0
    for d, row in zip(docs, rows):
        assert row["words"] == list(d.words) and len(row["predicted"]) == len(d.words)
        assert set(row["predicted"]) <= set(LABELS) and row["truncated_words"] == 0 and row["source"] == "text"
        ref = reference_labels(tok, d.id, list(d.words))  # PyTorch on the cached record, the same words rule
        agree += sum(a == b for a, b in zip(row["predicted"], ref))
        total += len(ref)
    assert agree / total >= 0.95  # text runs the exported lower graph; the cache's record PyTorch's


def _graph_rows(bundle_folder, tok, labels, tmp_path, capsys, *ids) -> tuple[list[dict], dict]:
    """What `erpack predict` gives from the bundle's own fp32 upper graph over the token cache."""
    from erpack.deploy import Bundle

    return predict_rows(Bundle.load(bundle_folder).graph("upper"), tok, labels, tmp_path / "graph.jsonl", capsys, *ids)


def test_a_token_bundle_predicts_cached_ids_given_their_words(token_bundle, tok, tmp_path, capsys):  # noqa: F811
    """The runtime's rows for cached ids with each document's words are `erpack predict upper.onnx CACHE`'s."""
    from erpack.deploy import BundleRuntime

    docs = tok["docs"]
    ids = [d.id for d in docs[:5]]
    words = {d.id: (list(d.words), f"doc {d.id}") for d in docs}
    rows = BundleRuntime(token_bundle[0], device="cpu").predict_ids(tok["cache"], ids + ["nope"], words=words).rows
    want, _ = _graph_rows(token_bundle[0], tok, tok["labels"], tmp_path, capsys, *ids)
    assert rows[:5] == [{k: v for k, v in r.items() if k != "labels"} for r in want]
    assert all(r["source"] == "cache" for r in rows[:5]) and rows[0]["truncated_words"] > 0  # the long one, cut
    assert rows[5] == {"id": "nope", "error": "not in the cache"}
    assert rows[1]["predicted"] == reference_labels(tok, ids[1], list(docs[1].words))  # PyTorch on the record


def test_erpack_predict_with_a_token_bundle_and_labels_gives_the_graphs_rows_and_scores(token_bundle, tok,  # noqa: F811
                                                                                       tmp_path, capsys):
    want, graph = _graph_rows(token_bundle[0], tok, tok["labels"], tmp_path, capsys)
    out = tmp_path / "bundle.jsonl"
    assert main(["predict", str(token_bundle[0]), str(tok["cache"]), "--labels", str(tok["labels"]), "--split", "test",
                 "-o", str(out), "--device", "cpu", "--json"]) == 0
    printed = capsys.readouterr().out
    s = json.loads(printed.strip().splitlines()[-1])
    assert lines(out) == want and all(r["labels"] == list(d.labels) for r, d in zip(want, tok["docs"]))
    assert s["from_cache"] == len(tok["docs"]) and s["metrics"] == graph["metrics"]
    assert "per label    O F1" in printed and "micro_f1" in printed and "past max_length" in printed
    assert [n for n in s["notes"] if "max_length" in n] == [n for n in graph["notes"] if "max_length" in n]
    # without -o: the lines on stdout, the summary and the scores on stderr
    assert main(["predict", str(token_bundle[0]), str(tok["cache"]), "--labels", str(tok["labels"]), "--ids",
                 f"{tok['docs'][1].id},{tok['docs'][2].id}", "--device", "cpu"]) == 0
    got = capsys.readouterr()
    assert [json.loads(line) for line in got.out.splitlines()] == want[1:3] and "score        documents 2" in got.err


def test_a_token_bundle_refuses_cached_ids_without_their_words_and_pairs(token_bundle, tok, tmp_path,  # noqa: F811
                                                                         capsys):
    from erpack.corpus import Document
    from erpack.deploy import BundleRuntime
    from erpack.errors import InputError

    rt = BundleRuntime(token_bundle[0], device="cpu")
    ids = [d.id for d in tok["docs"][:7]]
    with pytest.raises(InputError, match=r"no words for 7 cached document\(s\).*'" + ids[0] + r"'.*\.\.\..*words="):
        rt.predict_ids(tok["cache"], ids)
    with pytest.raises(InputError, match="doc x: word 0 .*whitespace-free"):
        rt.predict_ids(tok["cache"], ids[:1], words={ids[0]: (["two words"], "doc x")})
    with pytest.raises(InputError, match="text pair"):
        rt.predict_texts([Document("p", "one two", "three")])
    # the CLI: no --labels, a word file lacking the document, words that are not the record's text
    words = list(tok["docs"][2].words)
    assert main(["predict", str(token_bundle[0]), "--text", " ".join(words), "--device", "cpu"]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    assert row["words"] == words and len(row["predicted"]) == len(words)
    base = ["predict", str(token_bundle[0]), str(tok["cache"]), "--device", "cpu", "-o", str(tmp_path / "p.jsonl")]
    assert main([*base, "--ids", ids[0]]) == 2
    err = capsys.readouterr().err
    assert ids[0] in err and "--labels" in err and "Traceback" not in err
    rows = word_labels(tok["docs"])
    lacking = write_jsonl(tmp_path / "lacking.jsonl", rows[:3] + rows[4:])
    assert main([*base, "--labels", str(lacking)]) == 2
    err = capsys.readouterr().err
    assert rows[3]["id"] in err and "lacking.jsonl" in err and "Traceback" not in err
    rows[5] = dict(rows[5], words=["an", "extra"] + rows[5]["words"][1:], labels=["O"] + rows[5]["labels"])
    bad = write_jsonl(tmp_path / "bad.jsonl", rows)
    assert main([*base, "--labels", str(bad)]) == 2
    err = capsys.readouterr().err
    assert rows[5]["id"] in err and "bad.jsonl" in err and "differ from the tokens the cache holds" in err, err
    assert not (tmp_path / "p.jsonl").exists()


def test_a_token_bundle_over_a_cache_without_token_ids_says_re_encode(token_bundle, tok, tmp_path, capsys):  # noqa: F811
    from tests.export.conftest import write_cache

    old = write_cache(tmp_path / "old-cache", tok["folder"], tok["rows"][:3])
    code = main(["predict", str(token_bundle[0]), str(old), "--labels", str(tok["labels"]), "--ids",
                 tok["rows"][1]["id"], "--device", "cpu", "-o", str(tmp_path / "p.jsonl")])
    err = capsys.readouterr().err
    assert code == 2 and tok["rows"][1]["id"] in err and "re-encode" in err and "Traceback" not in err


def test_a_document_bundle_takes_no_words_or_labels(bundle, tiny, tok, capsys):  # noqa: F811
    from erpack.deploy import BundleRuntime
    from erpack.errors import InputError

    with pytest.raises(InputError, match="one label per document.*drop them"):
        BundleRuntime(bundle[0], device="cpu").predict_ids(tiny["cache"], ["d000"], words={"d000": (["w1"], "d000")})
    for flags in (["--labels", str(tok["labels"])], ["--split", "test"]):
        assert main(["predict", str(bundle[0]), str(tiny["cache"]), *flags, "--device", "cpu"]) == 2
        err = capsys.readouterr().err
        assert f"{flags[0]} apply to a graph, not to a bundle" in err and "token-classification bundle" in err


# ---- early exit -----------------------------------------------------------------------------------
def _exit_graph_rows(task_model, cache, ids, folder) -> list[dict]:
    """The rows `erpack predict` gives for `ids` from the exit-graph folder `erpack export` writes beside a graph."""
    from erpack.depth.onnx import exits_folder_for

    graph, preds = folder / "m.onnx", folder / "p.jsonl"
    assert main(["export", str(task_model), "-o", str(graph)]) == 0
    assert main(["predict", str(exits_folder_for(graph)), str(cache), "--ids", ",".join(ids),
                 "-o", str(preds), "--device", "cpu"]) == 0
    return [json.loads(line) for line in preds.read_text().splitlines()]


def test_an_exit_bundle_runs_its_exit_graphs_as_predict_does(exit_bundle, dact_model, tiny_exit, tmp_path):  # noqa: F811
    from erpack.deploy import Bundle, BundleRuntime

    out, s = exit_bundle
    b = Bundle.load(out)
    assert b.has_exits and set(b.manifest["graphs"]["exits"]) == {"fp32", "int8"}
    assert b.manifest["task"]["early_exit"]["rule"] == "dact"
    assert s.text_parity["max_diff"] < 1e-4 and len(s.text_parity["exits"]["layers"]) == s.text_parity["texts"]
    ids = [r["id"] for r in tiny_exit["rows"][:12]]
    rows = BundleRuntime(out, device="cpu").predict_ids(tiny_exit["cache"], ids).rows
    want = _exit_graph_rows(dact_model[0], tiny_exit["cache"], ids, tmp_path)
    assert [(r["id"], r["predicted"], r["layers"]) for r in rows] == [(r["id"], r["predicted"], r["layers"]) for r in want]
    # every layer: the plain upper graph, no `layers`; an override of the threshold changes where they stop
    full = BundleRuntime(out, device="cpu", early_exit=False).predict_ids(tiny_exit["cache"], ids).rows
    assert all("layers" not in r for r in full)
    first = BundleRuntime(out, device="cpu", exit_threshold=0.0).predict_ids(tiny_exit["cache"], ids).rows
    assert {r["layers"] for r in first} == {1}  # dact at 0: the first exit's lead always suffices


def test_an_exit_bundle_serves_texts_with_layers_and_int8(exit_bundle):
    from erpack.deploy import BundleRuntime

    for variant in ("fp32", "int8"):
        rows = BundleRuntime(exit_bundle[0], variant, device="cpu").predict_texts(["w1 w2 w3", "w9"]).rows
        assert all(isinstance(r["layers"], int) and r["layers"] >= 1 and "predicted" in r for r in rows)


def test_an_exit_threshold_needs_exit_graphs(bundle, exit_bundle, tiny_exit):
    from erpack.deploy import BundleRuntime
    from erpack.deploy.engine import Engine
    from erpack.errors import InputError

    with pytest.raises(InputError, match="no exit graphs.*--early-exit"):
        BundleRuntime(bundle[0], device="cpu", exit_threshold=0.5)
    with pytest.raises(InputError, match="has exit graphs.*--early-exit"):
        Engine({"rt": str(bundle[0])}, device="cpu", exit_threshold=0.5)
    engine = Engine({"dact": str(exit_bundle[0])}, cache=str(tiny_exit["cache"]), device="cpu", exit_threshold=0.0)
    ids = [r["id"] for r in tiny_exit["rows"][:6]]
    assert {r["layers"] for r in engine.predict_ids(ids, ["dact"])["dact"]} == {1}
    engine.close()


def test_a_regression_exit_bundle_gives_the_scores_and_layers_predict_gives(reg, tiny_exit, tmp_path):  # noqa: F811
    """A regression model with a learned halting unit (tests/depth/test_exits_regression.py): the bundle's rows
    carry the score and the exit layer that `erpack predict` gives from the exit graphs `erpack export` writes."""
    from erpack.deploy import BundleRuntime
    from erpack.deploy.build import write_bundle

    out = tmp_path / "bundle"
    write_bundle(reg[1], out, model=str(tiny_exit["model"]), calibration_cache=tiny_exit["cache"])
    ids = [r["id"] for r in tiny_exit["rows"][:12]]
    rows = BundleRuntime(out, device="cpu").predict_ids(tiny_exit["cache"], ids).rows
    want = _exit_graph_rows(reg[1], tiny_exit["cache"], ids, tmp_path)
    assert [(r["id"], r["layers"]) for r in rows] == [(r["id"], r["layers"]) for r in want]
    np.testing.assert_allclose([r["score"] for r in rows], [r["score"] for r in want], atol=1e-5)


# ---- ODE steps ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ode_model(tiny_caches, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("ode") / "tm"
    assert main(["train", str(tiny_caches["bert"]), "--labels", str(tiny_caches["labels"]), "--shared-block",
                 "--epochs", "1", "--distill-epochs", "1", "--batch-size", "8", "--lr", "1e-3", "--device", "cpu",
                 "-o", str(out)]) == 0
    return out


def test_an_ode_step_bundle_serves_its_unrolled_graph(ode_model, tiny_caches, tmp_path, capsys):  # noqa: F811
    from erpack.deploy import Bundle, BundleRuntime

    cache = str(tiny_caches["bert"])
    out = tmp_path / "bundle"
    assert main(["export", str(ode_model), "--bundle", str(out), "--steps", "1", "--no-int8",
                 "--model", str(tiny_caches["root"] / "tiny-bert"), "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["text_parity"]["max_diff"] < 1e-4
    assert Bundle.load(out).manifest["task"]["ode"]["steps"] == 1
    ids = [r["id"] for r in tiny_caches["rows"][:8]]
    rows = BundleRuntime(out, device="cpu").predict_ids(cache, ids).rows
    graph = tmp_path / "s1.onnx"
    assert main(["export", str(ode_model), "-o", str(graph), "--steps", "1"]) == 0
    preds = tmp_path / "p.jsonl"
    assert main(["predict", str(graph), cache, "--ids", ",".join(ids), "--steps", "1", "-o", str(preds),
                 "--device", "cpu"]) == 0
    want = [json.loads(line) for line in preds.read_text().splitlines()]
    assert [(r["predicted"], r["layers"]) for r in rows] == [(r["predicted"], 1) for r in want]
    for a, b in zip(rows, want):
        assert np.allclose(list(a["probabilities"].values()), list(b["probabilities"].values()), atol=1e-5)


# ---- the service ----------------------------------------------------------------------------------
def test_the_service_labels_words_and_reports_exit_layers(token_bundle, exit_bundle, tok, tiny_exit):  # noqa: F811
    httpx = pytest.importorskip("httpx", reason="the `test` extra installs httpx")
    from erpack.deploy import BundleRuntime
    from erpack.deploy.engine import Engine
    from erpack.deploy.service import create_app
    from tests.deploy.test_service import Running

    docs = tok["docs"][1:4]
    running = Running(create_app(Engine({"case": str(token_bundle[0])}, cache=str(tok["cache"]), device="cpu")))
    try:
        with httpx.Client(base_url=running.url, timeout=60) as client:
            by_words = client.post("/v1/predict", json={"words": [list(d.words) for d in docs]})
            by_text = client.post("/v1/predict", json={"texts": [" ".join(d.words) for d in docs]})
            assert by_words.status_code == by_text.status_code == 200, by_words.text
            want = BundleRuntime(token_bundle[0], device="cpu").predict_texts([" ".join(d.words) for d in docs]).rows
            assert by_words.json()["predictions"]["case"] == by_text.json()["predictions"]["case"] == want
            assert [r["words"] for r in want] == [list(d.words) for d in docs]
            bad = client.post("/v1/predict", json={"ids": [docs[0].id]})
            assert bad.status_code == 400 and "holds no words" in bad.json()["error"]
            assert "erpack predict BUNDLE CACHE --labels" in bad.json()["error"]
            bad = client.post("/v1/predict", json={"words": [["two words"]]})
            assert bad.status_code == 400 and "whitespace-free" in bad.json()["error"]
            api = client.get("/openapi.json").json()
            assert "words" in api["components"]["schemas"]["PredictRequest"]["properties"]
            assert "a label per" in api["paths"]["/v1/predict"]["post"]["description"]
    finally:
        running.stop()
    ids = [r["id"] for r in tiny_exit["rows"][:8]]
    running = Running(create_app(Engine({"dact": str(exit_bundle[0])}, cache=str(tiny_exit["cache"]), device="cpu")))
    try:
        with httpx.Client(base_url=running.url, timeout=60) as client:
            got = client.post("/v1/predict", json={"ids": ids})
            assert got.status_code == 200, got.text
            want = BundleRuntime(exit_bundle[0], device="cpu").predict_ids(tiny_exit["cache"], ids).rows
            assert [(r["predicted"], r["layers"]) for r in got.json()["predictions"]["dact"]] == \
                [(r["predicted"], r["layers"]) for r in want]
    finally:
        running.stop()


def test_verify_checks_the_exit_graphs(exit_bundle, tmp_path):
    import shutil

    from erpack.deploy import verify_bundle

    report = verify_bundle(exit_bundle[0])
    assert report.ok and {"exits/fp32", "exits/int8"} <= set(report.graphs), report.failures
    copy = tmp_path / "b"
    shutil.copytree(exit_bundle[0], copy)
    with open(copy / "upper.exits" / "layer-0.onnx", "ab") as f:
        f.write(b"x")
    failures = verify_bundle(copy).failures
    assert [f["file"] for f in failures] == ["upper.exits/layer-0.onnx"]


def test_what_cannot_be_bundled_is_refused_naming_the_task_model(tiny, dact_model, tmp_path, capsys):
    # --steps needs a shared block; a model with exits runs its exits, not ODE steps
    for task_model, says in [(tiny["task_model"], "--shared-block"), (dact_model[0], "has exits")]:
        out = tmp_path / "b"
        assert main(["export", str(task_model), "--bundle", str(out), "--steps", "1", "--no-int8",
                     "--model", str(tiny["folder"])]) == 2
        err = capsys.readouterr().err
        assert str(task_model) in err and says in err and "Traceback" not in err
        assert not out.exists()
