"""Fixtures of the pruning tests: a tiny task model trained (1 epoch, LoRA) on a tiny planted cache.

The model folder, corpus and cache come from the training tests' helpers (tests/train/conftest.py).
"""

from __future__ import annotations

import pytest

from tests.train.conftest import make_corpus, make_model_folder, write_cache, write_jsonl


@pytest.fixture(scope="session")
def tiny_task(tmp_path_factory):
    """{"root", "labels", "cache", "task_model"}: a trained tiny BERT task model split at layer 2 of 4."""
    from erpack.train import TrainConfig, train_from_cache

    root = tmp_path_factory.mktemp("prune")
    folder = make_model_folder(root / "tiny-bert")
    rows = make_corpus(n=60)
    labels = write_jsonl(root / "corpus.jsonl", rows)
    cache = write_cache(root / "cache", folder, rows, layer=1)
    out = root / "task"
    train_from_cache(cache, str(labels), mode="upper", output=out, config=TrainConfig(epochs=1, seed=0, lr=1e-3))
    return {"root": root, "labels": labels, "cache": cache, "task_model": out}
