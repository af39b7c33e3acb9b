"""Corpora to encode: JSONL, CSV, Parquet, or a built-in data set, read as `Document(id, text, text_pair)`.

A corpus is checked whole before anything is encoded (`check_corpus`): a malformed line, a missing
field, an empty text or a repeated id is an error naming the file and the line, so a bad file never
leaves half its documents in a cache. Bytes that are not UTF-8 are an error naming the file and
line too. Reading is streamed: memory holds the ids, not the texts.

A corpus is one file, a folder (every .jsonl/.json/.ndjson, .csv or .parquet file under it, one
format, in name order) or a glob (`parts/*.parquet`). Ids, texts and second texts come from the
fields or columns `id`, `text` and `text_pair`, or others named by `Columns` (the CLI's --id-column,
--text-column, --text-pair-column). A CSV without an id column gets ids made of the file's stem and
the row number (`reviews:0`, `reviews:1`, ...), so two such files do not collide; `check_corpus`
returns a warning saying so (the ids change if rows move). Parquet needs pyarrow (the `scale` extra),
imported only when a Parquet file is read; a Parquet file must have its id column.

A corpus at a URL (`s3://bucket/corpus/`, `memory://c.jsonl`, ...) is read through fsspec the same
way, with `storage_options` for its file system (credentials and endpoint otherwise come from the
environment, AWS_* for S3): a file, a folder (every corpus file under it) or a glob.
"""

from __future__ import annotations

import csv
import glob
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from erpack.assets import load_dataset
from erpack.errors import InputError
from erpack.store.location import is_remote, is_url, open_location
from erpack.token_tasks import is_token_dataset, load_token_dataset

MAX_ID_BYTES = 1024
FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet",
           ".pq": "parquet"}


@dataclass(frozen=True)
class Columns:
    """The fields (JSONL) or columns (CSV, Parquet) holding a document's id, text and optional second
    text. `id` None means "id", and lets a CSV without that column get generated ids."""

    id: str | None = None
    text: str = "text"
    text_pair: str | None = None  # None: "text_pair" when the file has it

    @property
    def id_key(self) -> str:
        return self.id or "id"

    @property
    def pair_key(self) -> str:
        return self.text_pair or "text_pair"

    @classmethod
    def of(cls, id_column: str | None = None, text_column: str | None = None,
           text_pair_column: str | None = None) -> Columns:
        for flag, name in (("--id-column", id_column), ("--text-column", text_column),
                           ("--text-pair-column", text_pair_column)):
            if name is not None and not name.strip():
                raise InputError(f"{flag} must name a field or column, got an empty name")
        return cls(id_column, text_column or "text", text_pair_column)

    def missing(self, where, names) -> None:
        """Raise naming `where` if the columns `names` lacks one this corpus needs (the id column is
        checked by the caller, CSV ids being optional)."""
        names = list(names)
        if self.text not in names:
            flag = " (--text-column)" if self.text != "text" else "; pass --text-column NAME for another one"
            raise InputError(f"{where}: no column {self.text!r} for texts{flag}; the file has columns {names}")
        if self.text_pair is not None and self.text_pair not in names:
            raise InputError(f"{where}: no column {self.text_pair!r} for second texts (--text-pair-column); the "
                             f"file has columns {names}")


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    text_pair: str | None = None
    where: str = ""  # "file:line" for messages


