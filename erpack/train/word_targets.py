"""A token task's targets for one split: each document's word index, word labels and per-token targets.

`word_targets` aligns every labelled document with the tokens its cache record holds (erpack.words:
re-tokenized, checked against the stored token ids) and keeps, per document, the word each token
belongs to and the label id of each word. `tokens` is what the loss reads: (N, T) int64, the
`--subwords` targets of each document padded with IGNORE (cross-entropy skips it), T the longest
document. `score` and `predictions` turn (N, T, C) logits into one prediction per word and score
them per word (erpack.train.metrics.token_metrics); words cut off by truncation are not scored and
counted (`cut_words`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from erpack.assets import resolve_model
from erpack.train.metrics import token_metrics
from erpack.train.word_labels import words_of
from erpack.words import IGNORE, check_words, cut_words, token_targets, word_index, word_predictions


@dataclass
class WordTargets:
    labels: list[str]
    subwords: str
    index: list[np.ndarray]  # per document: (T_i,) the word of each token, -1 for special tokens
    words: list[np.ndarray]  # per document: (n_words,) label id of each word
    cut: int = 0  # words with no token left after truncation (not scored)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def tokens(self) -> np.ndarray:
        """(N, T) int64 per-token loss targets, IGNORE where none and past each document's end."""
        out = np.full((len(self.index), max((len(i) for i in self.index), default=1)), IGNORE, dtype=np.int64)
        for n, (index, words) in enumerate(zip(self.index, self.words)):
            out[n, :len(index)] = token_targets(index, words, self.subwords)
        return out

    def predictions(self, logits: np.ndarray) -> list[np.ndarray]:
        """Per document, the predicted label id of each word (-1: cut off) from (N, T, C) logits."""
        return [word_predictions(logits[n], index, len(words), self.subwords)
                for n, (index, words) in enumerate(zip(self.index, self.words))]

    def score(self, logits: np.ndarray) -> dict:
        predicted = self.predictions(logits)
        if not predicted:
            return token_metrics([], [], self.labels) | {"cut_words": 0}
        return token_metrics(np.concatenate(self.words), np.concatenate(predicted), self.labels) | {"cut_words": self.cut}


def word_targets(reader, examples, labels: list[str], tokenizer, subwords: str) -> WordTargets:
    """The targets of `examples` (token-task Examples the cache holds) against their cached tokens."""
    max_length = reader.meta.get("max_length")
    out = WordTargets(labels, subwords, [], [])
    for e in examples:
        words = words_of(e)
        ids = check_words(words, list(e.label), labels, e.where)
        index = word_index(tokenizer, words, reader.get_tokens(e.id), e.where, max_length)
        out.index.append(index)
        out.words.append(np.asarray(ids, dtype=np.int64))
        out.cut += cut_words(index, len(words))
    return out


def cache_tokenizer(identity: dict, override: str | None = None):
    """The tokenizer of the encoder a cache or task model recorded (at `override`, the user's --model)."""
    from transformers import AutoTokenizer

    from erpack.models.loading import recorded_location

    return AutoTokenizer.from_pretrained(resolve_model(override or recorded_location(identity)))
