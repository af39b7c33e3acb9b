"""Which word each cached token belongs to, and labels per word carried to tokens and back.

A token task labels the whitespace-separated words of a document (`text == " ".join(words)`). The
cache keeps token states, so every token needs its word: `word_index` tokenizes the text again with
the cache's (fast) tokenizer, checks the ids equal the ids the cache stored with the record (cache
shard version 3, `CacheReader.get_tokens`), and maps each token's character offsets to a word; special
tokens get -1. A word with no token left after truncation (max_length) is not scored: `cut_words`
counts them. `token_targets` gives the per-token loss targets (`first`: a word's first subword carries
its label, other subwords -100; `all`: every subword does) and `word_predictions` turns per-token
logits back into one prediction per word (`first`: the first subword's argmax; `all`: the argmax of
the mean of the word's subword logits). `word_rows` writes the prediction lines (the words and a label
per word): the one rule `erpack predict` of a token graph and a bundle's runtime share.

Torch-free (numpy and the tokenizer passed in): training, predict and the deploy runtime import it.

Errors are InputErrors naming the document and the label file: a label list whose length is not the
word count, an unknown label, a record without stored token ids (re-encode), tokens that differ from
the cache's (the words are not the text the cache was made from).
"""

from __future__ import annotations

from bisect import bisect_right

import numpy as np

from erpack.errors import InputError
from erpack.tokens import bounded_inputs

IGNORE = -100  # the target a token takes when it carries no label (CrossEntropyLoss's ignore_index)
SUBWORDS = ("first", "all")


def require_words(ids: list[str], words: dict, what: str, looked_in: str, fix: str) -> None:
    """Refuse, before any work, documents of `ids` that `words` ({id: (words, where)}) lacks: "no words for N
    WHAT(s) LOOKED_IN: the first 5; FIX" (InputError), and words that are not whitespace-free strings
    (check_words, naming the document)."""
    lacking = [i for i in ids if i not in words]
    if lacking:
        shown = ", ".join(repr(i) for i in lacking[:5]) + (", ..." if len(lacking) > 5 else "")
        raise InputError(f"no words for {len(lacking)} {what}(s){looked_in}: {shown}; {fix}")
    for i in ids:
        ws, where = words[i]
        check_words(ws, None, None, where)


def check_words(words, labels, names: list[str] | None, where: str) -> list[int] | None:
    """Label ids of a document's words; `where` names the document and file. Words must be non-empty
    strings without whitespace; `labels` (unless None: words alone, for prediction) one per word;
    without `names` only their count is checked (None returned)."""
    if not isinstance(words, list | tuple) or not words:
        raise InputError(f"{where}: `words` must be a non-empty list of strings (the words of the text)")
    for n, w in enumerate(words):
        if not isinstance(w, str) or not w or w != w.strip() or len(w.split()) != 1:
            raise InputError(f"{where}: word {n} ({w!r}) is not one whitespace-free word; `words` are the "
                             "text split at whitespace (text == ' '.join(words))")
    if labels is None:
        return None
    if not isinstance(labels, list | tuple) or len(labels) != len(words):
        got = len(labels) if isinstance(labels, list | tuple) else type(labels).__name__
        raise InputError(f"{where}: {got} labels for {len(words)} words; give one label per word")
    if names is None:
        return None
    index = {name: i for i, name in enumerate(names)}
    out = []
    for n, lab in enumerate(labels):
        if lab not in index:
            raise InputError(f"{where}: word {n} ({words[n]!r}) has label {lab!r}, not one of "
                             f"{', '.join(map(str, names))}; use those labels or train with them")
        out.append(index[lab])
    return out


def word_starts(words: list[str]) -> list[int]:
    """Character offset of each word in " ".join(words)."""
    starts, pos = [], 0
    for w in words:
        starts.append(pos)
        pos += len(w) + 1
    return starts


