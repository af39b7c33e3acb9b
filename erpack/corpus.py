"""Corpora to encode: JSONL, CSV, or a built-in data set, read as `Document(id, text, text_pair)`.

A corpus is checked whole before anything is encoded (`check_corpus`): a malformed line, a missing
field, an empty text or a repeated id is an error naming the file and the line, so a bad file never
leaves half its documents in a cache. Reading is streamed: memory holds the ids, not the texts.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from erpack.errors import InputError

MAX_ID_BYTES = 1024


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    text_pair: str | None = None
    where: str = ""  # "file:line" for messages


def _check(doc_id, text, pair, where: str) -> Document:
    if doc_id is None or (isinstance(doc_id, str) and not doc_id.strip()):
        raise InputError(f"{where}: the document has no `id`; give every document a unique id")
    if not isinstance(doc_id, str | int) or isinstance(doc_id, bool):
        raise InputError(f"{where}: `id` must be a string or an integer, got {type(doc_id).__name__}")
    doc_id = str(doc_id)
    if len(doc_id.encode("utf-8")) > MAX_ID_BYTES:
        raise InputError(f"{where}: id is longer than {MAX_ID_BYTES} bytes; use a shorter id")
    if not isinstance(text, str):
        raise InputError(f"{where}: document {doc_id!r} has no `text` string")
    if not text.strip():
        raise InputError(f"{where}: document {doc_id!r} has an empty text; remove it or give it text")
    if pair is not None and (not isinstance(pair, str) or not pair.strip()):
        raise InputError(f"{where}: document {doc_id!r} has an empty or non-string `text_pair`")
    return Document(doc_id, text, pair, where)


def iter_jsonl_objects(path: Path, fields: str) -> Iterator[tuple[dict, str]]:
    """(object, "file:line") for each non-blank line; a malformed line is an error naming it."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{where}: malformed JSON ({exc.msg} at column {exc.colno}); fix or remove the line") from None
            if not isinstance(obj, dict):
                raise InputError(f"{where}: each line must be a JSON object with {fields}")
            yield obj, where


def _jsonl(path: Path) -> Iterator[Document]:
    for obj, where in iter_jsonl_objects(path, "`id` and `text`"):
        yield _check(obj.get("id"), obj.get("text"), obj.get("text_pair"), where)


def _csv(path: Path) -> Iterator[Document]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "text" not in reader.fieldnames:
            raise InputError(f"{path}: a CSV corpus needs a header with a `text` column (and `id`, optional `text_pair`)")
        for number, row in enumerate(reader, start=2):
            where = f"{path}:{number}"
            doc_id = row.get("id") if "id" in reader.fieldnames else str(number - 2)
            if None in row:
                raise InputError(f"{where}: more fields than the header has; quote fields that hold commas")
            yield _check(doc_id, row.get("text"), row.get("text_pair") or None, where)


def _builtin(spec: str) -> Iterator[Document]:
    from erpack.assets import load_dataset

    name, _, split = spec.partition(":")
    for r in load_dataset(name, split=split or None):
        yield Document(r.id, r.text, None, f"{name}:{r.id}")


def iter_corpus(source: str) -> Iterator[Document]:
    """Documents of `source`: a .jsonl/.json file, a .csv file, or a built-in data set name
    (`rotten_tomatoes`, `bbc`, optionally with a split: `bbc:test`)."""
    path = Path(source)
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        if not path.is_file():
            raise InputError(f"corpus file {path} does not exist")
        return _jsonl(path)
    if path.suffix.lower() == ".csv":
        if not path.is_file():
            raise InputError(f"corpus file {path} does not exist")
        return _csv(path)
    if path.exists():
        raise InputError(f"{path}: unknown corpus format; use .jsonl (id, text, text_pair) or .csv")
    return _builtin(source)


def check_corpus(source: str) -> int:
    """Read the whole corpus once; raise on the first bad line or repeated id; return the count."""
    seen: dict[str, str] = {}
    for doc in iter_corpus(source):
        if doc.id in seen:
            raise InputError(f"{doc.where}: id {doc.id!r} already used at {seen[doc.id]}; ids must be unique")
        seen[doc.id] = doc.where
    if not seen:
        raise InputError(f"corpus {source} holds no documents")
    return len(seen)
