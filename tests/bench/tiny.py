"""A tiny BERT folder (tokenizer + random weights), a labelled corpus and a cache of it, for the
bench and report tests: seconds to build, no real model needed."""

from __future__ import annotations

import json
import random

WORDS = [f"w{i}" for i in range(100)]
LAYER = 1


def make_model_folder(folder):
    from transformers import BertTokenizerFast

    from tests.checkers import tiny_model

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS) + "\n")
    tok = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    tok.model_max_length = 64
    tok.save_pretrained(folder)
    tiny_model("bert", seed=0).save_pretrained(folder)
    return folder


def write_corpus(path, n: int = 40, seed: int = 0):
    rng = random.Random(seed)
    rows = [{"id": f"d{i:03d}", "text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 40))),
             "label": "pos" if i % 2 == 0 else "neg"} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def build(root) -> dict:
    """{"model": folder, "corpus": jsonl, "cache": an int8+zstd:3 cache of the corpus at LAYER}."""
    import transformers

    from erpack.encode import encode_corpus

    transformers.logging.set_verbosity_error()
    model = make_model_folder(root / "tiny-bert")
    corpus = write_corpus(root / "corpus.jsonl")
    cache = root / "cache-int8z"
    encode_corpus(str(corpus), cache, model=str(model), layer=LAYER, codec="int8+zstd:3", batch_size=8)
    return {"root": root, "model": model, "corpus": corpus, "cache": cache}
