"""Labels for training and evaluation: from a built-in data set, or a JSONL/CSV file keyed by id.

A label source is read whole into `Example(id, label, split, text, text_pair)` rows. A corpus file
that carries a `label` field is a label source too (then its texts serve the `--baseline`), and so
is a file of `id,label` rows alone. Splits: built-in data sets carry train/validation/test; a file
may give a `split` field per row, else the split is the hash of the id (`erpack.assets.split_of`),
the same split erpack uses for built-in data everywhere. `train_subset` is what `--train-limit N` keeps:
N documents picked by a seeded hash of their ids, not the first N (BBC is stored class by class).
"""

from __future__ import annotations

import csv
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

from erpack.assets import load_dataset, split_of
from erpack.corpus import iter_jsonl_objects
from erpack.errors import InputError
from erpack.tasks import TOKEN_TASK
from erpack.token_tasks import is_token_dataset

SPLITS = ("train", "validation", "test")
TASKS = ("classification", "pair-classification", "regression", TOKEN_TASK)


@dataclass(frozen=True)
class Example:
    id: str
    label: object  # str (classification) or float (regression)
    split: str
    text: str | None = None
    text_pair: str | None = None
    where: str = ""


TRAIN_SUBSET = "sha256(seed:id)"  # what results record as `train_subset`; before 2026-12-01: the first N


def train_subset(examples: list[Example], n: int | None, seed: int = 0) -> list[Example]:
    """`--train-limit n`: the n examples with the smallest sha256(f"{seed}:{id}"), kept in their original
    order. A seeded pseudo-random sample that does not depend on the corpus order (the first n of BBC, stored
    class by class, are one class) nor on which other documents the source holds; None keeps them all."""
    if n is None:
        return list(examples)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"--train-limit {n!r}: give a positive number of training documents (or leave it out)")
    if n >= len(examples):
        return list(examples)
    key = [hashlib.sha256(f"{seed}:{e.id}".encode()).digest() for e in examples]
    chosen = set(sorted(range(len(examples)), key=key.__getitem__)[:n])
    return [e for i, e in enumerate(examples) if i in chosen]


def _label(value, task: str, where: str):
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InputError(f"{where}: the row has no `label`; give every row a label (or remove it)")
    if task == "regression":
        try:
            x = float(value)
        except (TypeError, ValueError):
            raise InputError(f"{where}: label {value!r} is not a number; a regression task needs numeric labels") from None
        if not math.isfinite(x):
            raise InputError(f"{where}: label {value!r} is not finite")
        return x
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InputError(f"{where}: label must be a string or a number, got {type(value).__name__}")
    return str(value)


def id_and_split(obj: dict, where: str) -> tuple[str, str]:
    """A label row's document id and split (its `split` field, else the hash of the id)."""
    doc_id = obj.get("id")
    if doc_id is None or isinstance(doc_id, bool) or not isinstance(doc_id, str | int) or not str(doc_id).strip():
        raise InputError(f"{where}: the row has no `id` (string or integer); every label must name its document")
    split = obj.get("split") or None
    if split is not None and split not in SPLITS:
        raise InputError(f"{where}: split {split!r} is not one of {', '.join(SPLITS)}")
    return str(doc_id), split or split_of(str(doc_id))


def _row(obj: dict, task: str, where: str) -> Example:
    doc_id, split = id_and_split(obj, where)
    text = obj.get("text") or None
    pair = obj.get("text_pair") or None
    return Example(doc_id, _label(obj.get("label"), task, where), split, text, pair, where)


def _read_jsonl(path: Path, task: str) -> list[Example]:
    return [_row(obj, task, where) for obj, where in iter_jsonl_objects(path, "`id` and `label`")]


def _read_csv(path: Path, task: str) -> list[Example]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"id", "label"} <= set(reader.fieldnames):
            raise InputError(f"{path}: a CSV label file needs a header with `id` and `label` columns "
                             "(optional: split, text, text_pair)")
        return [_row(row, task, f"{path}:{n}") for n, row in enumerate(reader, start=2)]


def read_labels(source: str, task: str = "classification") -> list[Example]:
    """Every labelled row of `source` (a .jsonl/.csv file or a built-in data set name), checked whole."""
    if task not in TASKS:
        raise InputError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    if task == TOKEN_TASK:
        raise InputError("token-classification labels are read by erpack.train.word_labels.read_word_labels")
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson", ".csv"):
        if not path.is_file():
            raise InputError(f"label file {path} does not exist")
        rows = _read_csv(path, task) if suffix == ".csv" else _read_jsonl(path, task)
    elif path.exists():
        raise InputError(f"{path}: unknown label file format; use .jsonl or .csv with `id` and `label`")
    elif is_token_dataset(source):
        raise InputError(f"{source} labels each word (a built-in token task): train it with --task token-classification")
    else:
        rows = [Example(r.id, _label(r.label, task, f"{source}:{r.id}"), r.split, r.text, None, f"{source}:{r.id}")
                for r in load_dataset(source)]
    rows = unique(rows, source)
    if task == "pair-classification" and any(r.text is not None and r.text_pair is None for r in rows):
        bad = next(r for r in rows if r.text is not None and r.text_pair is None)
        raise InputError(f"{bad.where}: pair-classification rows with a `text` need a `text_pair` too")
    return rows


def unique(rows: list[Example], source: str) -> list[Example]:
    """`rows`, checked to be some and to label each id once."""
    if not rows:
        raise InputError(f"label source {source} holds no labelled rows")
    seen: dict[str, str] = {}
    for r in rows:
        if r.id in seen:
            raise InputError(f"{r.where}: id {r.id!r} already labelled at {seen[r.id]}; give each document one label")
        seen[r.id] = r.where
    return rows


def label_names(rows: list[Example], task: str) -> list[str]:
    """Class names, sorted (a class id is its index); [] for regression. Token tasks: the labels of
    every word, "O" (no tag) first if present, then sorted."""
    if task == TOKEN_TASK:
        names = sorted({lab for r in rows for lab in r.label})
        return ["O"] + [n for n in names if n != "O"] if "O" in names else names
    return [] if task == "regression" else sorted({r.label for r in rows})


def in_cache(rows: list[Example], reader, source: str, skip_missing: bool = False) -> tuple[list[Example], list[str]]:
    """Rows whose document the cache holds; a missing id is an error naming it unless skip_missing."""
    missing = [r for r in rows if r.id not in reader]
    if missing and not skip_missing:
        r = missing[0]
        raise InputError(
            f"{r.where}: document {r.id!r} is labelled in {source} but not in the cache {getattr(reader, 'location', None) or reader.path} "
            f"({len(missing)} labelled id(s) missing); encode those documents into the cache, or pass "
            "--skip-missing to train on the labelled documents the cache holds"
        )
    return [r for r in rows if r.id in reader], [r.id for r in missing]
