"""Batches built by length, so compute is not spent on padding, and padded again from cached records."""

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
