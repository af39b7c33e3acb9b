"""Inputs for exported graphs: padded batches from cached records, or random ones of chosen shapes.

A cached record is one document's (tokens, hidden) float32 array without padding; a batch pads them
right to the longest, with attention_mask 1 on real tokens: hidden (B, T, H) float32, mask (B, T) int64.
`real_rows` is the other way: a graph's output as the rows that count (a document's logits, or each
real token's for a token task).
"""

from __future__ import annotations

import numpy as np

from erpack.batching import pad_arrays

# (batch, lengths): batch 1 short and long, equal lengths, and padded batches with a 1-token document.
PARITY_SHAPES = [[1], [9], [5, 5], [12, 7, 1], [16, 3, 9, 16, 2]]


pad_batch = pad_arrays  # (hidden (B, T, H) float32, mask (B, T) int64) from per-document (T_i, H) arrays


def real_rows(out: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The rows of a graph's output that count, (N, C): per-document outputs (B, C) as they are; per-token
    outputs (B, T, C) on the real tokens of `mask` (B, T) only (what padding positions hold is never used)."""
    return out[mask.astype(bool)] if out.ndim == 3 else out


def random_batches(hidden_size: int, shapes=PARITY_SHAPES, max_tokens: int | None = None, seed: int = 0):
    """Padded batches of random hidden states, one per entry of `shapes` (a list of lengths)."""
    rng = np.random.default_rng(seed)
    out = []
    for lengths in shapes:
        lengths = [min(n, max_tokens) if max_tokens else n for n in lengths]
        out.append(pad_batch([rng.standard_normal((n, hidden_size)).astype(np.float32) for n in lengths], hidden_size))
    return out


def cache_records(reader, limit: int, ids=None) -> list[np.ndarray]:
    """Up to `limit` decoded records, spread evenly over the cache (or over `ids`)."""
    ids = list(ids if ids is not None else reader.ids())
    if not ids:
        return []
    step = max(1, len(ids) // limit)
    return [reader.get(doc_id) for doc_id in ids[::step][:limit]]


def cache_batches(reader, limit: int = 64, batch_size: int = 16, ids=None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Padded batches of real records (in the order read, so lengths vary within a batch)."""
    records = cache_records(reader, limit, ids)
    return [pad_batch(records[i: i + batch_size]) for i in range(0, len(records), batch_size)]


def random_token_batches(vocab_size: int, shapes=PARITY_SHAPES, with_token_types: bool = False, seed: int = 0,
                         first_id: int = 3):
    """Padded batches of random token ids (ids from first_id up, pad 0) for the lower stack."""
    rng = np.random.default_rng(seed)
    out = []
    for lengths in shapes:
        T = max(lengths)
        ids = np.zeros((len(lengths), T), dtype=np.int64)
        mask = np.zeros((len(lengths), T), dtype=np.int64)
        for i, n in enumerate(lengths):
            ids[i, :n] = rng.integers(first_id, vocab_size, n)
            mask[i, :n] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if with_token_types:
            feeds["token_type_ids"] = np.zeros_like(ids)
        out.append(feeds)
    return out
