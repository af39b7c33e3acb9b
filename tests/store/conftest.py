"""Fixtures of the store tests: a meta dict, codec pipelines, record factories, folder snapshots."""

from __future__ import annotations

import numpy as np
import pytest

from erpack.codecs import Pipeline

HIDDEN = 8


def make_meta(hidden: int = HIDDEN, **changes) -> dict:
    meta = {
        "model": {"name": "tiny-bert", "model_type": "bert", "weights_sha256": "ab" * 32, "num_layers": 4,
                  "hidden_size": hidden},
        "layer": 2,
        "tokenizer": {"name": "tiny-bert", "lowercase": True},
        "max_length": 16,
    }
    for dotted, value in changes.items():
        *head, last = dotted.split("__")
        d = meta
        for key in head:
            d = d[key]
        d[last] = value
    return meta


def pipe(spec: str = "fp32"):
    return Pipeline.from_spec(spec)


def records(n: int, seed: int = 0, prefix: str = "doc", hidden: int = HIDDEN, start: int = 0) -> list:
    rng = np.random.default_rng(seed)
    return [(f"{prefix}-{start + i}", rng.standard_normal((int(rng.integers(1, 6)), hidden)).astype(np.float32))
            for i in range(n)]


def snapshot(folder) -> dict:
    """{path relative to the folder: bytes} of every file in it (the id index lives in index/)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def meta():
    return make_meta()


from tests.store.fitted import fitted_codec  # noqa: E402,F401  (the fixture, for every store test)
