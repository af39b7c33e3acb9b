"""Fit a codec with fitted state on a calibration sample: what `erpack compress` and `erpack encode` share.

A fitted codec (`Pipeline.fitted`, e.g. `tc`) learns from a sample of records (each a float32 (T, H)
array with its token ids) what every record of a cache shares, and codes with that state. Where the
sample comes from:

- `erpack compress SRC --codec SPEC`: `sample_ids` picks `fit_docs` documents of SRC, the same ones
  for the same ids and seed whatever their order (a hash of seed and id ranks them);
- `erpack encode --codec SPEC`: the first `fit_docs` documents of the corpus (a stream has no
  other sample to give before its first shard), kept in memory, then written.

Either way the state records the cache's model and layer (`context_of(meta)`): a reader refuses a
state fitted on another. Fitting is deterministic for a given sample and seed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from erpack.codecs import Pipeline
from erpack.codecs.state import context_of
from erpack.errors import InputError

DEFAULT_FIT_DOCS = 2000  # documents a fitted codec is fitted on (all of them when fewer)


def check_fit_docs(fit_docs: int) -> int:
    if not isinstance(fit_docs, int) or fit_docs < 1:
        raise InputError(f"fit_docs (--fit-docs) must be an integer >= 1, got {fit_docs!r}")
    return fit_docs


def sample_ids(ids: Sequence[str], n: int, seed: int = 0) -> list[str]:
    """`n` of `ids` (all of them when fewer), chosen by the sha256 of (seed, id): the same ids and seed
    give the same sample in any order; returned in the order of `ids`."""
    check_fit_docs(n)
    if n >= len(ids):
        return list(ids)
    rank = sorted(ids, key=lambda d: hashlib.sha256(f"{seed}\0{d}".encode()).digest())
    chosen = set(rank[:n])
    return [d for d in ids if d in chosen]


def fit_pipeline(pipeline: Pipeline, records: Sequence, meta: dict | None, seed: int = 0) -> Pipeline:
    """`pipeline` fitted on `records` [(x float32 (T, H), token ids (T,) or None)] with the context of
    the cache `meta` describes (model, layer); a pipeline that fits nothing is returned as it is. A
    codec that needs token ids and a sample without them: InputError saying where to get them."""
    if not pipeline.fitted:
        return pipeline
    if not records:
        raise InputError(f"codec {pipeline.spec} is fitted on a sample of documents, and there are none to fit on")
    if pipeline.needs_tokens and any(t is None for _, t in records):
        missing = sum(t is None for _, t in records)
        raise InputError(f"codec {pipeline.spec} fits and codes with each record's token ids, and {missing} of the "
                         f"{len(records)} sample records have none (raw activations, or a cache written by an "
                         f"erpack before token ids): re-encode the corpus with `erpack encode`, which stores them")
    return pipeline.fit(records, context=context_of(meta or {}), seed=seed)


def fit_on_cache(pipeline: Pipeline, reader, fit_docs: int = DEFAULT_FIT_DOCS, seed: int = 0,
                 ids: Sequence[str] | None = None) -> Pipeline:
    """`pipeline` fitted on `fit_docs` documents of an open CacheReader (chosen by `sample_ids` among
    `ids`, default every id of the cache), each decoded with its token ids."""
    if not pipeline.fitted:
        return pipeline
    chosen = sample_ids(reader.ids() if ids is None else list(ids), fit_docs, seed)
    records = [(reader.get(d), reader.get_tokens(d)) for d in chosen]
    return fit_pipeline(pipeline, records, reader.meta, seed)


def state_bytes(pipeline: Pipeline) -> int:
    """Bytes of the pipeline's fitted state file (0 for a codec that fits nothing)."""
    state = pipeline.state
    return 0 if state is None else len(state.to_bytes())


def with_state_bits(bits_per_value: float, state_size: int, values: int) -> float:
    """Bits per value once a state of `state_size` bytes is shared by `values` stored values."""
    return bits_per_value + 8.0 * state_size / values if values else float("nan")
