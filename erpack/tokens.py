"""What a document's tokens are: its token ids, truncated at max_length, and the hash a record keeps.

`tokenize` gives what `erpack encode` stores (and `erpack predict` runs). A long text is cut before
tokenizing to a whole-word prefix that holds more than max_length tokens of its own (`bounded_inputs`):
tokenizers split words at whitespace, so that prefix's tokens are the text's first tokens, and the
result, truncated flag included, equals the whole text's, at a cost bounded by max_length rather than
the text's size (a 10 MB line took 92 s). `token_hash` is the u64 a cache record keeps to say which
tokens made it (docs/cache-format.md), so a changed text under a cached id is found.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np

from erpack.corpus import Document

CHARS_PER_TOKEN = 64  # a text is first cut to max_length * this many characters (then grown if needed)
_SPACE = re.compile(r"\s")


def token_hash(input_ids, token_type_ids=None, truncated: bool = False) -> int:
    """The u64 a record keeps to say which tokens made it (docs/cache-format.md, "token hash"):
    blake2b-64 of the input ids and token type ids as little-endian int64, then a truncated byte.
    Never 0, which the store reserves for "unknown"."""
    h = hashlib.blake2b(np.asarray(input_ids, dtype="<i8").tobytes(), digest_size=8)
    if token_type_ids is not None:
        h.update(np.asarray(token_type_ids, dtype="<i8").tobytes())
    h.update(b"\1" if truncated else b"\0")
    return int.from_bytes(h.digest(), "little") or 1


def _word_prefix(text: str, chars: int) -> str | None:
    """text cut at the first whitespace at or after `chars` (whole words only); None: nothing to cut."""
    if len(text) <= chars:
        return None
    m = _SPACE.search(text, chars)
    return text[: m.start()] if m else None


def _bounded(tokenizer, text: str, max_length: int, other_tokens: int) -> str:
    """A whole-word prefix of text with more than max(max_length, other_tokens) tokens of its own, or
    text itself. Tokenizers split words at whitespace, so the prefix's tokens are the text's first
    tokens; having more than max_length of them, the text is truncated either way, and having more
    than the other text of a pair, longest_first truncation cuts them as it would cut the whole."""
    chars = max_length * CHARS_PER_TOKEN
    while (cut := _word_prefix(text, chars)) is not None:
        if len(tokenizer(cut, add_special_tokens=False, verbose=False)["input_ids"]) > max(max_length, other_tokens):
            return cut
        chars *= 4  # words of many characters per token: try a longer prefix
    return text


def bounded_inputs(tokenizer, text: str, pair: str | None, max_length: int) -> tuple[str, str | None]:
    """(text, pair) cut so that tokenizing them with truncation at max_length gives what the whole
    texts give, truncated flag included, at a cost bounded by max_length rather than the text size."""
    limit = max_length * CHARS_PER_TOKEN
    if pair is None:
        return _bounded(tokenizer, text, max_length, 0), None
    if len(text) > limit and len(pair) > limit:  # both long: which is longer decides the cut; keep whole
        return text, pair
    if len(pair) > limit:
        return text, _bounded(tokenizer, pair, max_length, len(tokenizer(text, add_special_tokens=False)["input_ids"]))
    if len(text) > limit:
        return _bounded(tokenizer, text, max_length, len(tokenizer(pair, add_special_tokens=False)["input_ids"])), pair
    return text, pair


def tokenize(tokenizer, chunk: list[Document], max_length: int) -> tuple[list[dict], list[bool]]:
    """Token ids (and token types) per document, truncated to max_length, and which were cut."""
    out, cut = [], []
    for doc in chunk:
        text, pair = bounded_inputs(tokenizer, doc.text, doc.text_pair, max_length)
        full = tokenizer(text, pair, truncation=False, verbose=False)
        too_long = len(full["input_ids"]) > max_length
        if too_long:
            full = tokenizer(text, pair, truncation=True, max_length=max_length)
        out.append({k: full[k] for k in ("input_ids", "token_type_ids") if k in full})
        cut.append(too_long)
    return out, cut
