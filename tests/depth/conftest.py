"""A tiny BERT cache cut at layer 1 (three upper layers to stop between) and task models with exits on it."""

from __future__ import annotations

import pytest
import torch

from tests.train.conftest import make_corpus, make_model_folder, write_cache, write_jsonl

LAYER = 1
FAST = dict(batch_size=8, warmup=0.0, patience=100, lr=1e-3)


@pytest.fixture(autouse=True, scope="package")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
