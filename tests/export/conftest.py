"""Fixtures of the export tests: a tiny BERT model folder (with tokenizer), a cache made from it, and a
task model (random head) on disk that expects that cache.

Everything is built with CacheWriter and TaskModel directly, so the tests need neither `erpack train`
nor a real model. Session-scoped: the folder, cache and task model are made once. `tok`: a token task's
(tests/export/tokens.py), made once per test module.
"""

from __future__ import annotations

import json

import pytest
import torch

from tests.checkers import tiny_model

WORDS = [f"w{i}" for i in range(100)]
LAYER = 2
MAX_LENGTH = 32


def make_model_folder(folder, model_type: str = "bert", seed: int = 0):
    from transformers import BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS) + "\n")
    tok = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    tok.model_max_length = 64
    tok.save_pretrained(folder)
    tiny_model(model_type, seed=seed).save_pretrained(folder)
    return folder


def corpus_rows(n: int = 24, seed: int = 0, prefix: str = "d") -> list[dict]:
    import random

    rng = random.Random(seed)
    return [{"id": f"{prefix}{i:03d}", "text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 20))),
             "label": "pos" if i % 2 == 0 else "neg"} for i in range(n)]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_cache(path, model_folder, rows, layer: int = LAYER, codec: str = "int8c+zstd:3"):
    from erpack.codecs import Pipeline
    from erpack.encode import cache_meta
    from erpack.models import load_model, split_model
    from erpack.store import CacheWriter

    loaded = load_model(str(model_folder))
    lower, _ = split_model(loaded.model, layer)
    records = []
    with torch.no_grad():
        for r in rows:
            enc = loaded.tokenizer(r["text"], truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
            records.append((r["id"], lower(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids"))[0].numpy()))
    with CacheWriter(path, meta=cache_meta(loaded, layer, MAX_LENGTH), codec=Pipeline.from_spec(codec)) as w:
        w.commit_shard(records)
    return path


def make_task_model(model_folder, cache, seed: int = 1, task: str = "classification"):
    """A TaskModel (random head, eval mode) expecting `cache`, as `erpack train` would record it; a
    regression one (one output) with task="regression"."""
    from transformers import AutoModelForSequenceClassification

    from erpack.store import CacheReader
    from erpack.train import TaskModel

    torch.manual_seed(seed)
    regression = task == "regression"
    model = AutoModelForSequenceClassification.from_pretrained(str(model_folder), num_labels=1 if regression else 2,
                                                               **({"problem_type": "regression"} if regression else {}))
    model.eval()
    with CacheReader(cache) as r:
        expected = {"model": r.meta["model"], "layer": r.meta["layer"], "max_length": r.meta["max_length"],
                    "tokenizer": r.meta["tokenizer"], "codec": r.manifest["codec"], "codec_spec": r.codec.spec}
    info = {"task": task, "labels": [] if regression else ["neg", "pos"], "mode": "upper", "adapter": None,
            "layer": expected["layer"], "cache": expected}
    return TaskModel(model, info)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """{"folder", "rows", "corpus", "cache", "task_model" (folder), "tm" (TaskModel)}."""
    import transformers

    transformers.logging.set_verbosity_error()
    root = tmp_path_factory.mktemp("export")
    folder = make_model_folder(root / "tiny-bert")
    rows = corpus_rows()
    cache = write_cache(root / "cache", folder, rows)
    tm = make_task_model(folder, cache)
    tm.save(root / "task")
    return {"root": root, "folder": folder, "rows": rows, "corpus": write_jsonl(root / "corpus.jsonl", rows),
            "cache": cache, "task_model": root / "task", "tm": tm}


@pytest.fixture(scope="session")
def exported(tiny):
    """The tiny task model exported once (fp32 upper graph), with its summary."""
    from erpack.export import export_task_model

    out = tiny["root"] / "graphs" / "tiny.onnx"
    summary = export_task_model(tiny["task_model"], out, calibration_cache=tiny["cache"])
    return out, summary


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    """{"root", "folder", "rows", "docs", "corpus", "cache", "tm", "labels" (word label file)} of the tiny token
    task of tests/export/tokens.py; the cache is written by erpack.encode, so its records keep their token ids."""
    import transformers

    from erpack.encode import encode_corpus
    from tests.export.tokens import MAX_LENGTH, documents, model_folder, token_task_model, word_labels

    transformers.logging.set_verbosity_error()
    root = tmp_path_factory.mktemp("tokens")
    folder = model_folder(root / "tiny-bert")
    docs = documents()
    rows = [{"id": d.id, "text": d.text} for d in docs]
    corpus = write_jsonl(root / "corpus.jsonl", rows)
    cache = root / "cache"
    encode_corpus(str(corpus), str(cache), model=str(folder), layer=LAYER, codec="int8c+zstd:3",
                  max_length=MAX_LENGTH, batch_size=8)
    return {"root": root, "folder": folder, "rows": rows, "docs": docs, "corpus": corpus, "cache": cache,
            "tm": token_task_model(folder, cache), "labels": write_jsonl(root / "words.jsonl", word_labels(docs))}
