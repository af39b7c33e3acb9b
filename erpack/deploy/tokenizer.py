"""The bundle's tokenizer: a `tokenizers.Tokenizer` (tokenizer.json) called the way erpack.tokens calls a
transformers tokenizer, so the runtime tokenizes exactly as `erpack encode` did, without transformers.

    tok = BundleTokenizer.from_file("bundle/tokenizer/tokenizer.json", token_type_ids=True, pad_token_id=0)
    encoded, cut = erpack.tokens.tokenize(tok, docs, max_length)    # what a cache record was made from

A transformers fast tokenizer is a `tokenizers.Tokenizer` plus Python around it; what `erpack.tokens`
uses of that Python is `tokenizer(text, pair, truncation=..., max_length=..., add_special_tokens=...)`
returning input_ids (and token_type_ids when the model takes them); a token task's words rule
(erpack.words.word_index) also asks for the character offsets and the special-tokens mask. The truncating tokenizer is a
second copy made once per max_length: the objects are never changed after setup, so threads may share
them (a service tokenizes in several).
"""

from __future__ import annotations

import threading

from erpack.errors import ErpackError


def _tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise ErpackError("the `tokenizers` library is not installed: pip install 'erpack[serve]'") from None
    return tokenizers


class BundleTokenizer:
    """Callable like a transformers tokenizer, over tokenizer.json (padding off, truncation per call)."""

    def __init__(self, tokenizer, token_type_ids: bool, pad_token_id: int):
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self._plain = tokenizer
        self._cut: dict[int, object] = {}
        self._lock = threading.Lock()
        self.token_type_ids = token_type_ids
        self.pad_token_id = pad_token_id

    @classmethod
    def from_file(cls, path, token_type_ids: bool, pad_token_id: int) -> BundleTokenizer:
        tk = _tokenizers()
        try:
            tokenizer = tk.Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises Exception subclasses of its own
            raise ErpackError(f"{path} does not load as a tokenizer ({str(exc).splitlines()[0][:200]}); the bundle "
                              "is damaged: run `erpack verify` on it, or export it again") from None
        return cls(tokenizer, token_type_ids, pad_token_id)

    def _truncating(self, max_length: int):
        with self._lock:
            if max_length not in self._cut:
                tk = _tokenizers()
                cut = tk.Tokenizer.from_str(self._plain.to_str())
                cut.no_padding()
                cut.enable_truncation(max_length, strategy="longest_first", direction="right")
                self._cut[max_length] = cut
            return self._cut[max_length]

    is_fast = True  # character offsets, as erpack.words.word_index needs for a token task

    def __call__(self, text: str, pair: str | None = None, truncation: bool = False, max_length: int | None = None,
                 add_special_tokens: bool = True, verbose: bool = False, return_offsets_mapping: bool = False,
                 return_special_tokens_mask: bool = False) -> dict:
        tok = self._truncating(max_length) if truncation and max_length else self._plain
        enc = tok.encode(text, pair, add_special_tokens=add_special_tokens)
        out = {"input_ids": list(enc.ids)}
        if self.token_type_ids:
            out["token_type_ids"] = list(enc.type_ids)
        if return_offsets_mapping:
            out["offset_mapping"] = list(enc.offsets)
        if return_special_tokens_mask:
            out["special_tokens_mask"] = list(enc.special_tokens_mask)
        return out
