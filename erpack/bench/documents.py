"""The documents `erpack bench` scores: one split of a corpus, with their labels where it has them.

A built-in data set carries train/validation/test; a JSONL corpus may give a `split` field per row,
and a labelled row without one falls in the split of its id's hash (`erpack.assets.split_of`), as
`erpack train` splits it. By default the benchmark scores the test split when the corpus has
splits, so a corpus that lists its training documents first never yields training accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from erpack.assets import load_dataset, split_of
from erpack.corpus import Document, iter_corpus, iter_jsonl_objects
from erpack.errors import InputError

SPLITS = ("train", "validation", "test")
ALL = "all"


@dataclass
class BenchDocuments:
    """The documents to score, in corpus order, and what they are."""

    docs: list[Document]
    labels: dict[str, str]  # id -> label, for the documents that have one
    split: str  # train, validation, test, or "all" (the corpus has no splits, or all was asked for)
    split_source: str | None  # how splits were known: "built-in", "split field", "hash of the id"; None for "all"


def labels_and_splits(corpus: str, docs: list[Document]) -> tuple[dict[str, str], dict[str, str], str | None]:
    """({id: label}, {id: split}, how the splits are known) for a corpus's documents."""
    path = Path(corpus)
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        rows = {str(row.get("id")): row for row, _ in iter_jsonl_objects(path, "`id` and `text`")}
        labels, splits, by_field = {}, {}, False
        for d in docs:
            row = rows.get(d.id, {})
            if row.get("label") is not None:
                labels[d.id] = str(row["label"])
            if row.get("split"):
                splits[d.id], by_field = str(row["split"]), True
            elif d.id in labels:
                splits[d.id] = split_of(d.id)
        return labels, splits, ("split field" if by_field else "hash of the id") if splits else None
    if path.exists():  # a CSV corpus: no labels, no splits
        return {}, {}, None
    name, _, split = corpus.partition(":")
    records = load_dataset(name, split=split or None)
    return {r.id: r.label for r in records}, {r.id: r.split for r in records}, "built-in"


def choose_split(asked: str | None, splits: dict[str, str], corpus: str) -> str:
    """The split to score: the one asked for, else test when the corpus has splits, else all."""
    if asked is not None and asked not in SPLITS + (ALL,):
        raise InputError(f"--split {asked!r}: use one of {', '.join(SPLITS + (ALL,))}")
    if asked == ALL:
        return ALL
    present = set(splits.values())
    if asked is None:
        return "test" if "test" in present else ALL
    if not splits:
        raise InputError(f"--split {asked}: corpus {corpus} has no splits (no `split` field, no labels); "
                         f"drop --split or give --split {ALL}")
    if asked not in present:
        raise InputError(f"--split {asked}: corpus {corpus} holds no {asked} documents "
                         f"(it has {', '.join(s for s in SPLITS if s in present)})")
    return asked


def read_documents(corpus: str, limit: int | None, split: str | None = None) -> BenchDocuments:
    """The first `limit` documents of the chosen split of `corpus`, with their labels."""
    docs = list(iter_corpus(corpus))
    labels, splits, source = labels_and_splits(corpus, docs)
    chosen = choose_split(split, splits, corpus)
    if chosen != ALL:
        docs = [d for d in docs if splits.get(d.id) == chosen]
    docs = docs[:limit]
    return BenchDocuments(docs, {d.id: labels[d.id] for d in docs if d.id in labels}, chosen,
                          source if chosen != ALL else None)
