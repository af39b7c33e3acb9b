"""Built-in token tasks made from the BBC articles: truecasing and punctuation restoration.

No token-labelled data set installs offline here, so two real tasks are derived from real text, the
labels read off the original article. Each document is its BBC article split at whitespace (line
breaks included: the text is the words joined by single spaces); ids and splits are the BBC data
set's (erpack.assets: `bbc-<category>-<file>`, split by the hash of the id).

- `bbc-truecase`: every word lowercased in the text; label `CAP` where the original word's first
  letter (its first alphabetic character: `"Hello` counts) is uppercase, else `O`. A word without a
  letter (`2004`, `-`) is `O`.
- `bbc-punctuation`: the marks `, : . ! ; ?` at the end of each word are removed from the text (a
  closing quote or bracket after them stays: `said."` becomes `said"`); the label is the last of those
  marks: `COMMA` for `,` and `:`, `PERIOD` for `.`, `!` and `;`, `QUESTION` for `?`, else `O`. Marks
  inside a word (`U.S`, `3.5`) stay. A word made only of marks (`...`) leaves the text, its mark going
  to the word before it when that word has none.

`TOKEN_DATASETS` names them; `load_token_dataset(name)` gives `WordRecord`s, and `erpack encode
bbc-truecase` reads the texts as a corpus (erpack.corpus), `erpack train --labels bbc-truecase
--task token-classification` the words and labels (erpack.train.word_labels).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from erpack.assets import SPLITS, load_dataset
from erpack.errors import AssetError


@dataclass(frozen=True)
class WordRecord:
    """One document of a token task: its words (the text is " ".join(words)) and a label per word."""

    id: str
    words: tuple[str, ...]
    labels: tuple[str, ...]
    split: str

    @property
    def text(self) -> str:
        return " ".join(self.words)


def _first_letter_upper(word: str) -> bool:
    letter = next((c for c in word if c.isalpha()), "")
    return letter.isupper()


def truecase(words: list[str]) -> tuple[list[str], list[str]]:
    """(lowercased words, CAP/O per word) of an article's words."""
    return [w.lower() for w in words], ["CAP" if _first_letter_upper(w) else "O" for w in words]


MARKS = {",": "COMMA", ":": "COMMA", ".": "PERIOD", "!": "PERIOD", ";": "PERIOD", "?": "QUESTION"}
_CLOSING = "\"')]}\u2019\u201d"  # closing quotes and brackets that may follow a final mark


def _split_mark(word: str) -> tuple[str, str]:
    """(the word without its final marks, the label of the last one or O)."""
    end = len(word)
    while end and word[end - 1] in MARKS or (end and word[end - 1] in _CLOSING):
        end -= 1
    tail = word[end:]
    marks = [c for c in tail if c in MARKS]
    return word[:end] + "".join(c for c in tail if c not in MARKS), MARKS[marks[-1]] if marks else "O"


def punctuation(words: list[str]) -> tuple[list[str], list[str]]:
    """(words without their final marks, COMMA/PERIOD/QUESTION/O per word) of an article's words."""
    out_words: list[str] = []
    out_labels: list[str] = []
    for w in words:
        bare, label = _split_mark(w)
        if not bare:  # only marks: the mark goes to the word before, if it has none
            if out_labels and out_labels[-1] == "O":
                out_labels[-1] = label
            continue
        out_words.append(bare)
        out_labels.append(label)
    return out_words, out_labels


TOKEN_DATASETS: dict[str, Callable[[list[str]], tuple[list[str], list[str]]]] = {
    "bbc-truecase": truecase,
    "bbc-punctuation": punctuation,
}
TOKEN_LABELS = {"bbc-truecase": ["O", "CAP"], "bbc-punctuation": ["O", "COMMA", "PERIOD", "QUESTION"]}


def is_token_dataset(name: str) -> bool:
    return name.lower() in TOKEN_DATASETS


def load_token_dataset(name: str, split: str | None = None) -> list[WordRecord]:
    """The documents of a built-in token task, in the BBC data set's order; `split` keeps one split."""
    key = name.lower()
    if key not in TOKEN_DATASETS:
        raise AssetError(f"unknown built-in token task {name!r}; token tasks: {', '.join(TOKEN_DATASETS)}")
    if split is not None and split not in SPLITS:
        raise AssetError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
    derive = TOKEN_DATASETS[key]
    out = []
    for r in load_dataset("bbc", split=split):
        words, labels = derive(r.text.split())
        if words:
            out.append(WordRecord(r.id, tuple(words), tuple(labels), r.split))
    return out
