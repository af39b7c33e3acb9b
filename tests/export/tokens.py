"""The token task the export and deployment tests share (the `tok` fixture, tests/export/conftest.py): a tiny
random BERT with MiniLM's real tokenizer, real BBC truecasing words and a token task model; the rows
`erpack predict` writes (`predict_rows`) and the labels PyTorch gives a cached record (`reference_labels`)."""

from __future__ import annotations

import json

import torch

from tests.checkers import TINY
from tests.export.conftest import LAYER

LABELS = ["O", "CAP"]
MAX_LENGTH = 64


def model_folder(folder):
    """A tiny random BERT (TINY, 4 layers) with MiniLM's tokenizer (real subwords, a vocabulary to match)."""
    from transformers import AutoConfig, AutoTokenizer, BertModel

    from erpack.assets import resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model("minilm"))
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    BertModel(AutoConfig.for_model("bert", **dict(TINY, vocab_size=len(tok)))).eval().save_pretrained(folder)
    return folder


def documents(n: int = 10) -> list:
    """Real truecasing documents: the first words (7 to 31) of BBC articles, the first one whole (cut at
    MAX_LENGTH tokens: its later words are not predicted)."""
    from erpack.token_tasks import WordRecord, load_token_dataset

    docs = load_token_dataset("bbc-truecase", split="test")[:n]
    return [d if i == 0 else WordRecord(d.id, d.words[:4 + 3 * i], d.labels[:4 + 3 * i], d.split)
            for i, d in enumerate(docs)]


def word_labels(docs) -> list[dict]:
    return [{"id": d.id, "words": list(d.words), "labels": list(d.labels), "split": d.split} for d in docs]


def token_task_model(folder, cache, subwords: str = "first"):
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


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def reference_labels(tok, doc_id: str, words: list[str], subwords: str = "first", tm=None) -> list:
    """Labels per word computed in PyTorch from the cached record (`tm`, default the fixture's task model)."""
    from transformers import AutoTokenizer

    from erpack.store import CacheReader
    from erpack.words import word_index, word_predictions

    tokenizer = AutoTokenizer.from_pretrained(str(tok["folder"]))
    with CacheReader(tok["cache"]) as r:
        hidden, ids = r.get(doc_id), r.get_tokens(doc_id)
    with torch.no_grad():
        z = (tm or tok["tm"]).upper(torch.from_numpy(hidden)[None], torch.ones((1, len(hidden)), dtype=torch.long))[0].numpy()
    pred = word_predictions(z, word_index(tokenizer, words, ids), len(words), subwords)
    return [LABELS[k] if k >= 0 else None for k in pred]


def predict_rows(graph, tok, labels, out, capsys, *ids) -> tuple[list[dict], dict]:
    """The rows (written to `out`) and the --json summary of `erpack predict GRAPH CACHE --labels LABELS` over the
    token cache (the single engine; only `ids` when given)."""
    from erpack.cli import main

    capsys.readouterr()
    assert main(["predict", str(graph), str(tok["cache"]), "--labels", str(labels), *(["--ids", ",".join(ids)] if ids else []),
                 "-o", str(out), "--device", "cpu", "--json"]) == 0
    return lines(out), json.loads(capsys.readouterr().out.strip().splitlines()[-1])