@dataclass(frozen=True)
class RemoteFile:
    """A corpus file at a URL, read through its fsspec file system; named by its URL in messages."""

    url: str
    path: str  # the path in the file system
    fs: object = field(repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def stem(self) -> str:
        return Path(self.name).stem

    def open(self, mode: str = "rb"):
        return self.fs.open(self.path, mode)

    def __str__(self) -> str:
        return self.url


@dataclass
class CorpusCheck:
    """What check_corpus found: the number of documents and warnings (one sentence each)."""

    documents: int
    warnings: list[str] = field(default_factory=list)


def _check(doc_id, text, pair, where: str, id_field: str = "id", text_field: str = "text",
           pair_field: str = "text_pair") -> Document:
    if doc_id is None or (isinstance(doc_id, str) and not doc_id.strip()):
        raise InputError(f"{where}: the document has no `{id_field}`; give every document a unique id")
    if not isinstance(doc_id, str | int) or isinstance(doc_id, bool):
        raise InputError(f"{where}: `{id_field}` must be a string or an integer, got {type(doc_id).__name__}")
    doc_id = str(doc_id)
    if len(doc_id.encode("utf-8")) > MAX_ID_BYTES:
        raise InputError(f"{where}: id is longer than {MAX_ID_BYTES} bytes; use a shorter id")
    if not isinstance(text, str):
        raise InputError(f"{where}: document {doc_id!r} has no `{text_field}` string")
    if not text.strip():
        raise InputError(f"{where}: document {doc_id!r} has an empty text; remove it or give it text")
    if pair is not None and (not isinstance(pair, str) or not pair.strip()):
        raise InputError(f"{where}: document {doc_id!r} has an empty or non-string `{pair_field}`")
    return Document(doc_id, text, pair, where)


def _open_binary(path):
    return path.open("rb") if isinstance(path, RemoteFile) else open(path, "rb")


def iter_lines(path) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line of a UTF-8 file (a path or a RemoteFile), line ends kept, a
    leading BOM dropped; a line that is not UTF-8 is an error naming the file, the line and the byte."""
    with _open_binary(path) as f:
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


def check_document(doc_id, text, pair, where: str, cols: Columns) -> Document:
    """A Document from one row's values, or an InputError naming `where` and the field at fault."""
    return _check(doc_id, text, pair, where, cols.id_key, cols.text, cols.pair_key)


def _jsonl(path: Path, cols: Columns) -> Iterator[Document]:
    key = cols.id_key
    for obj, where in iter_jsonl_objects(path, f"`{key}` and `{cols.text}`"):
        if cols.text_pair is not None and cols.text_pair not in obj:
            raise InputError(f"{where}: no field {cols.text_pair!r} for the second text (--text-pair-column)")
        yield check_document(obj.get(key), obj.get(cols.text), obj.get(cols.pair_key), where, cols)


def _generated_ids(path: Path, fieldnames, id_column: str | None) -> bool:
    """Whether a CSV with this header gets generated ids; an id_column it lacks is an error."""
    if id_column is not None and id_column not in fieldnames:
        raise InputError(f"{path}: no column {id_column!r} for ids (--id-column); the header has {list(fieldnames)}")
    return id_column is None and "id" not in fieldnames


def _csv(path: Path, cols: Columns) -> Iterator[Document]:
    reader = csv.DictReader(line for _, line in iter_lines(path))
    if not reader.fieldnames:
        raise InputError(f"{path}: a CSV corpus needs a header with a `{cols.text}` column (and `id`, optional "
                         f"`text_pair`)")
    cols.missing(path, reader.fieldnames)
    generate, key = _generated_ids(path, reader.fieldnames, cols.id), cols.id_key
    for number, row in enumerate(reader, start=2):
        where = f"{path}:{number}"
        doc_id = f"{path.stem}:{number - 2}" if generate else row.get(key)
        if None in row:
            raise InputError(f"{where}: more fields than the header has; quote fields that hold commas")
        yield check_document(doc_id, row.get(cols.text), row.get(cols.pair_key) or None, where, cols)


def pyarrow_parquet():
    """pyarrow.parquet, or an InputError naming the extra that installs it."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError("reading Parquet needs pyarrow: pip install 'erpack[scale]' (or pip install pyarrow)"
                         ) from None
    return pq


def parquet_columns(path, names, cols: Columns) -> list[str]:
    """The columns to read from a Parquet file with columns `names`; an InputError naming the file
    and the missing column otherwise."""
    names = list(names)
    if cols.id_key not in names:
        raise InputError(f"{path}: no column {cols.id_key!r} for ids (--id-column); the file has columns {names}")
    cols.missing(path, names)
    return [cols.id_key, cols.text] + ([cols.pair_key] if cols.pair_key in names else [])


def _parquet(path: Path, cols: Columns) -> Iterator[Document]:
    pq = pyarrow_parquet()
    try:
        f = pq.ParquetFile(path.open("rb") if isinstance(path, RemoteFile) else path)
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError for a file that is not Parquet
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from None
    columns = parquet_columns(path, f.schema_arrow.names, cols)
    row = 0
    with f:
        for batch in f.iter_batches(batch_size=4096, columns=columns):
            values = [batch.column(i).to_pylist() for i in range(len(columns))]
            pairs = values[2] if len(values) > 2 else [None] * batch.num_rows
            for doc_id, text, pair in zip(values[0], values[1], pairs):
                row += 1
                yield check_document(doc_id, text, pair, f"{path}:row {row}", cols)


def _builtin(spec: str) -> Iterator[Document]:
    name, _, split = spec.partition(":")
    if is_token_dataset(name):  # bbc-truecase, bbc-punctuation: the texts of a built-in token task
        for r in load_token_dataset(name, split=split or None):
            yield Document(r.id, r.text, None, f"{name}:{r.id}")
        return
    for r in load_dataset(name, split=split or None):
        yield Document(r.id, r.text, None, f"{name}:{r.id}")


_READERS = {"jsonl": _jsonl, "csv": _csv, "parquet": _parquet}
KNOWN = "a .jsonl file (id, text, text_pair), a .csv or a .parquet file, a folder or a glob of them"


def corpus_format(name: str) -> str | None:
    """"jsonl", "csv" or "parquet" for a file name by its suffix; None for others."""
    return FORMATS.get(Path(name).suffix.lower())


def _remote_files(source: str, storage_options: dict | None) -> tuple[list[RemoteFile], str]:
    """The corpus files of a URL (a file, a folder: every corpus file under it, or a glob), and what
    the URL names, for messages."""
    loc = open_location(source, storage_options)  # StoreError for a scheme fsspec does not know
    fs, root = loc.fs, loc.root
    scheme, rest = source.split("://", 1)

    def url(p: str) -> str:  # the file's URL, written as the user wrote theirs (memory://x, not memory:///x)
        return f"{scheme}://{p if rest.startswith('/') else p.lstrip('/')}"

    with loc._errors(""):
        if glob.has_magic(source):
            paths, what = sorted(p for p in fs.glob(root) if not fs.isdir(p)), f"the glob {source}"
        elif fs.isdir(root):
            paths, what = sorted(p for p in fs.find(root) if corpus_format(p)), f"the folder {source}"
        elif fs.exists(root):
            if not corpus_format(root):
                raise InputError(f"{source}: unknown corpus format; use {KNOWN}")
            paths, what = [root], source
        else:
            raise InputError(f"corpus {source} does not exist")
    return [RemoteFile(url(p), p, fs) for p in paths], what


def corpus_files(source: str, storage_options: dict | None = None) -> tuple[str, list] | None:
    """(format, files in name order) of a corpus file, folder or glob: Paths, or RemoteFiles for a
    URL (read through fsspec with `storage_options`); None for a name that is none of them (a built-in
    data set). An InputError for a missing file, an empty folder or glob, or mixed formats."""
    if is_remote(source):
        files, what = _remote_files(source, storage_options)
        return _one_format(files, what)
    path = Path(source.split("://", 1)[1] if is_url(source) else source)
    source = str(path)
    if glob.has_magic(source):
        files = sorted(Path(p) for p in glob.glob(source, recursive=True) if Path(p).is_file())
        what = f"the glob {source}"
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and corpus_format(p.name))
        what = f"the folder {path}"
    elif corpus_format(path.name):
        if not path.is_file():
            raise InputError(f"corpus file {path} does not exist")
        return corpus_format(path.name), [path]
    elif path.exists():
        raise InputError(f"{path}: unknown corpus format; use {KNOWN}")
    else:
        return None
    return _one_format(files, what)


def _one_format(files: list, what: str) -> tuple[str, list]:
    formats = sorted({corpus_format(p.name) or Path(p.name).suffix or p.name for p in files})
    if not files:
        raise InputError(f"{what} holds no corpus files (.jsonl, .json, .ndjson, .csv, .parquet)")
    if len(formats) > 1 or formats[0] not in _READERS:
        raise InputError(f"{what} holds files of several formats or unknown ones ({formats}); a corpus is "
                         f"files of one format: {KNOWN}")
    return formats[0], files


def iter_corpus(source: str, id_column: str | None = None, text_column: str | None = None,
                text_pair_column: str | None = None, columns: Columns | None = None,
                storage_options: dict | None = None) -> Iterator[Document]:
    """Documents of `source`: a .jsonl/.json file, a .csv or .parquet file, a folder or glob of files
    of one of those formats, or a built-in data set name (`rotten_tomatoes`, `bbc`, or a built-in
    token task's texts, `bbc-truecase`, `bbc-punctuation`: erpack.token_tasks; optionally with a
    split: `bbc:test`). The columns (default `id`, `text`, `text_pair`; files only) are named by
    `id_column`, `text_column`, `text_pair_column` or `columns`. Files may be at a URL (s3://...),
    read through fsspec with `storage_options`."""
    cols = columns or Columns.of(id_column, text_column, text_pair_column)
    found = corpus_files(source, storage_options)
    if found is not None:
        fmt, files = found
        return (doc for f in files for doc in _READERS[fmt](f, cols))
    if cols != Columns():
        raise InputError(f"{source}: a built-in data set has its own ids and texts; --id-column, --text-column "
                         f"and --text-pair-column apply to corpus files")
    return _builtin(source)


def check_corpus(source: str, id_column: str | None = None, text_column: str | None = None,
                 text_pair_column: str | None = None, columns: Columns | None = None,
                 storage_options: dict | None = None) -> CorpusCheck:
    """Read the whole corpus once; raise on the first bad line or repeated id; return the count and
    warnings (generated ids)."""
    cols = columns or Columns.of(id_column, text_column, text_pair_column)
    seen: dict[str, str] = {}
    for doc in iter_corpus(source, columns=cols, storage_options=storage_options):
        if doc.id in seen:
            raise InputError(f"{doc.where}: id {doc.id!r} already used at {seen[doc.id]}; ids must be unique")
        seen[doc.id] = doc.where
    if not seen:
        raise InputError(f"corpus {source} holds no documents")
    warnings = []
    found = corpus_files(source, storage_options)
    for path in found[1] if found and found[0] == "csv" else []:
        if _generated_ids(path, _header(path), cols.id):
            warnings.append(
                f"{path} has no `id` column: its documents got the ids {path.stem}:0, {path.stem}:1, ... "
                f"(file stem and row), which change if rows are added, removed or reordered; add an `id` column "
                f"or pass --id-column NAME"
            )
    return CorpusCheck(len(seen), warnings)


def _header(path) -> list[str]:
    return next(csv.reader(line for _, line in iter_lines(path)), [])
