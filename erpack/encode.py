"""Run a model's lower stack over a corpus into an activation cache (`erpack encode`).

The corpus is checked whole first (erpack.corpus), then processed in chunks of `shard_size`
documents in corpus order. Each chunk is tokenized, grouped by length into batches (little
padding), run through layers 0..k-1, and committed as one shard: the non-padding tokens of each
document, encoded by the codec pipeline. Memory holds one chunk at a time.

Resuming: a chunk whose documents are all in the cache already was committed by an earlier run and
is skipped, so running the same command again after a crash continues where it stopped. Because a
chunk's batches depend only on the chunk, the records equal those of an uninterrupted run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from itertools import islice

import numpy as np
import torch

from erpack.batching import length_batches
from erpack.corpus import Document, check_corpus, iter_corpus
from erpack.errors import InputError

DEFAULT_CODEC = "int8c+zstd:3"


@dataclass
class EncodeSummary:
    output: str
    model: str
    layer: int
    codec: str
    device: str
    documents_in_corpus: int = 0
    encoded: int = 0
    already_in_cache: int = 0
    tokens: int = 0
    truncated: int = 0
    truncated_ids: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cache_documents: int = 0
    cache_tokens: int = 0
    cache_bytes: int = 0
    removed_leftovers: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["truncated_ids"] = d["truncated_ids"][:20]
        d["documents_per_second"] = self.encoded / self.seconds if self.seconds else None
        d["tokens_per_second"] = self.tokens / self.seconds if self.seconds else None
        d["bytes_per_token"] = self.cache_bytes / self.cache_tokens if self.cache_tokens else None
        return d


def resolve_device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def default_max_length(tokenizer, config) -> int:
    """The longest input the model takes: the tokenizer's limit, capped at 512."""
    limit = getattr(tokenizer, "model_max_length", 512) or 512
    return int(min(limit, 512, getattr(config, "max_position_embeddings", 512)))


def cache_meta(loaded, layer: int, max_length: int) -> dict:
    """What the cache records about how it was made (checked again when appending or training)."""
    tok = loaded.tokenizer
    return {
        "model": loaded.identity(),
        "layer": layer,
        "max_length": max_length,
        "tokenizer": {
            "class": type(tok).__name__,
            "vocab_size": len(tok),
            "lowercase": bool(getattr(tok, "do_lower_case", False)),
            "special_tokens": True,
            "truncation": "longest_first",
        },
    }


def _chunks(docs: Iterable[Document], size: int) -> Iterator[list[Document]]:
    it = iter(docs)
    while chunk := list(islice(it, size)):
        yield chunk


def _tokenize(tokenizer, chunk: list[Document], max_length: int) -> tuple[list[dict], list[bool]]:
    """Token ids (and token types) per document, truncated to max_length, and which were cut."""
    out, cut = [], []
    for doc in chunk:
        full = tokenizer(doc.text, doc.text_pair, truncation=False, verbose=False)
        too_long = len(full["input_ids"]) > max_length
        if too_long:
            full = tokenizer(doc.text, doc.text_pair, truncation=True, max_length=max_length)
        out.append({k: full[k] for k in ("input_ids", "token_type_ids") if k in full})
        cut.append(too_long)
    return out, cut


def _pad(encoded: list[dict], rows: list[int], pad_id: int, device) -> dict:
    longest = max(len(encoded[i]["input_ids"]) for i in rows)
    batch = {"input_ids": torch.full((len(rows), longest), pad_id, dtype=torch.long),
             "attention_mask": torch.zeros((len(rows), longest), dtype=torch.long)}
    if "token_type_ids" in encoded[rows[0]]:
        batch["token_type_ids"] = torch.zeros((len(rows), longest), dtype=torch.long)
    for r, i in enumerate(rows):
        n = len(encoded[i]["input_ids"])
        batch["input_ids"][r, :n] = torch.tensor(encoded[i]["input_ids"])
        batch["attention_mask"][r, :n] = 1
        if "token_type_ids" in batch:
            batch["token_type_ids"][r, :n] = torch.tensor(encoded[i]["token_type_ids"])
    return {k: v.to(device) for k, v in batch.items()}


