"""A tiny random BERT folder and corpora for the Ray tests, and what they compare: records of two
caches, within the codec's step."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from tests.bench.tiny import WORDS, make_model_folder

CODEC = "int8c+zstd:3"
LAYER = 2


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory):
    import transformers

    transformers.logging.set_verbosity_error()
    return make_model_folder(tmp_path_factory.mktemp("tiny") / "tiny-bert")


def corpus_rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [{"id": f"d{i:05d}", "text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 90)))}
            for i in range(n)]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_parquet(path, rows, **rename):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({rename.get(k, k): [r[k] for r in rows] for k in rows[0]})
    pq.write_table(table, path, row_group_size=64)
    return path


def record_step(pipeline, blob, shape) -> float:
    """The largest quantization step of an int8c record (steps per block and channel)."""
    from erpack.codecs import steps
    from erpack.codecs.base import HEADER

    T, H = shape
    body = bytes(pipeline.unwrap(blob, T, H))[HEADER.size:]
    _, nb = steps.n_blocks(T, pipeline.array_codec.block)
    return float(steps.read_steps(body, np.frombuffer(body, dtype=np.uint8), nb, H, "int8c").max())


def compare_caches(a, b) -> dict:
    """Same ids (each once) and records within one quantization step: {documents, max_abs_diff,
    max_diff_in_steps}. `a`, `b`: local cache folders."""
    from erpack.codecs import Pipeline
    from erpack.store import CacheReader

    ra, rb = CacheReader(a), CacheReader(b)
    ids_a, ids_b = ra.ids(), rb.ids()
    assert len(ids_b) == len(set(ids_b)), "an id is listed twice"
    assert sorted(ids_a) == sorted(ids_b)
    pipeline = Pipeline.from_config(ra.manifest["codec"])
    worst = worst_steps = 0.0
    for doc_id in ids_a:
        x, y = ra.get(doc_id), rb.get(doc_id)
        assert x.shape == y.shape, doc_id
        step = max(record_step(pipeline, *ra.get_encoded(doc_id)), record_step(pipeline, *rb.get_encoded(doc_id)))
        diff = float(np.abs(x - y).max())
        worst, worst_steps = max(worst, diff), max(worst_steps, diff / step)
    return {"documents": len(ids_a), "max_abs_diff": worst, "max_diff_in_steps": worst_steps}
