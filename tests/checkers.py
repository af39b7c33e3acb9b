"""Checkers shared by the test suite: parity of tensors on real tokens, tiny model factories."""

from __future__ import annotations

import torch

# Tiny random configs of the architectures the other tests use (every other one: tests/models/sweep.py).
TINY = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=64, vocab_size=120,
            max_position_embeddings=64)
TINY_CONFIGS = {
    "bert": dict(TINY),
    "roberta": dict(TINY, pad_token_id=1),
    "xlm-roberta": dict(TINY, pad_token_id=1),
    "camembert": dict(TINY, pad_token_id=1),
    "electra": dict(TINY, embedding_size=16),  # embeddings_project maps 16 -> 32
    "distilbert": dict(dim=32, n_layers=4, n_heads=4, hidden_dim=64, vocab_size=120, max_position_embeddings=64),
    "deberta": dict(TINY, relative_attention=True, max_relative_positions=16, pos_att_type=["c2p", "p2c"]),
    "deberta-v2": dict(TINY, relative_attention=True, position_buckets=8, max_relative_positions=32,
                       pos_att_type=["p2c", "c2p"], norm_rel_ebd="layer_norm", conv_kernel_size=3, conv_act="gelu",
                       share_att_key=True),
    "mpnet": dict(TINY, relative_attention_num_buckets=32),
}


def tiny_model(model_type: str, num_labels: int | None = None, seed: int = 0):
    """A randomly initialised tiny model of `model_type` in eval mode (base, or with a classification head);
    architectures beyond TINY_CONFIGS take the sweep's tiny config (tests/models/sweep.py)."""
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    if model_type not in TINY_CONFIGS:
        from tests.models.sweep import tiny_model as sweep_tiny_model

        return sweep_tiny_model(model_type, num_labels=num_labels, seed=seed)
    torch.manual_seed(seed)
    config = AutoConfig.for_model(model_type, **TINY_CONFIGS[model_type])
    if num_labels is None:
        model = AutoModel.from_config(config)
    else:
        config.num_labels = num_labels
        model = AutoModelForSequenceClassification.from_config(config)
    return model.eval()


def padded_batch(lengths: list[int], vocab_size: int = 120, seed: int = 0, pad_id: int = 0):
    """Random token ids right-padded to the longest length, with the matching attention mask."""
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    ids = torch.full((len(lengths), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(lengths), T), dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(3, vocab_size, (n,), generator=g)
        mask[i, :n] = 1
    return ids, mask


def max_diff_on_tokens(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    """Largest |a - b| over the non-padding tokens of (B, T, H) tensors (padding rows are undefined)."""
    keep = mask.bool()
    return (a[keep] - b[keep]).abs().max().item()


class Bars:
    """A progress factory as the CLI passes one (`progress(total=..., desc=..., unit=...)` -> a tqdm-like
    bar): records each bar's descriptions, total, count and whether it was closed."""

    def __init__(self):
        self.bars: list[dict] = []

    def __call__(self, total=None, desc=None, unit=None, **kw):
        record = {"desc": desc, "descriptions": [desc], "total": total, "done": 0, "closed": False}
        self.bars.append(record)
        return _Bar(record)


class _Bar:
    def __init__(self, record: dict):
        self.record = record

    @property
    def total(self):
        return self.record["total"]

    @total.setter
    def total(self, n):
        self.record["total"] = n

    def update(self, n=1):
        self.record["done"] += n

    def set_description(self, desc, refresh=True):
        self.record["descriptions"].append(desc)

    def set_postfix(self, *a, **kw):
        pass

    def close(self):
        self.record["closed"] = True


def minilm_reviews_cache(folder, sizes: dict, codec: str = "int8c+zstd:3", max_length: int = 64):
    """(corpus, cache): the first sizes[split] Rotten Tomatoes reviews of each split as a labelled corpus
    (id, text, label, split per line) in `folder`, and its real MiniLM k = 3 cache made by `erpack encode`."""
    import json

    from erpack.assets import load_dataset
    from erpack.cli import main

    rows = []
    for r in load_dataset("rotten_tomatoes"):
        if sum(x["split"] == r.split for x in rows) < sizes[r.split]:
            rows.append({"id": r.id, "text": r.text, "label": r.label, "split": r.split})
    corpus, cache = folder / "rt.jsonl", folder / "cache"
    corpus.write_text("".join(json.dumps(x) + "\n" for x in rows))
    assert main(["encode", str(corpus), "-o", str(cache), "--model", "minilm", "--layer", "3", "--codec", codec,
                 "--max-length", str(max_length)]) == 0
    return corpus, cache


def minilm_truecase_cache(folder, sizes: dict, every: int):
    """(chosen, cache): every `every`-th BBC truecasing document (erpack.token_tasks) until sizes[split] of each
    split, written as a corpus (id, text) in `folder`, and its real MiniLM k = 3 cache (max_length 64) made by
    `erpack encode`; the labels come from the built-in source `bbc-truecase` (train with --skip-missing)."""
    import json

    from erpack.cli import main
    from erpack.token_tasks import load_token_dataset

    chosen = []
    for r in load_token_dataset("bbc-truecase")[::every]:
        if sum(x.split == r.split for x in chosen) < sizes[r.split]:
            chosen.append(r)
    corpus, cache = folder / "tc.jsonl", folder / "cache"
    corpus.write_text("".join(json.dumps({"id": r.id, "text": r.text}) + "\n" for r in chosen))
    assert main(["encode", str(corpus), "-o", str(cache), "--model", "minilm", "--layer", "3", "--max-length", "64"]) == 0
    return chosen, cache
