"""Token classification from the cache on a tiny random BERT: labels per word, every mode, the baseline,
eval's per-word predictions, pruning, and the errors that name the document and the label file."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from erpack.cli import main
from erpack.errors import InputError, PruneError
from erpack.train import TaskModel, TrainConfig, evaluate
from erpack.train.trainer import prepare_data, train_from_cache
from tests.train.conftest import WORDS, write_cache, write_jsonl

TASK = "token-classification"


def _label(word: str) -> str:
    return "A" if int(word[1:]) < 40 else "O"  # (the tiny tokenizer reads these words as [UNK]: not learnable;
    # learning is tested on the real MiniLM, tests/train/test_token_real.py)


@pytest.fixture(scope="module")
def token(tiny, tmp_path_factory):
    """(model folder, corpus, labels JSONL, cache encoded by `erpack encode`, so it keeps its token ids)."""
    from erpack.encode import encode_corpus

    root = tmp_path_factory.mktemp("token")
    rng = random.Random(1)
    docs, labels = [], []
    for i in range(36):
        words = [rng.choice(WORDS[5:]) for _ in range(rng.randint(3, 12))]
        split = "train" if i < 24 else ("validation" if i < 30 else "test")
        docs.append({"id": f"t{i:02d}", "text": " ".join(words)})
        labels.append({"id": f"t{i:02d}", "words": words, "labels": [_label(w) for w in words], "split": split})
    corpus = write_jsonl(root / "corpus.jsonl", docs)
    cache = root / "cache"
    encode_corpus(str(corpus), str(cache), model=str(tiny["model"]), layer=2, codec="fp32")
    return {"root": root, "model": tiny["model"], "docs": docs, "rows": labels, "corpus": corpus,
            "labels": write_jsonl(root / "labels.jsonl", labels), "cache": cache}


CFG = TrainConfig(epochs=2, batch_size=8, seed=0, device="cpu")


@pytest.mark.parametrize("mode", ["upper", "adapter", "head"])
def test_each_mode_trains_a_loadable_token_model(token, tmp_path, mode):
    out = tmp_path / mode
    s = train_from_cache(token["cache"], str(token["labels"]), task=TASK, mode=mode, output=out, config=CFG,
                         subwords="all" if mode == "head" else "first")
    m = s.recycled.test
    assert s.labels == ["O", "A"] and s.documents == {"train": 24, "validation": 6, "test": 6}
    assert set(m["per_label"]) == {"O", "A"} and 0 <= m["micro_f1"] <= 1 and m["cut_words"] == 0
    assert m["n"] == sum(len(r["words"]) for r in token["rows"] if r["split"] == "test")
    tm = TaskModel.load(out)
    assert tm.task == TASK and tm.subwords == ("all" if mode == "head" else "first")
    assert type(tm.model).__name__ == "BertForTokenClassification"
    hidden, mask = torch.randn(2, 5, 32), torch.ones(2, 5, dtype=torch.long)
    assert tuple(tm.predict(hidden, mask).shape) == (2, 5, 2)
    r = evaluate(out, token["cache"], str(token["labels"]), predictions=tmp_path / "p.jsonl", device="cpu")
    assert r.metrics["micro_f1"] == pytest.approx(m["micro_f1"]) and r.metrics["accuracy"] == pytest.approx(m["accuracy"])
    lines = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    want = {x["id"]: x for x in token["rows"] if x["split"] == "test"}
    assert len(lines) == 6 and all(x["words"] == want[x["id"]]["words"] for x in lines)
    assert all(len(x["predicted"]) == len(x["words"]) and set(x["predicted"]) <= {"O", "A"} for x in lines)


def test_baseline_uses_the_same_alignment(token, tmp_path):
    out = tmp_path / "m"
    s = train_from_cache(token["cache"], str(token["labels"]), task=TASK, output=out, config=CFG, baseline=True)
    assert s.baseline.notes["length_mismatches"] == 0 and s.comparison.metric == "micro_f1"
    assert s.baseline.test["n"] == s.recycled.test["n"]
    r = evaluate(out / "baseline", token["cache"], str(token["labels"]), device="cpu")
    assert r.metrics["micro_f1"] == pytest.approx(s.baseline.test["micro_f1"])


def test_cli_train_and_eval_json(token, tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["train", str(token["cache"]), "--labels", str(token["labels"]), "--task", TASK, "--subwords", "all",
                 "-o", str(out), "--epochs", "1", "--device", "cpu", "--json"]) == 0
    text = capsys.readouterr().out
    s = json.loads(text.strip().splitlines()[-1])
    assert s["task"] == TASK and s["subwords"] == "all" and "micro_f1" in s["recycled"]["test"]
    assert "micro-F1" in text and "word accuracy" in text
    assert main(["eval", str(out), str(token["cache"]), "--labels", str(token["labels"]), "--json",
                 "--predictions", str(tmp_path / "p.jsonl")]) == 0
    text = capsys.readouterr().out
    r = json.loads(text.strip().splitlines()[-1])
    assert r["metrics"]["micro_f1"] == pytest.approx(s["recycled"]["test"]["micro_f1"]) and "per_label" in r["metrics"]
    assert "  A " in text  # a line per label


def test_prune_a_token_model(token, tmp_path):
    from erpack.prune import Fractions, RecoveryConfig, prune_task_model

    src = tmp_path / "m"
    train_from_cache(token["cache"], str(token["labels"]), task=TASK, output=src, config=CFG)
    pruned, s = prune_task_model(src, token["cache"], str(token["labels"]), Fractions(heads=0.5, ffn=0.5),
                                 output=tmp_path / "p", recovery=RecoveryConfig(rank=2, epochs=1), samples=8,
                                 train_cfg=TrainConfig(epochs=1, lr=1e-3, batch_size=8, device="cpu"))
    assert s.params_after < s.params_before and "micro_f1" in s.test
    r = evaluate(tmp_path / "p", token["cache"], str(token["labels"]), device="cpu")
    assert r.metrics["micro_f1"] == pytest.approx(s.test["micro_f1"])
    with pytest.raises(PruneError, match="distill"):
        prune_task_model(src, token["cache"], str(token["labels"]), Fractions(heads=0.5, ffn=0.5),
                         recovery=RecoveryConfig(rank=2, epochs=1, distill=True), samples=8)


# ---- errors: each names the document and the label file -------------------------------------------------


def _labels_with(token, tmp_path, change) -> str:
    rows = [dict(r) for r in token["rows"]]
    change(rows)
    return str(write_jsonl(tmp_path / "bad.jsonl", rows))


def _prepare(token, source, **kw):
    from erpack.store import CacheReader

    with CacheReader(token["cache"]) as reader:
        return prepare_data(reader, source, TASK, **kw)


def test_label_count_differs_from_the_words(token, tmp_path):
    bad = _labels_with(token, tmp_path, lambda rows: rows[3].update(labels=rows[3]["labels"][:-1]))
    with pytest.raises(InputError, match=r"bad\.jsonl:4.*document 't03'.*labels for .* words"):
        _prepare(token, bad)


def test_unknown_label(token, tmp_path):
    bad = _labels_with(token, tmp_path, lambda rows: rows[5]["labels"].__setitem__(0, "B"))
    with pytest.raises(InputError, match=r"bad\.jsonl:6.*document 't05'.*label 'B', not one of O, A"):
        _prepare(token, bad, labels=["O", "A"])


def test_words_that_are_not_the_cached_text(token, tmp_path):
    def change(rows):  # one word more than the cached text (the tiny tokenizer reads every word as [UNK])
        rows[2].update(words=rows[2]["words"] + ["w7"], labels=rows[2]["labels"] + ["O"])

    bad = _labels_with(token, tmp_path, change)
    with pytest.raises(InputError, match=r"bad\.jsonl:3.*document 't02'.*tokens differ.*encoded from"):
        _prepare(token, bad)


def test_cache_without_token_ids(token, tmp_path):
    """A cache whose records keep no token ids (as before shard version 3): re-encode."""
    rows = [{"id": d["id"], "text": d["text"], "label": "pos"} for d in token["docs"]]
    cache = write_cache(tmp_path / "old", token["model"], rows)
    from erpack.store import CacheReader

    with CacheReader(cache) as reader, pytest.raises(InputError, match=r"labels\.jsonl:1.*document 't00'.*re-encode"):
        prepare_data(reader, str(token["labels"]), TASK)


def test_bad_subwords_and_rows(token, tmp_path):
    with pytest.raises(InputError, match="--subwords"):
        _prepare(token, str(token["labels"]), subwords="last")
    bad = _labels_with(token, tmp_path, lambda rows: rows[0].pop("words"))
    with pytest.raises(InputError, match=r"bad\.jsonl:1.*needs `words`"):
        _prepare(token, bad)


# ---- alignment (erpack.words) on the real MiniLM tokenizer: words of several subwords -------------


@pytest.fixture(scope="module")
def minilm_tokenizer():
    from transformers import AutoTokenizer

    from erpack.assets import model_path

    return AutoTokenizer.from_pretrained(model_path("minilm"))


def test_word_index_first_and_all(minilm_tokenizer):
    from erpack.words import IGNORE, cut_words, token_targets, word_index, word_predictions

    words = ["Unbelievably,", "the", "gigantosaurus", "said:", "ok?"]
    ids = minilm_tokenizer(" ".join(words))["input_ids"]
    index = word_index(minilm_tokenizer, words, ids, "x", 512)
    pieces = minilm_tokenizer.convert_ids_to_tokens(ids)
    assert index[0] == -1 and index[-1] == -1 and sorted(set(index[1:-1])) == [0, 1, 2, 3, 4]
    for t, w in zip(pieces[1:-1], index[1:-1]):  # each piece is part of its word (lowercased)
        assert t.lstrip("#") in words[w].lower()
    assert (index == 0).sum() > 2 and (index == 2).sum() > 1  # several subwords
    labels = [1, 0, 1, 0, 2]
    first, every = token_targets(index, labels, "first"), token_targets(index, labels, "all")
    assert (first != IGNORE).sum() == 5 and (every != IGNORE).sum() == len(ids) - 2
    assert all(every[t] == labels[index[t]] for t in range(1, len(ids) - 1))
    logits = np.eye(3)[np.where(index >= 0, np.array(labels)[np.maximum(index, 0)], 0)]
    logits[np.flatnonzero(index == 0)[1:]] = [9, 0, 0]  # later subwords of word 0 say label 0
    assert word_predictions(logits, index, 5, "first").tolist() == labels  # its first subword decides
    assert word_predictions(logits, index, 5, "all")[0] == 0  # the mean of its subwords
    short = minilm_tokenizer(" ".join(words), truncation=True, max_length=6)["input_ids"]
    cut = word_index(minilm_tokenizer, words, short, "x", 6)
    assert cut_words(cut, 5) == 4 and word_predictions(np.eye(3)[[0] * 6], cut, 5, "first").tolist() == [0, -1, -1, -1, -1]


def test_word_index_refuses_other_tokens(minilm_tokenizer):
    from erpack.words import word_index

    ids = minilm_tokenizer("the cat sat")["input_ids"]
    with pytest.raises(InputError, match=r"doc 7 in f\.jsonl: .*first difference at token 2"):
        word_index(minilm_tokenizer, ["the", "dog", "sat"], ids, "doc 7 in f.jsonl", 512)
    with pytest.raises(InputError, match="re-encode"):
        word_index(minilm_tokenizer, ["the"], None, "doc 7 in f.jsonl", 512)


# ---- the built-in BBC token tasks (erpack.token_tasks) --------------------------------------------------


def test_truecase_and_punctuation_rules():
    from erpack.token_tasks import punctuation, truecase

    words = 'He said: "Go!" ... to the U.S. (today), 3.5 times? ok'.split()
    assert truecase(words) == ([w.lower() for w in words],
                               ["CAP", "O", "CAP", "O", "O", "O", "CAP", "O", "O", "O", "O"])
    assert punctuation(words) == (["He", "said", '"Go"', "to", "the", "U.S", "(today)", "3.5", "times", "ok"],
                                  ["O", "COMMA", "PERIOD", "O", "O", "PERIOD", "COMMA", "O", "QUESTION", "O"])


@pytest.mark.real
def test_bbc_token_tasks_are_the_bbc_articles():
    from erpack.assets import load_dataset
    from erpack.corpus import iter_corpus
    from erpack.token_tasks import load_token_dataset

    bbc = {r.id: r for r in load_dataset("bbc")}
    for name in ("bbc-truecase", "bbc-punctuation"):
        rows = load_token_dataset(name)
        assert len(rows) == len(bbc) and all(r.split == bbc[r.id].split for r in rows)
        assert all(len(r.words) == len(r.labels) and all(r.words) for r in rows)
        docs = list(iter_corpus(f"{name}:test"))
        assert [d.id for d in docs] == [r.id for r in rows if r.split == "test"]
        assert docs[0].text == " ".join(next(r for r in rows if r.id == docs[0].id).words)
    tc = load_token_dataset("bbc-truecase")[0]
    assert tc.text == " ".join(bbc[tc.id].text.split()).lower()


def test_token_metrics_leave_o_out_of_micro_f1():
    from erpack.train.metrics import token_metrics

    labels = ["O", "CAP", "X"]
    m = token_metrics([0, 1, 1, 2, 0, 0], [0, 1, 0, 2, 1, -1], labels)  # the last word was cut off: not scored
    assert m["n"] == 5 and m["accuracy"] == pytest.approx(3 / 5)
    assert m["per_label"]["CAP"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert m["micro_f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))  # tp 2 (CAP 1, X 1), fp 1, fn 1
    assert m["macro_f1"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert token_metrics([0, 0], [0, 0], labels)["micro_f1"] == 0.0  # all O: nothing tagged, nothing found