def word_index(tokenizer, words: list[str], token_ids, where: str = "", max_length: int | None = None) -> np.ndarray:
    """int64 (T,): the word each of the document's cached tokens belongs to, -1 for special tokens.
    `token_ids` are the ids the cache stored (None: a record written without them); `max_length` the
    cache's (its manifest's meta), so the text is truncated as `erpack encode` truncated it (None: at
    len(token_ids), which cannot tell a longer text whose first tokens are the cached ones)."""
    if token_ids is None:
        raise InputError(f"{where}: the cache holds no token ids for this document (written by an erpack "
                         "before cache shard version 3); re-encode the corpus with this erpack to train a token task")
    if not getattr(tokenizer, "is_fast", False):
        raise InputError(f"{where}: token tasks need a fast tokenizer (character offsets); "
                         f"{type(tokenizer).__name__} is not one")
    ids = np.asarray(token_ids, dtype=np.int64)
    text = " ".join(words)
    limit = max(int(max_length or len(ids)), 1)
    cut, _ = bounded_inputs(tokenizer, text, None, limit)
    enc = tokenizer(cut, truncation=True, max_length=limit, return_offsets_mapping=True,
                    return_special_tokens_mask=True, verbose=False)
    got = np.asarray(enc["input_ids"], dtype=np.int64)
    if got.shape != ids.shape or not np.array_equal(got, ids):
        n = min(len(got), len(ids))
        diff = np.flatnonzero(got[:n] != ids[:n])
        first = int(diff[0]) if len(diff) else n
        raise InputError(f"{where}: the words' tokens differ from the tokens the cache holds for this document "
                         f"({len(got)} against {len(ids)} tokens, first difference at token {first}); the words "
                         "must be the text the cache was encoded from (text == ' '.join(words))")
    starts = word_starts(words)
    out = np.full(len(ids), -1, dtype=np.int64)
    for t, ((a, b), special) in enumerate(zip(enc["offset_mapping"], enc["special_tokens_mask"])):
        if special or b <= a:
            continue
        out[t] = bisect_right(starts, b - 1) - 1  # the token's last character lies in its word
    return out


def cut_words(index: np.ndarray, n_words: int) -> int:
    """How many of the document's words have no token (cut off by truncation): not scored."""
    seen = index[index >= 0]
    return n_words - (len(np.unique(seen)) if len(seen) else 0)


def first_tokens(index: np.ndarray) -> np.ndarray:
    """bool (T,): the tokens that are their word's first subword."""
    prev = np.concatenate([[-2], index[:-1]])
    return (index >= 0) & (index != prev)


def token_targets(index: np.ndarray, label_ids, subwords: str) -> np.ndarray:
    """int64 (T,): per-token loss targets, IGNORE where a token carries no label."""
    if subwords not in SUBWORDS:
        raise InputError(f"--subwords {subwords!r}: use one of {', '.join(SUBWORDS)}")
    labels = np.asarray(label_ids, dtype=np.int64)
    out = np.full(len(index), IGNORE, dtype=np.int64)
    keep = first_tokens(index) if subwords == "first" else index >= 0
    out[keep] = labels[index[keep]]
    return out


def word_predictions(logits: np.ndarray, index: np.ndarray, n_words: int, subwords: str) -> np.ndarray:
    """int64 (n_words,): the predicted label id per word from (T, C) logits, -1 for a word cut off."""
    logits = np.asarray(logits, dtype=np.float64)[: len(index)]
    index = np.asarray(index)[: len(logits)]
    out = np.full(n_words, -1, dtype=np.int64)
    if subwords == "first":
        first = first_tokens(index)
        out[index[first]] = logits[first].argmax(-1)
        return out
    real = index >= 0
    sums = np.zeros((n_words, logits.shape[1]))
    counts = np.zeros(n_words)
    np.add.at(sums, index[real], logits[real])
    np.add.at(counts, index[real], 1)
    has = counts > 0
    out[has] = (sums[has] / counts[has, None]).argmax(-1)
    return out


def word_rows(requested: list[str], logits: dict, token_ids: dict, words: dict, tokenizer, max_length: int | None,
              info: dict, text_ids: set, labels: dict | None, missing: str) -> list[dict]:
    """The prediction lines, in request order: labels per word by the graph's `subwords` rule, as `erpack
    predict` (erpack.predict_words, and each worker of `--engine ray`: erpack.predict.cached_rows) and a
    bundle's runtime (erpack.deploy.runtime) write them. `logits`: {id: (T, C)}; `words`: {id: (words,
    where)}; `max_length`: the cache's (texts are truncated as it truncated them); `labels`: {id: the true
    label of each word} (a row's `labels`), or None; `missing`: the error of an id found nowhere."""
    names = list(info.get("labels") or [])
    subwords = info.get("subwords") or "first"
    out = []
    for doc_id in requested:
        if doc_id not in logits:
            out.append({"id": doc_id, "error": missing})
            continue
        ws, where = words[doc_id]
        index = word_index(tokenizer, ws, token_ids[doc_id], where, max_length)
        z = np.asarray(logits[doc_id])[: len(index)]  # (T, C): the graph's padding rows dropped
        pred = word_predictions(z, index, len(ws), subwords)
        row = {"id": doc_id, "source": "text" if doc_id in text_ids else "cache", "words": ws,
               "predicted": [names[k] if 0 <= k < len(names) else (None if k < 0 else int(k)) for k in pred],
               "truncated_words": cut_words(index, len(ws))}
        if labels is not None and doc_id in labels:
            row["labels"] = list(labels[doc_id])
        out.append(row)
    return out
