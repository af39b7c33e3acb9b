"""A token-classification task model (a tiny random BERT with MiniLM's real tokenizer, logits per token)
exported to ONNX and served per word by `erpack predict` on real BBC words (the truecasing task):
parity with PyTorch on real tokens, int8, the metadata a token graph records, predictions per word
(words from a label file, from --texts, from new texts), and the errors (no words, a label list that
does not match the words, an unknown label, a cache without token ids), and `--engine ray`: Ray actors
given each part's words write the single engine's rows into parts (real Ray: tests/services.py's
ray_local). Bundles of a token task: tests/deploy/test_bundle_kinds.py."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from tests.export.conftest import write_jsonl
from tests.export.tokens import (
    LABELS,
    lines,
    predict_rows,
    reference_labels,
    token_task_model,
    word_labels,
)


@pytest.fixture(scope="module")
def token_graph(tok):
    from erpack.export import export_task_model

    out = tok["root"] / "graphs" / "tok.onnx"
    summary = export_task_model(tok["tm"], out, quantize="dynamic", calibration_cache=tok["cache"])
    return out, summary


def test_token_graph_outputs_logits_per_token_within_parity(tok, token_graph):
    from erpack.export import create_session, read_metadata
    from erpack.export.inputs import cache_batches

    out, summary = token_graph
    assert summary.parity["passed"] and summary.parity["max_diff"] < 1e-4
    info = read_metadata(out)
    assert (info["task"], info["labels"], info["subwords"], info["outputs"]) == \
        ("token-classification", LABELS, "first", ["logits"])
    sess = create_session(out, "cpu")
    from erpack.store import CacheReader

    with CacheReader(tok["cache"]) as r:
        hidden, mask = cache_batches(r, limit=5, batch_size=5)[0]
    got = sess.run({"hidden_states": hidden, "attention_mask": mask})[0]
    assert got.shape == (*mask.shape, len(LABELS))  # (B, T, C) on dynamic batch and token axes
    with torch.no_grad():
        ref = tok["tm"].upper(torch.from_numpy(hidden), torch.from_numpy(mask)).numpy()
    keep = mask.astype(bool)
    assert np.abs(got[keep] - ref[keep]).max() < 1e-4


def test_token_graph_int8_agreement_counts_real_tokens(tok, token_graph):
    from erpack.store import CacheReader

    _, summary = token_graph
    v = summary.variant("int8-dynamic")
    assert v is not None and v.agreement["tokens"] is True
    with CacheReader(tok["cache"]) as r:
        ids = r.ids()
        half = ids[len(ids) // 2:]  # the agreement batches: the second half of the cache
        real = sum(r.info(i)["tokens"] for i in half)
    assert v.agreement["rows"] == real
    assert 0.0 <= v.agreement["argmax_agreement"] <= 1.0
    assert all(step["agreement"] is not None for step in v.details["auto_exclude"]["steps"])


def test_predict_gives_a_label_per_word_and_scores_them(tok, token_graph, tmp_path):
    from erpack.predict import predict

    out, _ = token_graph
    s = predict(out, tok["cache"], labels=str(tok["labels"]), output=tmp_path / "p.jsonl", device="cpu")
    rows = {r["id"]: r for r in lines(tmp_path / "p.jsonl")}
    assert s.predicted == len(tok["rows"]) == len(rows)
    for r, doc in zip(tok["rows"], tok["docs"]):
        row = rows[r["id"]]
        assert row["words"] == r["text"].split() and len(row["predicted"]) == len(row["words"])
        assert row["predicted"] == reference_labels(tok, r["id"], row["words"])
        assert row["labels"] == list(doc.labels)
    long = rows[tok["rows"][0]["id"]]
    assert long["truncated_words"] > 0 and long["predicted"][-long["truncated_words"]:] == [None] * long["truncated_words"]
    assert all(rows[r["id"]]["truncated_words"] == 0 for r in tok["rows"][1:])
    m = s.metrics
    assert m["documents"] == len(rows) and m["truncated_words"] == long["truncated_words"]
    assert m["words"] == sum(len(r["words"]) for r in rows.values()) - long["truncated_words"]
    assert set(m) >= {"micro_f1", "macro_f1", "accuracy", "per_label"} and set(m["per_label"]) == set(LABELS)
    pairs = [(t, p) for row in rows.values() for t, p in zip(row["labels"], row["predicted"]) if p is not None]
    assert m["accuracy"] == pytest.approx(np.mean([t == p for t, p in pairs]))


def test_words_from_texts_and_from_new_texts(tok, token_graph, tmp_path):
    """Cached documents take their words from --texts; a text the cache lacks runs through the lower stack
    and its words are its text split at whitespace."""
    from erpack.predict import predict

    out, _ = token_graph
    new = {"id": "new-1", "text": "the minister said  on tuesday that parliamentarians would vote"}
    texts = write_jsonl(tmp_path / "texts.jsonl", [{"id": tok["rows"][1]["id"], "text": tok["rows"][1]["text"]}, new])
    import shutil

    cache = shutil.copytree(tok["cache"], tmp_path / "cache")
    s = predict(out, cache, texts=str(texts), output=tmp_path / "p.jsonl", device="cpu", add_to_cache=True)
    rows = lines(tmp_path / "p.jsonl")
    assert [r["source"] for r in rows] == ["cache", "text"] and s.from_text.documents == 1
    assert s.from_text.added_to_cache == 1  # with its token ids: predicted again from the cache, the same labels
    predict(out, cache, ids=["new-1"], texts=str(texts), output=tmp_path / "again.jsonl", device="cpu")
    again = lines(tmp_path / "again.jsonl")[0]
    assert again["source"] == "cache" and again["predicted"] == rows[1]["predicted"]
    assert rows[0]["predicted"] == reference_labels(tok, rows[0]["id"], rows[0]["words"])
    assert rows[1]["words"] == new["text"].split() and len(rows[1]["predicted"]) == 9
    assert all(label in LABELS for label in rows[1]["predicted"]) and "labels" not in rows[1]


def test_token_graph_without_words_is_refused(tok, token_graph, tmp_path, capsys):
    from erpack.cli import main

    out, _ = token_graph
    code = main(["predict", str(out), str(tok["cache"]), "--ids", tok["rows"][2]["id"], "-o", str(tmp_path / "p.jsonl")])
    assert code == 2 and not (tmp_path / "p.jsonl").exists()
    err = capsys.readouterr().err
    assert tok["rows"][2]["id"] in err and "--labels" in err and "--texts" in err


@pytest.mark.parametrize("change, message", [
    (lambda row: dict(row, labels=row["labels"][:-1]), "labels for .* words"),
    (lambda row: dict(row, labels=["NOPE"] + row["labels"][1:]), "'NOPE'"),
    (lambda row: dict(row, words=["an", "extra"] + row["words"][1:], labels=["O"] + row["labels"]),
     "differ from the tokens the cache holds"),
])
def test_bad_word_labels_are_refused_naming_the_document(tok, token_graph, tmp_path, capsys, change, message):
    from erpack.cli import main

    out, _ = token_graph
    rows = word_labels(tok["docs"])
    rows[3] = change(rows[3])
    bad = write_jsonl(tmp_path / "bad.jsonl", rows)
    code = main(["predict", str(out), str(tok["cache"]), "--labels", str(bad), "-o", str(tmp_path / "p.jsonl")])
    err = capsys.readouterr().err
    assert code == 2 and not (tmp_path / "p.jsonl").exists()
    assert rows[3]["id"] in err and "bad.jsonl" in err
    assert re.search(message, err), err


def test_cache_without_token_ids_is_refused(tok, token_graph, tmp_path, capsys):
    """A cache whose records keep no token ids (written before shard version 3) cannot place the words."""
    from erpack.cli import main
    from tests.export.conftest import write_cache

    out, _ = token_graph
    old = write_cache(tmp_path / "old-cache", tok["folder"], tok["rows"][:3])
    code = main(["predict", str(out), str(old), "--labels", str(tok["labels"]), "--ids", tok["rows"][1]["id"],
                 "-o", str(tmp_path / "p.jsonl")])
    err = capsys.readouterr().err
    assert code == 2 and tok["rows"][1]["id"] in err and "re-encode" in err


def test_ray_scoring_of_a_token_graph_is_refused(tok, token_graph):
    from erpack.errors import ExportError
    from erpack.export import create_session, read_metadata
    from erpack.predict import cached_rows
    from erpack.store import CacheReader

    out, _ = token_graph
    sess = create_session(out, "cpu")
    with CacheReader(tok["cache"]) as r, pytest.raises(ExportError, match="per word"):
        cached_rows(sess, r, r.ids()[:2], read_metadata(sess.session))


def test_cli_exports_a_saved_token_task_model_and_predicts_per_word(tok, tmp_path, capsys):
    from erpack.cli import main

    folder = tok["tm"].save(tmp_path / "task")
    graph = tmp_path / "tok.onnx"
    assert main(["export", str(folder), "-o", str(graph), "--json"]) == 0
    s = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert s["task"] == "token-classification" and s["parity"]["passed"]
    assert main(["predict", str(graph), str(tok["cache"]), "--labels", str(tok["labels"]), "--split", "test",
                 "-o", str(tmp_path / "p.jsonl"), "--json"]) == 0
    out = capsys.readouterr().out
    assert "per label    O F1" in out and "micro_f1" in out and "past max_length" in out
    m = json.loads(out.splitlines()[-1])["metrics"]
    assert m["documents"] == len(tok["rows"]) and 0.0 <= m["micro_f1"] <= 1.0


def test_subwords_all_predicts_from_the_mean_of_a_words_subwords(tok, tmp_path):
    from transformers import AutoTokenizer

    from erpack.export import export_task_model, read_metadata
    from erpack.predict import predict

    tm = token_task_model(tok["folder"], tok["cache"], subwords="all")
    graph = tmp_path / "all.onnx"
    export_task_model(tm, graph)
    assert read_metadata(graph)["subwords"] == "all"
    predict(graph, tok["cache"], labels=str(tok["labels"]), output=tmp_path / "p.jsonl", device="cpu")
    rows = lines(tmp_path / "p.jsonl")
    tokenizer = AutoTokenizer.from_pretrained(str(tok["folder"]))
    assert any(len(tokenizer.tokenize(w)) > 1 for r in rows for w in r["words"])  # so the rule matters
    for row in rows:
        assert row["predicted"] == reference_labels(tok, row["id"], row["words"], "all", tm)


def test_a_token_baseline_exports_whole_with_logits_per_token(tok, tmp_path):
    """A token task's full fine-tune (input "text") exports with --part full: token ids -> (B, T, C)."""
    from transformers import AutoTokenizer

    from erpack.export import create_session, export_task_model
    from erpack.train import TaskModel

    base = TaskModel(token_task_model(tok["folder"], tok["cache"]).model, dict(tok["tm"].info, input="text"),
                     AutoTokenizer.from_pretrained(str(tok["folder"])))
    s = export_task_model(base, tmp_path / "base.onnx", part=None)
    assert s.part == "full" and s.parity["passed"]
    sess = create_session(tmp_path / "base.onnx", "cpu")
    ids = np.array([[101, 2009, 2003, 102, 0], [101, 7592, 2088, 1012, 102]], dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": (ids > 0).astype(np.int64)}
    if "token_type_ids" in sess.input_names:
        feeds["token_type_ids"] = np.zeros_like(ids)
    assert sess.run(feeds)[0].shape == (2, 5, len(LABELS))


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_ray_parts_of_a_token_graph_hold_the_single_engines_rows(ray_local, tok, token_graph, tmp_path, capsys, fmt):
    """Every document's words, label per word (null past max_length), truncated_words and true labels: the
    rows `erpack predict` writes, from actors that were handed the words with the ids; and its scores."""
    from erpack.cli import main
    from erpack.cluster.score import PARTS, read_parts

    graph, _ = token_graph
    want, single = predict_rows(graph, tok, tok["labels"], tmp_path / "single.jsonl", capsys)
    out = tmp_path / "parts"
    code = main(["predict", str(graph), str(tok["cache"]), "--labels", str(tok["labels"]), "--split", "test",
                 "--engine", "ray", "--workers", "2", "--part-docs", "3", "--format", fmt, "--out", str(out), "--json"])
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and s["task"] == "token-classification" and s["predicted"] == len(tok["rows"]) == 10
    assert [p["rows"] for p in s["parts"]] == [3, 3, 3, 1] and (out / PARTS).exists()
    got = read_parts(out)
    assert [r["id"] for r in got] == [r["id"] for r in want]
    for a, b in zip(got, want):
        assert a == b, a["id"]
    assert got[0]["truncated_words"] > 0 and got[0]["predicted"][-1] is None  # the long one, cut at 64 tokens
    assert all(r["labels"] == list(d.labels) for r, d in zip(got, tok["docs"]))
    assert s["metrics"] == single["metrics"]  # scored from the parts' word counts, as from the rows
    assert [n for n in s["notes"] if "max_length" in n] == [n for n in single["notes"] if "max_length" in n]


def test_ray_token_graph_errors_name_the_file_and_the_document(ray_local, tok, token_graph, tmp_path, capsys):
    """No --labels; a cached document the word file lacks (both refused before any work); words that are not a
    record's text (its part fails on the actor: exit 2, no _parts.json)."""
    from erpack.cli import main
    from erpack.cluster.score import PARTS

    graph, _ = token_graph
    base = ["predict", str(graph), str(tok["cache"]), "--engine", "ray", "--part-docs", "4"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert str(graph) in err and "token-classification" in err and "--labels" in err
    rows = word_labels(tok["docs"])
    lacking = write_jsonl(tmp_path / "lacking.jsonl", rows[:3] + rows[4:])
    assert main([*base, "--labels", str(lacking), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert rows[3]["id"] in err and "lacking.jsonl" in err and not (tmp_path / "b").exists()
    rows[5] = dict(rows[5], words=["an", "extra"] + rows[5]["words"][1:], labels=["O"] + rows[5]["labels"])
    bad = write_jsonl(tmp_path / "bad.jsonl", rows)
    assert main([*base, "--labels", str(bad), "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert rows[5]["id"] in err and "bad.jsonl" in err and "differ from the tokens the cache holds" in err, err
    assert "part 1" in err and not (tmp_path / "c" / PARTS).exists()
