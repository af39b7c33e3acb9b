"""A token-classification task model (tiny random BERT, logits per token) exported to ONNX and served per
word by `erpack predict`: parity with PyTorch on real tokens, int8, the metadata a token graph records,
predictions per word (words from a label file, from --texts, from new texts), and the errors (no words,
a label list that does not match the words, a bundle of a token task)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.export.conftest import LAYER, MAX_LENGTH, corpus_rows, make_model_folder, write_jsonl

LABELS = ["O", "CAP", "END"]


def _word_labels(rows: list[dict]) -> list[dict]:
    """A word label file's rows for corpus `rows`: one label per word (a fixed rule of the word)."""
    return [{"id": r["id"], "words": r["text"].split(), "split": "test",
             "labels": [LABELS[int(w[1:]) % 3] for w in r["text"].split()]} for r in rows]


def _token_task_model(folder, cache, subwords: str = "first"):
    from transformers import AutoModelForTokenClassification

    from erpack.store import CacheReader
    from erpack.train import TaskModel
    from erpack.train.taskmodel import expected_cache_of

    torch.manual_seed(3)
    model = AutoModelForTokenClassification.from_pretrained(str(folder), num_labels=len(LABELS)).eval()
    with CacheReader(cache) as r:
        info = {"task": "token-classification", "labels": LABELS, "subwords": subwords, "mode": "upper",
                "adapter": None, "layer": LAYER, "cache": expected_cache_of(r)}
    return TaskModel(model, info)


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    """{"root", "rows", "corpus", "cache", "tm", "labels" (word label file)} of a tiny token task; the cache
    is written by erpack.encode, so its records keep their token ids."""
    import transformers

    from erpack.encode import encode_corpus

    transformers.logging.set_verbosity_error()
    root = tmp_path_factory.mktemp("tokens")
    folder = make_model_folder(root / "tiny-bert")
    rows = corpus_rows(12, seed=5)
    rows[0]["text"] = " ".join(f"w{i % 100}" for i in range(60))  # cut at MAX_LENGTH: words left unscored
    corpus = write_jsonl(root / "corpus.jsonl", [{"id": r["id"], "text": r["text"]} for r in rows])
    cache = root / "cache"
    encode_corpus(str(corpus), str(cache), model=str(folder), layer=LAYER, codec="int8c+zstd:3",
                  max_length=MAX_LENGTH, batch_size=8)
    return {"root": root, "folder": folder, "rows": rows, "corpus": corpus, "cache": cache,
            "tm": _token_task_model(folder, cache), "labels": write_jsonl(root / "words.jsonl", _word_labels(rows))}


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


def test_bundle_of_a_token_task_is_refused(tok):
    from erpack.deploy.build import write_bundle
    from erpack.errors import BundleError

    with pytest.raises(BundleError, match="token-classification.*erpack predict"):
        write_bundle(tok["tm"], tok["root"] / "bundle", calibration_cache=tok["cache"])
    assert not (tok["root"] / "bundle").exists()
