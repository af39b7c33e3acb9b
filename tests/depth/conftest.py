"""Fixtures of the adaptive-depth tests: the tiny BERT cache of tests/train, and a tiny ALBERT one."""

from __future__ import annotations

import pytest
import torch

from tests.train.conftest import WORDS, make_corpus, make_model_folder, write_cache, write_jsonl


def make_albert_folder(folder, seed: int = 0):
    """A tiny random ALBERT (4 virtual layers, 2 groups: virtual layers 2 and 3 share group 1) with the
    tiny BERT word-piece tokenizer (ALBERT's own is SentencePiece, and no ALBERT weights are installed)."""
    from transformers import BertTokenizerFast

    from tests.checkers import tiny_model

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS) + "\n")
    tok = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    tok.model_max_length = 64
    tok.save_pretrained(folder)
    model = tiny_model("albert", seed=seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2 and "embeddings" not in name:
                p.mul_(6.0)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(autouse=True, scope="package")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_caches(tmp_path_factory):
    """{"labels", "bert": cache, "albert": cache}: both at layer 2 of 4 on the planted corpus."""
    root = tmp_path_factory.mktemp("depth")
    rows = make_corpus(60)
    labels = write_jsonl(root / "corpus.jsonl", rows)
    bert = write_cache(root / "bert-cache", make_model_folder(root / "tiny-bert"), rows)
    albert = write_cache(root / "albert-cache", make_albert_folder(root / "tiny-albert"), rows)
    return {"root": root, "rows": rows, "labels": labels, "bert": bert, "albert": albert}
