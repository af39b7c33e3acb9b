"""CPU-sized corpora and label files of the built-in data sets, written once into a work folder.

    grid_corpus(work, "rt", (1000, 200, 600))            # WORK/rt-file-1000-200-600.jsonl (id, text, label, split)
    grid_corpus(work, "truecase", (150, 30, 100))        # WORK/truecase-hash-150-30-100.jsonl (id, text, words,
                                                         #   labels, split): a token task's corpus and labels
    grid_corpus(work, "rt", (1000, 200, 600), decile=3)  # ...-d3.jsonl: hash decile 3 is the test split
    subset_labels(work, "bbc", {"train": 400}, "hash")   # WORK/labels-bbc-train400-hash.jsonl (id, label, split)

Which documents: erpack.assets.subset. The names here are the ones earlier runs wrote, so a work
folder made before keeps its corpora (a file that exists is used as it is).
"""

from __future__ import annotations

import json
from pathlib import Path

from erpack.assets import Record, load_dataset, subset
from erpack.store.atomic import write_atomic
from erpack.token_tasks import load_token_dataset

DATASETS = {"rt": "rotten_tomatoes", "bbc": "bbc"}
# Token tasks (erpack.token_tasks), words and a label per word; their rows also carry the text encoded.
TOKEN_DATASETS = {"truecase": "bbc-truecase", "punctuation": "bbc-punctuation"}
# Which documents a training grid's subset takes: RT's order is mixed already (55% fresh in the first 1000
# training reviews, 58% overall); BBC's is by class, so its subsets take documents in sha256(id) order.
GRID_ORDER = {"rt": "file", "bbc": "hash", "truecase": "hash", "punctuation": "hash"}
_HASH = {"grid": "sha256", "labels": "sha1"}  # what "hash" meant in each tool's file names


def write_records(path: Path, records: list[Record], text: bool = True) -> Path:
    """records as JSONL (id, text, label, split; without text when not `text`), written atomically."""
    keys = ("id", "text", "label", "split") if text else ("id", "label", "split")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, "".join(json.dumps({k: getattr(r, k) for k in keys}) + "\n" for r in records).encode())
    return path


def write_word_records(path: Path, records: list) -> Path:
    """A token task's records (erpack.token_tasks.WordRecord) as JSONL (id, text, words, labels, split): a
    corpus for `erpack encode` and a word label file for `erpack train --task token-classification`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, "".join(json.dumps({"id": r.id, "text": r.text, "words": list(r.words),
                                           "labels": list(r.labels), "split": r.split}) + "\n"
                               for r in records).encode())
    return path


def grid_corpus(work: Path, ds: str, sizes: tuple[int, int, int], decile: int | None = None) -> Path:
    """The training grid's corpus of data set `ds` ("rt", "bbc", or a token task: "truecase",
    "punctuation"): the first (train, validation, test) `sizes` documents in GRID_ORDER; with `decile`,
    train and test re-dealt by hash decile (the same documents, so the caches are shared)."""
    order = GRID_ORDER[ds]
    path = Path(work) / f"{ds}-{order}-{'-'.join(map(str, sizes))}.jsonl"
    if decile is not None:
        path = path.with_name(f"{path.stem}-d{decile}.jsonl")
    if not path.exists():
        token = ds in TOKEN_DATASETS
        records = load_token_dataset(TOKEN_DATASETS[ds]) if token else load_dataset(DATASETS[ds])
        chosen = subset(records, dict(zip(("train", "validation", "test"), sizes)),
                        order=_HASH["grid"] if order == "hash" else order, decile=decile)
        (write_word_records if token else write_records)(path, chosen)
    return path


def subset_records(ds: str, limits: dict[str, int | None], how: str = "hash") -> list[Record]:
    """N documents of each split of `ds` (None: all): how="hash", the N with the smallest sha1(id) (a
    fixed pseudo-random sample, for data sets stored by class such as BBC); how="first", the first N."""
    return subset(load_dataset(DATASETS[ds]), limits, order=_HASH["labels"] if how == "hash" else "file")


def subset_labels(work: Path, ds: str, limits: dict[str, int | None], how: str = "hash") -> str:
    """A label file with the documents of `subset_records` (in its order), for a CPU-sized run; the data
    set's name when no limit is set."""
    if not any(limits.values()):
        return DATASETS[ds]
    tag = "-".join(f"{s}{n}" for s, n in limits.items() if n) + ("" if how == "first" else f"-{how}")
    path = Path(work) / f"labels-{ds}-{tag}.jsonl"
    if not path.exists():
        write_records(path, subset_records(ds, limits, how), text=False)
    return str(path)
