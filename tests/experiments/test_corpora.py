"""erpack.experiments.corpora: the corpora and label files of the tables, named as earlier runs named them."""

import json

import pytest

from erpack.assets import bucket_of, load_dataset
from erpack.experiments.corpora import grid_corpus, subset_labels


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.real
def test_grid_corpus_and_its_deciles_hold_the_same_documents(tmp_path):
    path = grid_corpus(tmp_path, "bbc", (20, 5, 10))
    assert path.name == "bbc-hash-20-5-10.jsonl"
    rows = _rows(path)
    assert [sum(r["split"] == s for r in rows) for s in ("train", "validation", "test")] == [20, 5, 10]
    assert len({r["label"] for r in rows}) > 1  # sha256 order: not the first class of a file stored by class
    folded = grid_corpus(tmp_path, "bbc", (20, 5, 10), decile=3)
    assert folded.name == "bbc-hash-20-5-10-d3.jsonl"
    dealt = _rows(folded)
    assert [r["id"] for r in dealt] == [r["id"] for r in rows]
    assert all(d["split"] == "test" for d in dealt if d["split"] != "validation" and int(bucket_of(d["id"]) * 10) == 3)
    path.write_text("kept\n")  # a corpus that exists is used as it is
    assert grid_corpus(tmp_path, "bbc", (20, 5, 10)).read_text() == "kept\n"


@pytest.mark.real
def test_label_files_take_a_sha1_sample_or_the_first_n(tmp_path):
    assert subset_labels(tmp_path, "rt", {"train": None}) == "rotten_tomatoes"  # no limit: the data set itself
    first = subset_labels(tmp_path, "rt", {"train": 5, "validation": 0, "test": None}, "first")
    assert first.endswith("labels-rt-train5.jsonl")
    rows = _rows(tmp_path / "labels-rt-train5.jsonl")
    expected = [r.id for r in load_dataset("rotten_tomatoes") if r.split == "train"][:5]
    assert [r["id"] for r in rows if r["split"] == "train"] == expected
    assert not any(r["split"] == "validation" for r in rows) and set(rows[0]) == {"id", "label", "split"}
    assert subset_labels(tmp_path, "bbc", {"train": 3}, "hash").endswith("labels-bbc-train3-hash.jsonl")
