"""A tiny random BERT folder and corpora for the Ray tests."""

from __future__ import annotations

import json
import random

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


def compare_caches(a, b) -> dict:
    """Same ids, each once, and the records' largest difference (absolute and in codec steps)."""
    from erpack.cluster.parity import compare_caches as compare

    report = compare(a, b)
    assert report.same_ids and not report.shape_mismatches, report.as_dict()
    return report.as_dict()

