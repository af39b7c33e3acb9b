"""Labels of a token task: a label per word of each document, from a JSONL file or a built-in token task.

A row is `{"id": ..., "words": [...], "labels": [...], "split"?: ...}`: `words` are the document's text
split at whitespace exactly as the cache was encoded from (`text == " ".join(words)`), `labels` one
label per word. The split is the row's `split`, else the hash of the id, as for document labels
(erpack.train.labels). Built-in token tasks (erpack.token_tasks: `bbc-truecase`, `bbc-punctuation`)
give the same rows. Each row becomes an `Example` whose label is the tuple of word labels and whose
text is the words joined (what `--baseline` tokenizes).
"""

from __future__ import annotations

from pathlib import Path

from erpack.corpus import iter_jsonl_objects
from erpack.errors import InputError
from erpack.token_tasks import is_token_dataset, load_token_dataset
from erpack.train.labels import Example, id_and_split, unique
from erpack.words import check_words


def _row(obj: dict, where: str) -> Example:
    doc_id, split = id_and_split(obj, where)
    where = f"{where} (document {doc_id!r})"
    words, labels = obj.get("words"), obj.get("labels")
    if words is None or labels is None:
        raise InputError(f"{where}: a token-classification row needs `words` (the text split at whitespace) "
                         "and `labels` (one per word)")
    check_words(words, labels, None, where)
    for n, lab in enumerate(labels):
        if isinstance(lab, bool) or not isinstance(lab, str | int) or not str(lab).strip():
            raise InputError(f"{where}: label {n} ({lab!r}) of word {words[n]!r} is not a label name (string)")
    return Example(doc_id, tuple(str(x) for x in labels), split, " ".join(words), None, where)


def read_word_labels(source: str) -> list[Example]:
    """Every row of `source` (a .jsonl file of words and labels, or a built-in token task), checked whole."""
    path = Path(source)
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        if not path.is_file():
            raise InputError(f"label file {path} does not exist")
        rows = [_row(obj, where) for obj, where in iter_jsonl_objects(path, "`id`, `words` and `labels`")]
    elif path.exists():
        raise InputError(f"{path}: a token task's labels are a .jsonl file with `id`, `words` and `labels` per row")
    elif is_token_dataset(source):
        rows = [Example(r.id, r.labels, r.split, r.text, None, f"{source}:{r.id}") for r in load_token_dataset(source)]
    else:
        raise InputError(f"label source {source!r} is neither a .jsonl file nor a built-in token task "
                         "(bbc-truecase, bbc-punctuation)")
    return unique(rows, source)


def words_of(example: Example) -> list[str]:
    """The words of a token task's example (its text split at the single spaces that joined them)."""
    return example.text.split(" ")
