"""Batches built by length, so compute is not spent on padding, and the padding itself: token ids for
the lower stack (`pad_token_ids`), cached records for the upper stack (`pad_arrays`, `mask_from_lengths`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def length_batches(lengths: Sequence[int], batch_size: int, max_tokens: int | None = None) -> list[list[int]]:
    """Indices grouped into batches of similar length (stable order among equal lengths).

    Sorting by length, then cutting, keeps padding small; `max_tokens` caps batch_size * longest so
    long documents come in smaller batches and memory stays bounded.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches, current = [], []
    for i in order:
        longest = max(lengths[i], max((lengths[j] for j in current), default=0))
        if current and (len(current) >= batch_size or (max_tokens and longest * (len(current) + 1) > max_tokens)):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def pad_token_ids(encoded: Sequence[dict], pad_id: int, token_types: bool | None = None) -> dict[str, np.ndarray]:
    """Tokenized documents ({"input_ids": [...], "token_type_ids": [...] optional}, as erpack.tokens gives)
    right-padded to the longest: input_ids (B, T) filled with pad_id, attention_mask (B, T) with 1 on
    real tokens, and token_type_ids (B, T) (0 on padding, and where a document has none) when
    `token_types` is true; None: when the first document carries them. All int64."""
    T = max(len(e["input_ids"]) for e in encoded)
    if token_types is None:
        token_types = "token_type_ids" in encoded[0]
    batch = {"input_ids": np.full((len(encoded), T), pad_id, dtype=np.int64),  # (B, T)
             "attention_mask": np.zeros((len(encoded), T), dtype=np.int64)}  # (B, T)
    if token_types:
        batch["token_type_ids"] = np.zeros((len(encoded), T), dtype=np.int64)  # (B, T)
    for r, e in enumerate(encoded):
        n = len(e["input_ids"])
        batch["input_ids"][r, :n] = e["input_ids"]
        batch["attention_mask"][r, :n] = 1
        if token_types and "token_type_ids" in e:
            batch["token_type_ids"][r, :n] = e["token_type_ids"]
    return batch


def pad_arrays(arrays: list[np.ndarray], hidden_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-document (T_i, H) float32 arrays, right-padded to the longest: hidden (B, T, H) float32 and
    attention mask (B, T) int64 with 1 on real tokens. The one place padding is added back at batch time."""
    H = hidden_size or arrays[0].shape[1]
    T = max(a.shape[0] for a in arrays)
    hidden = np.zeros((len(arrays), T, H), dtype=np.float32)  # (B, T, H)
    mask = np.zeros((len(arrays), T), dtype=np.int64)  # (B, T)
    for i, a in enumerate(arrays):
        hidden[i, : a.shape[0]] = a
        mask[i, : a.shape[0]] = 1
    return hidden, mask


def mask_from_lengths(lengths, T: int) -> np.ndarray:
    """Attention mask int64 (B, T): 1 on the first lengths[b] positions of row b."""
    return (np.arange(T)[None, :] < np.asarray(lengths)[:, None]).astype(np.int64)