@torch.no_grad()
def run_lower(lower, encoded: list[dict], pad_id: int, device, batch_size: int, max_tokens: int,
              on_batch: Callable[[int, int], None] | None = None) -> list[np.ndarray]:
    """Hidden states entering layer k for each document, (tokens, hidden) float32, in input order."""
    lengths = [len(e["input_ids"]) for e in encoded]
    outputs: list[np.ndarray | None] = [None] * len(encoded)
    for rows in length_batches(lengths, batch_size, max_tokens):
        batch = _pad(encoded, rows, pad_id, device)
        hidden = lower(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))  # (B, T, H)
        hidden = hidden.float().cpu().numpy()
        for r, i in enumerate(rows):
            outputs[i] = np.ascontiguousarray(hidden[r, : lengths[i]])
        if on_batch:
            on_batch(len(rows), sum(lengths[i] for i in rows))
    return outputs


def encode_corpus(
    source: str,
    output: str,
    model: str = "minilm",
    layer: int | None = None,
    codec: str = DEFAULT_CODEC,
    max_length: int | None = None,
    batch_size: int = 32,
    max_tokens: int = 16384,
    shard_size: int = 1024,
    on_duplicate: str = "error",
    device: str | None = None,
    progress: Callable | None = None,
) -> EncodeSummary:
    """Encode `source` (JSONL, CSV or built-in data set) into the cache folder `output`.

    `layer` defaults to the middle (L // 2). `progress(total=..., desc=...)` makes a tqdm-like bar.
    """
    from erpack.codecs import Pipeline
    from erpack.models import load_model, split_model
    from erpack.store import CacheWriter

    if shard_size < 1:
        raise InputError(f"shard_size must be >= 1, got {shard_size}")
    pipeline = Pipeline.from_spec(codec)  # an unknown codec fails here, before any work
    total = check_corpus(source)
    dev = resolve_device(device)
    loaded = load_model(model, device=dev)
    k = loaded.num_layers // 2 if layer is None else layer
    if not 0 <= k <= loaded.num_layers:
        raise InputError(f"--layer must be between 0 and {loaded.num_layers} for {model}, got {k}")
    max_length = max_length or default_max_length(loaded.tokenizer, loaded.config)
    lower, _ = split_model(loaded.model, k)
    pad_id = loaded.tokenizer.pad_token_id or 0

    summary = EncodeSummary(output=str(output), model=model, layer=k, codec=pipeline.spec, device=str(dev),
                            documents_in_corpus=total)
    bar = progress(total=total, desc="encode", unit="doc") if progress else None
    start = time.perf_counter()
    seen = {"tokens": 0}  # tokens run through the lower stack so far, for the bar
    with CacheWriter(output, meta=cache_meta(loaded, k, max_length), codec=pipeline, mode="append",
                     on_duplicate=on_duplicate) as writer:
        summary.removed_leftovers = list(writer.removed)
        for chunk in _chunks(iter_corpus(source), shard_size):
            present = [writer.contains(d.id) for d in chunk]
            if all(present) and on_duplicate != "replace":  # committed by an earlier run: resume past it
                summary.already_in_cache += len(chunk)
                if bar:
                    bar.update(len(chunk))
                continue
            if any(present) and on_duplicate == "error":
                doc = chunk[present.index(True)]
                raise InputError(
                    f"{doc.where}: document {doc.id!r} is already in {output}; pass --on-duplicate skip to keep "
                    "the cached record or --on-duplicate replace to encode it again"
                )
            encoded, cut = _tokenize(loaded.tokenizer, chunk, max_length)

            def on_batch(docs, tokens):
                seen["tokens"] += tokens
                if bar:
                    bar.update(docs)
                    elapsed = time.perf_counter() - start
                    bar.set_postfix(tok_s=f"{seen['tokens'] / max(elapsed, 1e-9):.0f}", refresh=False)

            arrays = run_lower(lower, encoded, pad_id, dev, batch_size, max_tokens, on_batch)
            truncated = [d.id for d, c in zip(chunk, cut) if c]
            info = writer.commit_shard([(d.id, a) for d, a in zip(chunk, arrays)], truncated=truncated)
            summary.encoded += info["documents"]
            summary.already_in_cache += info["skipped"]
            summary.tokens += sum(a.shape[0] for a in arrays)
            summary.truncated += len(truncated)
            summary.truncated_ids.extend(truncated)
        counts = writer.manifest["counts"]
    summary.seconds = time.perf_counter() - start
    if bar:
        bar.close()
    summary.cache_documents = counts["documents"]
    summary.cache_tokens = counts["tokens"]
    summary.cache_bytes = counts["bytes"]
    return summary
