"""Running the lower stack (embeddings and layers 0..k-1) over tokenized documents, in PyTorch or ONNX.

Both runners take documents as erpack.tokens gives them, group them by length (little padding),
pad them (erpack.batching.pad_token_ids), run each batch and give back, per document in input order,
the float32 (tokens, hidden) array of its non-padding tokens: what a cache record holds.

    arrays = run_lower(lower, encoded, pad_id, device)            # a LowerStack in PyTorch
    arrays = run_lower_onnx(session, encoded, pad_id)             # an erpack.export.session.Session
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from erpack.batching import length_batches, pad_token_ids

BATCH_SIZE = 32
MAX_TOKENS = 16384


def wants_token_types(model) -> bool:
    """Whether the encoder has token-type embeddings (BERT-like: yes; RoBERTa-like with one type, MPNet: no).
    `model`: a transformers model, a split stack or FullStack (through its `view`), or a config."""
    view = getattr(model, "view", model)
    config = getattr(view, "config", view)
    return getattr(config, "type_vocab_size", 0) > 1


def _run_batches(encoded: Sequence[dict], step: Callable[[list[dict]], np.ndarray], batch_size: int,
                 max_tokens: int | None, on_batch: Callable[[int, int], None] | None) -> list[np.ndarray]:
    """step(documents) -> hidden (B, T, H) per length-grouped batch, cut back to each document's tokens."""
    lengths = [len(e["input_ids"]) for e in encoded]
    outputs: list[np.ndarray | None] = [None] * len(encoded)
    for rows in length_batches(lengths, batch_size, max_tokens):
        hidden = step([encoded[i] for i in rows])  # (B, T, H)
        for r, i in enumerate(rows):
            outputs[i] = np.ascontiguousarray(hidden[r, : lengths[i]], dtype=np.float32)
        if on_batch:
            on_batch(len(rows), sum(lengths[i] for i in rows))
    return outputs


def run_lower(lower, encoded: Sequence[dict], pad_id: int, device="cpu", batch_size: int = BATCH_SIZE,
              max_tokens: int | None = MAX_TOKENS, on_batch: Callable[[int, int], None] | None = None) -> list[np.ndarray]:
    """Hidden states entering layer k per document, (tokens, hidden) float32, from a PyTorch lower stack
    (called as lower(input_ids, attention_mask, token_type_ids or None)) on `device`.
    on_batch(documents, tokens) is called after each batch."""
    import torch

    def step(docs):
        batch = {k: torch.from_numpy(v).to(device) for k, v in pad_token_ids(docs, pad_id).items()}
        with torch.no_grad():
            hidden = lower(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))  # (B, T, H)
        return hidden.float().cpu().numpy()

    return _run_batches(encoded, step, batch_size, max_tokens, on_batch)


def run_lower_onnx(session, encoded: Sequence[dict], pad_id: int, batch_size: int = BATCH_SIZE,
                   max_tokens: int | None = MAX_TOKENS, on_batch: Callable[[int, int], None] | None = None) -> list[np.ndarray]:
    """The same from an exported lower graph: `session.run(feeds)[0]` is hidden_states (B, T, H); the
    feeds are the inputs `session.input_names` lists (token_type_ids zero where a document has none)."""
    names = set(session.input_names)

    def step(docs):
        feeds = pad_token_ids(docs, pad_id, token_types="token_type_ids" in names)
        return session.run({k: v for k, v in feeds.items() if k in names})[0]

    return _run_batches(encoded, step, batch_size, max_tokens, on_batch)
