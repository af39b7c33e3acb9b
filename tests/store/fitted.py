"""A tiny fitted codec that reads token ids, for the store's tests only (the real one is `tc`): it
subtracts a per-token-id mean fitted on a sample and stores the residual as float32. Registered under
a test-only id by the `fitted_codec` fixture, and removed again after the test."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from erpack.codecs import Pipeline, registry
from erpack.codecs.base import ArrayCodec
from erpack.codecs.state import FittedState, context_of
from erpack.errors import CodecError

CODEC_ID = "test-tokmean"


@dataclass(frozen=True)
class TokenMean(ArrayCodec):
    codec_id = CODEC_ID
    tag = 250
    fitted = True
    needs_tokens = True
    description = "test only: float32 residual after a fitted per-token-id mean"

    def fit(self, records, *, context=None, seed=0):
        xs = np.concatenate([x for x, _ in records])  # (N, H)
        ids = np.concatenate([t for _, t in records])  # (N,)
        keys = np.unique(ids)
        means = np.stack([xs[ids == k].mean(0) for k in keys]).astype(np.float32)  # (K, H)
        return self.with_state(FittedState(CODEC_ID, 1, {"context": context, "seed": seed},
                                           {"ids": keys.astype(np.int64), "means": means}))

    def with_state(self, state):
        if state.codec != CODEC_ID or set(state.arrays) != {"ids", "means"}:
            raise CodecError(f"{CODEC_ID}: the state holds {state.codec} {sorted(state.arrays)}")
        return self._attach(state)

    def _mean(self, tokens: np.ndarray, H: int) -> np.ndarray:
        keys, means = self.state.arrays["ids"], self.state.arrays["means"]
        at = np.clip(np.searchsorted(keys, tokens), 0, len(keys) - 1)
        return np.where((keys[at] == tokens)[:, None], means[at], np.float32(0))  # (T, H)

    def body_size(self, T, H):
        return 4 * T * H

    def _encode_tokens(self, x, tokens):
        return (x - self._mean(tokens, x.shape[1])).astype("<f4").tobytes()

    def _decode_tokens(self, body, out, tokens):
        out[...] = np.frombuffer(body, "<f4").reshape(out.shape) + self._mean(tokens, out.shape[1])


def token_ids(records: list, seed: int = 0, high: int = 50) -> dict:
    """{id: int64 (T,)} token ids for records [(id, (T, H))]."""
    rng = np.random.default_rng(seed)
    return {d: rng.integers(0, high, len(x)) for d, x in records}


def fitted_pipe(records: list, ids: dict, meta: dict, spec: str = CODEC_ID) -> Pipeline:
    return Pipeline.from_spec(spec).fit([(x, ids[d]) for d, x in records], context=context_of(meta))


@pytest.fixture
def fitted_codec():
    """Registers TokenMean for the test, removes it after."""
    registry._REGISTRY[CODEC_ID] = TokenMean
    try:
        yield TokenMean
    finally:
        registry._REGISTRY.pop(CODEC_ID, None)
