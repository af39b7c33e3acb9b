"""`erpack predict` with a token-classification graph: one predicted label per word of each document.

A token graph's logits are per token, (B, T, C). To turn them into labels per word, predict needs each
document's words, exactly as the text that was tokenized (`text == " ".join(words)`):

- from the word label file given (`--labels`: its rows' `words`; a built-in token task such as
  `bbc-truecase` too), else
- from the corpus given (`--texts`: each text split at whitespace): the corpus the cache was encoded
  from, and the source of documents the cache does not hold.

A document with neither is refused before any work (InputError naming it). Each token's word comes from
erpack.words.word_index (the words tokenized again with the cache's tokenizer and checked against
the ids the cache stored for the record, or the ids the lower stack ran for a new text), and one label
per word from word_predictions by the graph's `subwords` rule (`first`: the first subword's argmax;
`all`: the argmax of the mean of the word's subword logits).

A row: {"id", "source", "words", "predicted" (a label per word; null for a word cut off by max_length),
"truncated_words"} and, with --labels, "labels" (the true ones): the names `erpack eval --predictions`
writes for a token task, as `predicted` and `label` are for a document. Scores: erpack.train.metrics.token_metrics over
the words predicted (words cut off are counted, not scored), from counts that add up (word_counts: the
Ray engine's actors count their parts' rows and the driver scores the sum).
"""

from __future__ import annotations

import numpy as np

from erpack.corpus import iter_corpus
from erpack.train.metrics import confusion_metrics, token_confusion
from erpack.train.word_labels import read_word_labels, words_of
from erpack.words import check_words, require_words

NO_WORDS = ("a token-classification graph predicts a label per word, so it needs the words of each document: "
            "give --labels (a word label file: id, words, labels) or --texts (the corpus the cache was encoded "
            "from; words = text split at whitespace)")


def word_label_rows(source: str, names: list[str]) -> dict:
    """{id: Example} of a token task's label source (a word label file or a built-in token task), each
    row's labels checked against the graph's label `names` before any work."""
    rows = read_word_labels(source)
    for r in rows:
        check_words(words_of(r), list(r.label), names, r.where)
    return {r.id: r for r in rows}


def document_words(ids: list[str], label_rows: dict | None, texts, text_docs: list,
                   labels: str | None = None) -> dict[str, tuple[list, str]]:
    """{id: (words, where)} of the documents `ids` to predict: from `label_rows` (read from the label source
    `labels`, which the error names), else from the documents given as text (`text_docs`), else from the
    corpus `texts`; InputError when some have none."""
    out: dict[str, tuple[list, str]] = {}
    for doc_id in ids:
        if label_rows is not None and doc_id in label_rows:
            out[doc_id] = (words_of(label_rows[doc_id]), label_rows[doc_id].where)
    for d in text_docs:
        out.setdefault(d.id, (d.text.split(), d.where or f"document {d.id!r}"))
    wanted = {i for i in ids if i not in out}
    if wanted and texts is not None:
        for d in iter_corpus(str(texts)):
            if d.id in wanted:
                out.setdefault(d.id, (d.text.split(), d.where or f"{texts}: document {d.id!r}"))
    where = []
    if label_rows is not None:
        where.append(f"in --labels {labels}" if labels else "in --labels")
    if texts is not None:
        where.append(f"in --texts {texts}")
    require_words(ids, out, "document", f" (not {' nor '.join(where)})" if where else "", NO_WORDS)
    return out


def true_labels(label_rows: dict | None) -> dict | None:
    """{id: the true label of each word} of a token task's label rows (what a row's `labels` holds)."""
    return None if label_rows is None else {i: list(r.label) for i, r in label_rows.items()}


def cut_of(rows: list[dict]) -> tuple[int, int]:
    """(words, documents): the words cut off by max_length in the rows and the documents they lie in."""
    cut = [r["truncated_words"] for r in rows if r.get("truncated_words")]
    return sum(cut), len(cut)


def word_counts(rows: list[dict], names: list[str]) -> dict:
    """What scoring the rows that carry true `labels` needs, in sums: {"documents", "truncated_words",
    "confusion": (C, C) nested lists} (erpack.train.metrics.token_confusion over their predicted words).
    Counts of several sets of rows add up (add_counts): a part's, on its Ray actor, then the run's."""
    index = {n: i for i, n in enumerate(names)}
    y_true, y_pred, docs, cut = [], [], 0, 0
    for r in rows:
        if "error" in r or "labels" not in r:
            continue
        docs += 1
        cut += r["truncated_words"]
        y_true += [index[t] for t in r["labels"]]  # known to the graph: word_label_rows checked
        y_pred += [-1 if p is None else index[p] for p in r["predicted"]]
    return {"documents": docs, "truncated_words": cut,
            "confusion": token_confusion(y_true, y_pred, len(names)).tolist()}


def add_counts(counts: list[dict]) -> dict | None:
    """The sum of word_counts results (None for none)."""
    if not counts:
        return None
    return {"documents": sum(c["documents"] for c in counts), "truncated_words": sum(c["truncated_words"] for c in counts),
            "confusion": np.sum([np.asarray(c["confusion"], dtype=np.int64) for c in counts], axis=0).tolist()}


def score_counts(counts: dict, names: list[str]) -> dict:
    """The per-word scores of word_counts: token_metrics with the documents and the words cut off."""
    if not counts["documents"]:
        return {"documents": 0}
    m = confusion_metrics(counts["confusion"], names)
    return {"documents": counts["documents"], "words": m.pop("n"), "truncated_words": counts["truncated_words"], **m}


def score_words(rows: list[dict], names: list[str]) -> dict:
    """token_metrics over the predicted words of the rows with true `labels`, with the documents and the words
    cut off."""
    return score_counts(word_counts(rows, names), names)
