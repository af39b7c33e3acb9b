"""Fixtures of the adaptive-depth tests: a tiny BERT cache cut at layer 1 with task models with exits on it (early
exit), and the tiny BERT and ALBERT caches at layer 2 (ODE steps)."""

from __future__ import annotations

import pytest
import torch

from tests.train.conftest import WORDS, make_corpus, make_model_folder, one_thread, write_cache, write_jsonl  # noqa: F401 (one_thread: autouse here too)

LAYER = 1
FAST = dict(batch_size=8, warmup=0.0, patience=100, lr=1e-3)


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


@pytest.fixture(scope="session")
def tiny_exit(tmp_path_factory):
    """{"root", "model", "rows", "labels", "cache"}: tiny BERT, 48 planted documents, a layer-1 cache."""
    import transformers

    transformers.logging.set_verbosity_error()
    root = tmp_path_factory.mktemp("depth")
    folder = make_model_folder(root / "tiny-bert")
    rows = make_corpus()
    return {"root": root, "model": folder, "rows": rows, "labels": write_jsonl(root / "corpus.jsonl", rows),
            "cache": write_cache(root / "cache", folder, rows, layer=LAYER, plant=0.5)}


@pytest.fixture(scope="session")
def dact_model(tiny_exit):
    """A task model trained with --early-exit dact (upper mode), saved: (folder, TrainSummary)."""
    from erpack.depth.training import ExitSpec
    from erpack.train import TrainConfig, train_from_cache

    out = tiny_exit["root"] / "tm-dact"
    s = train_from_cache(tiny_exit["cache"], str(tiny_exit["labels"]), mode="upper", output=out,
                         early_exit=ExitSpec("dact"), config=TrainConfig(epochs=2, **FAST))
    return out, s


@pytest.fixture(scope="session")
def tiny_caches(tmp_path_factory):
    """{"labels", "bert": cache, "albert": cache}: both at layer 2 of 4 on the planted corpus."""
    root = tmp_path_factory.mktemp("depth")
    rows = make_corpus(60)
    labels = write_jsonl(root / "corpus.jsonl", rows)
    bert = write_cache(root / "bert-cache", make_model_folder(root / "tiny-bert"), rows)
    albert = write_cache(root / "albert-cache", make_albert_folder(root / "tiny-albert"), rows)
    return {"root": root, "rows": rows, "labels": labels, "bert": bert, "albert": albert}
