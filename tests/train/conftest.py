"""Fixtures of the training tests: a tiny BERT saved as a model folder, and tiny caches made from it.

The cache is written with CacheWriter directly: every document is a short text of made-up words,
run through the tiny model's lower stack, so the cache and the text baseline see the same tokens.
The label is planted in the words (class 'pos' uses words w3..w40, 'neg' words w41..w80), so a
model can learn it in a few steps.
"""

from __future__ import annotations

import json
import random

import pytest
import torch

from tests.checkers import tiny_model

WORDS = [f"w{i}" for i in range(100)]
LAYER = 2


def make_model_folder(folder, seed: int = 0):
    from transformers import BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS) + "\n")
    tok = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    tok.model_max_length = 64
    tok.save_pretrained(folder)
    model = tiny_model("bert", seed=seed)
    with torch.no_grad():  # at init_range 0.02 a 32-wide model hardly mixes tokens: widen the weights
        for name, p in model.named_parameters():
            if p.dim() == 2 and "embeddings" not in name:
                p.mul_(6.0)
    model.save_pretrained(folder)
    return folder


def make_corpus(n: int = 48, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        pool = WORDS[3:40] if label == "pos" else WORDS[41:80]
        text = " ".join(rng.choice(pool) for _ in range(rng.randint(3, 12)))
        split = "train" if i < n * 2 // 3 else ("validation" if i < n * 5 // 6 else "test")
        rows.append({"id": f"d{i:03d}", "text": text, "label": label, "split": split})
    return rows


def write_cache(path, model_folder, rows: list[dict], layer: int = LAYER, codec: str = "fp32", meta_changes=None,
                plant: float = 1.0):
    """Encode `rows` through the tiny model's lower stack into a cache written with CacheWriter.

    `plant` adds +plant to the first 8 channels of every token of a 'pos' document and -plant for
    'neg' (the random tiny model mixes tokens too weakly for the words alone to be learnt quickly).
    """
    from erpack.codecs import Pipeline
    from erpack.encode import cache_meta
    from erpack.models import load_model, split_model
    from erpack.store import CacheWriter

    loaded = load_model(str(model_folder))
    lower, _ = split_model(loaded.model, layer)
    meta = cache_meta(loaded, layer, 32)
    for key, value in (meta_changes or {}).items():
        meta[key] = value
    records = []
    with torch.no_grad():
        for r in rows:
            enc = loaded.tokenizer(r["text"], truncation=True, max_length=32, return_tensors="pt")
            h = lower(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids"))[0]  # (T, H)
            h = h.numpy().copy()
            h[:, :8] += plant if r["label"] == "pos" else -plant
            records.append((r["id"], h))
    with CacheWriter(path, meta=meta, codec=Pipeline.from_spec(codec), mode="create") as w:
        w.commit_shard(records)
    return path


def write_jsonl(path, rows: list[dict]):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(autouse=True, scope="package")
def one_thread():
    """Tiny models run fastest on one thread; on a shared 2-core machine more threads only contend."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """(model folder, corpus rows, labels JSONL, fp32 cache) shared by the tests of this folder."""
    root = tmp_path_factory.mktemp("train")
    folder = make_model_folder(root / "tiny-bert")
    rows = make_corpus()
    labels = write_jsonl(root / "corpus.jsonl", rows)
    cache = write_cache(root / "cache", folder, rows)
    return {"root": root, "model": folder, "rows": rows, "labels": labels, "cache": cache}
