"""Corpora to encode: JSONL, CSV, or a built-in data set, read as `Document(id, text, text_pair)`.

A corpus is checked whole before anything is encoded (`check_corpus`): a malformed line, a missing
field, an empty text or a repeated id is an error naming the file and the line, so a bad file never
leaves half its documents in a cache. Bytes that are not UTF-8 are an error naming the file and
line too. Reading is streamed: memory holds the ids, not the texts.

Ids come from the `id` field or column, or another one named by `id_column`. A CSV without an id
column gets ids made of the file's stem and the row number (`reviews:0`, `reviews:1`, ...), so two
such files do not collide; `check_corpus` returns a warning saying so (the ids change if rows move).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from erpack.assets import load_dataset
from erpack.errors import InputError

MAX_ID_BYTES = 1024


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    text_pair: str | None = None
    where: str = ""  # "file:line" for messages


@dataclass
class CorpusCheck:
    """What check_corpus found: the number of documents and warnings (one sentence each)."""

    documents: int
    warnings: list[str] = field(default_factory=list)


def _check(doc_id, text, pair, where: str, id_field: str = "id") -> Document:
    if doc_id is None or (isinstance(doc_id, str) and not doc_id.strip()):
        raise InputError(f"{where}: the document has no `{id_field}`; give every document a unique id")
    if not isinstance(doc_id, str | int) or isinstance(doc_id, bool):
        raise InputError(f"{where}: `{id_field}` must be a string or an integer, got {type(doc_id).__name__}")
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


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line of a UTF-8 file, line ends kept, a leading BOM dropped; a
    line that is not UTF-8 is an error naming the file, the line and the byte."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"{path}:{number}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} of the "
                    f"line); save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`) or fix the line"
                ) from None
            yield number, line.removeprefix("\ufeff") if number == 1 else line


def iter_jsonl_objects(path: Path, fields: str) -> Iterator[tuple[dict, str]]:
    """(object, "file:line") for each non-blank line; a malformed line is an error naming it."""
    for number, line in iter_lines(path):
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


def _jsonl(path: Path, id_column: str | None) -> Iterator[Document]:
    key = id_column or "id"
    for obj, where in iter_jsonl_objects(path, f"`{key}` and `text`"):
        yield _check(obj.get(key), obj.get("text"), obj.get("text_pair"), where, key)


def _generated_ids(path: Path, fieldnames, id_column: str | None) -> bool:
    """Whether a CSV with this header gets generated ids; an id_column it lacks is an error."""
    if id_column is not None and id_column not in fieldnames:
        raise InputError(f"{path}: no column {id_column!r} for ids (--id-column); the header has {list(fieldnames)}")
    return id_column is None and "id" not in fieldnames


def _csv(path: Path, id_column: str | None) -> Iterator[Document]:
    reader = csv.DictReader(line for _, line in iter_lines(path))
    if not reader.fieldnames or "text" not in reader.fieldnames:
        raise InputError(f"{path}: a CSV corpus needs a header with a `text` column (and `id`, optional `text_pair`)")
    generate, key = _generated_ids(path, reader.fieldnames, id_column), id_column or "id"
    for number, row in enumerate(reader, start=2):
        where = f"{path}:{number}"
        doc_id = f"{path.stem}:{number - 2}" if generate else row.get(key)
        if None in row:
            raise InputError(f"{where}: more fields than the header has; quote fields that hold commas")
        yield _check(doc_id, row.get("text"), row.get("text_pair") or None, where, key)


def _builtin(spec: str) -> Iterator[Document]:
    name, _, split = spec.partition(":")
    for r in load_dataset(name, split=split or None):
        yield Document(r.id, r.text, None, f"{name}:{r.id}")


def iter_corpus(source: str, id_column: str | None = None) -> Iterator[Document]:
    """Documents of `source`: a .jsonl/.json file, a .csv file, or a built-in data set name
    (`rotten_tomatoes`, `bbc`, optionally with a split: `bbc:test`). `id_column`: the field or
    column holding ids (default `id`; files only)."""
    path = Path(source)
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        if not path.is_file():
            raise InputError(f"corpus file {path} does not exist")
        return _jsonl(path, id_column)
    if path.suffix.lower() == ".csv":
        if not path.is_file():
            raise InputError(f"corpus file {path} does not exist")
        return _csv(path, id_column)
    if path.exists():
        raise InputError(f"{path}: unknown corpus format; use .jsonl (id, text, text_pair) or .csv")
    if id_column is not None:
        raise InputError(f"{source}: a built-in data set has its own ids; --id-column applies to .jsonl and .csv files")
    return _builtin(source)


def check_corpus(source: str, id_column: str | None = None) -> CorpusCheck:
    """Read the whole corpus once; raise on the first bad line or repeated id; return the count and
    warnings (generated ids)."""
    seen: dict[str, str] = {}
    for doc in iter_corpus(source, id_column):
        if doc.id in seen:
            raise InputError(f"{doc.where}: id {doc.id!r} already used at {seen[doc.id]}; ids must be unique")
        seen[doc.id] = doc.where
    if not seen:
        raise InputError(f"corpus {source} holds no documents")
    warnings = []
    path = Path(source)
    if path.suffix.lower() == ".csv" and _generated_ids(path, _header(path), id_column):
        warnings.append(
            f"{path} has no `id` column: its documents got the ids {path.stem}:0 to {path.stem}:{len(seen) - 1} "
            f"(file stem and row), which change if rows are added, removed or reordered; add an `id` column "
            f"or pass --id-column NAME"
        )
    return CorpusCheck(len(seen), warnings)


def _header(path: Path) -> list[str]:
    return next(csv.reader(line for _, line in iter_lines(path)), [])
