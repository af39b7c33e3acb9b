"""The baseline a recycled run is measured against: the whole model fine-tuned from text.

The same documents are tokenized with the cache's max_length (so a document has as many tokens as its
cached record), and trained with the same head, batch plan, seeds, epochs and schedule: only where the
computation starts differs (token ids through all L layers, every weight trainable). A token task's
texts are its words joined, which tokenize to the cached tokens (checked when its targets were made),
so the baseline trains on the same per-token targets.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from erpack.batching import pad_token_ids
from erpack.errors import InputError
from erpack.runtime.device import resolve_device
from erpack.runtime.prefetch import Prefetcher
from erpack.tokens import tokenize
from erpack.train.data import Source
from erpack.train.loop import RunResult, TrainConfig, fit, predict, score
from erpack.train.modes import load_for_cache, prepare

BASELINE_FOLDER = "baseline"  # `erpack train --baseline -o OUT` saves the baseline as OUT/baseline/


def _tokenize(tokenizer, examples, max_length: int) -> list[dict]:
    """Token ids of each example as `erpack encode` makes them (erpack.tokens), so a document has as
    many tokens as its cached record; an example without text is an error naming it."""
    for e in examples:
        if e.text is None:
            raise InputError(f"{e.where}: document {e.id!r} has no text, and --baseline tokenizes the texts; "
                             "give --labels a corpus file with `text` (and `label`) fields, or a built-in data set")
    return tokenize(tokenizer, examples, max_length)[0]


def text_source(encoded: list[dict], pad_id: int, depth: int = 4) -> Source:
    """Batches of padded token ids: (rows, (input_ids (B,T), mask (B,T), token_type_ids (B,T) or None))."""
    lengths = [len(e["input_ids"]) for e in encoded]
    state = {"wait": 0.0}

    def make(rows):
        batch = {k: torch.from_numpy(v) for k, v in pad_token_ids([encoded[i] for i in rows], pad_id).items()}
        return batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")

    def batches(plan):
        pf = Prefetcher(plan, make, depth=depth)
        try:
            yield from pf
        finally:
            state["wait"] += pf.wait_seconds

    return Source(lengths, batches, lambda: state["wait"])


def run_baseline(meta: dict, data, cfg: TrainConfig, recycled_mode: str | None = None,
                 model_override: str | None = None, device=None, progress: Callable | None = None,
                 keep: dict | None = None) -> RunResult:
    """Fine-tune the whole model from the texts of `data` (a TaskData); the test score is filled in.

    With `keep` (a dict), the trained model and its tokenizer are put there ("model", "tokenizer").
    """
    dev = device or resolve_device(cfg.device)
    loaded, model = load_for_cache(meta, data.labels, data.task, cfg.seed, model_override)
    t0 = time.perf_counter()
    encoded = {s: _tokenize(loaded.tokenizer, data.splits[s], meta["max_length"]) for s in data.splits}
    tokenize_seconds = time.perf_counter() - t0
    pad_id = loaded.tokenizer.pad_token_id or 0
    sources = {s: text_source(e, pad_id, cfg.prefetch) for s, e in encoded.items()}
    prepared = prepare(model, "full", meta["layer"])
    model.to(dev)

    def forward(inputs):
        ids, mask, tt = inputs
        kwargs = {"token_type_ids": tt} if tt is not None else {}
        return model(input_ids=ids, attention_mask=mask, **kwargs).logits  # (B, C); a token task (B, T, C)

    lr = cfg.lr_for("full", recycled_mode)
    result = fit(task=data.task, mode="full", lr=lr, cfg=cfg, params_of=prepared.model, modules=[model],
                 forward=forward, train=sources["train"], y_train=data.y["train"],
                 validation=sources.get("validation"), y_validation=data.y.get("validation"),
                 num_classes=len(data.labels), device=dev, progress=progress, desc="baseline")
    if len(data.splits.get("test", [])):
        logits = predict(sources["test"], forward, [model], cfg.eval_batch_size, dev, cfg.max_tokens)
        result.test = score(data.task, logits, data.y["test"], len(data.labels))
        result.test_logits = logits
    result.notes["tokenize_seconds"] = tokenize_seconds
    cached = data.lengths.get("train")
    if cached is not None:  # documents whose token count differs from their cached record (0 expected)
        result.notes["length_mismatches"] = int(np.sum(np.asarray(cached) != np.asarray(sources["train"].lengths)))
    if keep is not None:
        keep.update(model=model.eval(), tokenizer=loaded.tokenizer)
    return result


def run_baseline_model(reader, data, cfg: TrainConfig, recycled_mode: str | None = None,
                       model_override: str | None = None, device=None, progress: Callable | None = None):
    """run_baseline on the encoder of `reader`'s cache, keeping the model: (TaskModel, RunResult).

    The TaskModel computes from text (info "input": "text", its tokenizer saved with it): every layer
    was tuned, so a cache of the pretrained encoder does not feed it. It records the cache it was
    trained beside, whose documents, max_length and tokenizer `erpack eval` uses to score it.
    """
    from erpack.train.taskmodel import TaskModel, expected_cache_of

    kept: dict = {}
    result = run_baseline(reader.meta, data, cfg, recycled_mode, model_override, device, progress, keep=kept)
    info = {"task": data.task, "labels": data.labels, "mode": "full", "input": "text", "adapter": None,
            "layer": reader.meta["layer"], "cache": expected_cache_of(reader)}
    if data.subwords is not None:
        info["subwords"] = data.subwords
    return TaskModel(kept["model"], info, kept["tokenizer"]), result


def text_logits(tm, examples, max_length: int, batch_size: int, device, max_tokens=None) -> np.ndarray:
    """Logits (N, C) (a token task: (N, T, C)) of a text-input task model (a baseline) on the texts of `examples`."""
    encoded = _tokenize(tm.tokenizer, examples, max_length)
    source = text_source(encoded, tm.tokenizer.pad_token_id or 0)
    model = tm.model

    def forward(inputs):
        ids, mask, tt = inputs
        kwargs = {"token_type_ids": tt} if tt is not None else {}
        return model(input_ids=ids, attention_mask=mask, **kwargs).logits  # (B, C)

    return predict(source, forward, [model], batch_size, device, max_tokens)
