"""Predictions from a bundle with onnxruntime and tokenizers only: no torch, no transformers.

    rt = BundleRuntime("bundle/")                    # checks bundle.json and every file's sha256
    rt.predict_texts(["a fine film", "dull"])         # rows: tokenize, lower graph, codec round trip, upper
    rt.predict_ids("caches/rt", ["d001", "d002"])     # rows from cached records (a folder or URL)
    rt.predict_ids(cache, ids, words={id: (words, where)})  # a token bundle's: each cached document's words
    rt.text_logits(docs), rt.cache_logits(reader, ids)    # the logits behind the rows

What this module imports, directly or through the erpack modules it uses: numpy, onnxruntime,
tokenizers, zstandard, and fsspec for a cache at a URL. tests/deploy/test_no_torch.py runs it in a
process where importing torch or transformers fails.

Text takes the path a cached record took: erpack.tokens' tokenizing (the same truncation at the
cache's max_length), the exported lower stack, then the cache's codec (encode and decode), so a
text's prediction equals the one the same document gets once it is encoded into the cache. Rows are
those `erpack predict` writes (erpack.predict.prediction_rows): id, source, predicted, probabilities
(or score for a regression). A token bundle labels words: a text's are the text split at whitespace; a
cached record holds token states, not words, so cached ids need each document's words given (the text the
cache was encoded from), placed on the token ids the cache stored as `erpack predict GRAPH CACHE` places
them (erpack.predict.cached_rows, erpack.words.word_rows).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from erpack.batching import length_batches, pad_arrays
from erpack.codecs import Pipeline
from erpack.codecs.state import FittedState
from erpack.corpus import Document, iter_corpus
from erpack.deploy.bundle import Bundle
from erpack.deploy.tokenizer import BundleTokenizer
from erpack.depth.ort import ExitGraphs
from erpack.errors import BundleError, InputError, ManifestMismatchError
from erpack.fit import check_fit
from erpack.predict import MISSING, cached_rows, cut_note, graph_row, prediction_rows, write_rows
from erpack.runtime.lower import run_lower_onnx
from erpack.runtime.session import create_session
from erpack.store import CacheReader, CacheWriter
from erpack.tasks import per_token
from erpack.tokens import token_hash, tokenize
from erpack.words import check_words, require_words, word_rows

BATCH_SIZE = 32
MAX_TOKENS = 16384


@dataclass
class Predictions:
    """Prediction rows in request order, and where each came from."""

    rows: list[dict]
    from_cache: int = 0
    from_text: int = 0
    truncated: list[str] = field(default_factory=list)  # ids of texts cut at max_length
    missing: list[str] = field(default_factory=list)  # requested ids found nowhere (their rows carry `error`)
    notes: list[str] = field(default_factory=list)
    added_to_cache: int = 0  # texts appended to the cache
    metrics: dict | None = None  # a token bundle's rows scored per word against true labels (erpack.predict_words)


@dataclass
class Lowered:
    """Documents as the lower graph left them: token ids, which were cut, and per document (T, H) float32
    states before the cache's codec."""

    docs: list[Document]
    encoded: list[dict]
    cut: list[bool]
    hidden: list[np.ndarray]


def word_document(doc: Document) -> Document:
    """A document as a token task reads it: its words (the text split at whitespace) joined by one space,
    the text whose tokens erpack.words.word_index maps to words (`text == " ".join(words)`)."""
    if doc.text_pair is not None:
        raise InputError(f"document {doc.id!r} is a text pair; a token-classification model labels the words of "
                         "one text: give the text alone")
    words = doc.text.split()
    check_words(words, None, None, f"document {doc.id!r}")
    return Document(doc.id, " ".join(words), where=doc.where)


def as_documents(texts, ids=None) -> list[Document]:
    """Documents from strings (ids `text-0`, `text-1`, ... unless given) or Documents as they are."""
    docs = []
    for i, t in enumerate(texts):
        if isinstance(t, Document):
            docs.append(t)
            continue
        if not isinstance(t, str) or not t.strip():
            raise InputError(f"text {i} is empty or not a string ({t!r}); give non-empty text")
        docs.append(Document(str(ids[i]) if ids is not None else f"text-{i}", t))
    return docs


class BundleRuntime:
    """A loaded bundle: the upper graph (fp32 or int8), and, when text is first given, the lower graph,
    the tokenizer and the cache's codec. device: auto (CUDA when onnxruntime offers it), cuda, cpu.

    A bundle of a task model with exits runs its per-layer exit graphs with batch compaction
    (erpack.depth.ort; each row gets `layers`, the upper layers it ran) at the threshold saved with the
    task model, or `exit_threshold`; `early_exit=False` runs its plain upper graph (every layer). A token
    bundle's rows carry `words` and a label per word (erpack.words.word_rows); an ODE-step bundle's rows
    carry `layers`, the steps its graph is unrolled for."""

    def __init__(self, bundle, variant: str = "fp32", device: str = "auto", threads: int | None = None,
                 check_files: bool = True, early_exit: bool = True, exit_threshold: float | None = None):
        self.bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle, check_files)
        self.variant, self.device, self.threads = variant, device, threads
        task = self.bundle.manifest["task"]
        self.info = {"task": self.bundle.task, "labels": self.bundle.labels}
        self.info.update({k: task[k] for k in ("subwords", "ode") if task.get(k) is not None})
        self.token = per_token(self.info)
        self.exits = self.bundle.has_exits and early_exit
        if exit_threshold is not None and not self.exits:
            raise InputError(f"bundle {self.bundle.folder} has no exit graphs" + (" (early exit is off)" if self.bundle.has_exits else "") +
                             ", so an exit threshold does not apply; bundle a task model trained with --early-exit")
        if self.exits:
            self.upper = ExitGraphs(self.bundle.graph("exits", variant), device, threads, exit_threshold)
            self.info["early_exit"] = {"rule": self.upper.rule.name, "threshold": self.upper.rule.threshold}
        else:
            self.upper = create_session(self.bundle.graph("upper", variant), device, threads)
        self._lower = self._tokenizer = self._codec = None

    # ---- what it runs ----------------------------------------------------------------------------
    @property
    def provider(self) -> str:
        return self.upper.provider

    @property
    def notes(self) -> list[str]:
        return list(self.upper.notes) + (list(self._lower.notes) if self._lower is not None else [])

    @property
    def lower(self):
        if self._lower is None:
            self._lower = create_session(self.bundle.graph("lower", "fp32"), self.device, self.threads)
        return self._lower

    @property
    def tokenizer(self) -> BundleTokenizer:
        if self._tokenizer is None:
            t = self.bundle.manifest["tokenizer"]
            self._tokenizer = BundleTokenizer.from_file(self.bundle.path(t["file"]), bool(t["token_type_ids"]),
                                                        int(t["pad_token_id"]))
        return self._tokenizer

    @property
    def codec(self) -> Pipeline:
        """The cache's codec (with its fitted state when it has one): what a text's hidden states pass through."""
        if self._codec is None:
            cache = self.bundle.cache
            state = None
            if cache.get("codec_state"):
                path = self.bundle.path(cache["codec_state"]["file"])
                state = FittedState.from_bytes(path.read_bytes(), source=str(path))
            self._codec = Pipeline.from_config(cache["codec"], state=state)
        return self._codec

    # ---- logits ----------------------------------------------------------------------------------
    def check_cache(self, reader, allow_other_codec: bool = False) -> list[str]:
        """Refuse a cache the bundle was not made for (erpack.fit's rule, and the same fitted codec state as
        the bundle carries); notes on allowed differences."""
        notes = check_fit(self.bundle.cache, reader, f"bundle {self.bundle.folder}", kind="bundle",
                          allow_other_codec=allow_other_codec,
                          remedy=", or export a bundle of a task model trained on this cache")
        want = (self.bundle.cache.get("codec_state") or {}).get("sha256")
        got = (reader.manifest.get("codec_state") or {}).get("sha256")
        if want != got:
            what = (f"the cache {getattr(reader, 'location', None) or reader.path} has the fitted codec state "
                    f"{(got or 'none')[:16]}, the bundle {self.bundle.folder} carries {(want or 'none')[:16]}: "
                    "texts through the bundle's codec would not decode as that cache's records do")
            if not allow_other_codec:
                raise ManifestMismatchError(f"{what}; pass --allow-other-codec to accept it, or export a bundle "
                                            "with --calibration-cache that cache")
            notes.append(what)
        return notes

    def lower_texts(self, docs: list[Document]) -> Lowered:
        """Documents tokenized as `erpack encode` does and run through the lower graph."""
        encoded, cut = tokenize(self.tokenizer, docs, self.bundle.max_length)
        return Lowered(docs, encoded, cut, run_lower_onnx(self.lower, encoded, self.tokenizer.pad_token_id))

    def roundtrip(self, hidden: np.ndarray, input_ids) -> np.ndarray:
        """(T, H) states through the cache's codec and back: what a cache record of them decodes to. A codec
        that reads token ids (`needs_tokens`) gets the document's."""
        codec = self.codec
        kw = {"tokens": np.asarray(input_ids, dtype=np.int64)} if getattr(codec, "needs_tokens", False) else {}
        return codec.decode(codec.encode(hidden, **kw), shape=hidden.shape, **kw)

    def outputs(self, hidden: list[np.ndarray], batch_size: int = BATCH_SIZE) -> list:
        """The upper graph's answer per document ((T, H) states after the codec), in their order: logits (C,),
        a token bundle's (T', C) (T' >= T: the batch's padding rows follow), or exit graphs' (logits, layers)."""
        out: list = [None] * len(hidden)
        for rows in length_batches([h.shape[0] for h in hidden], batch_size, MAX_TOKENS):
            batch, mask = pad_arrays([hidden[i] for i in rows])  # (B, T, H), (B, T)
            res = self.upper.run({"hidden_states": batch, "attention_mask": mask})  # [(B, C) or (B, T, C), layers?]
            for r, i in enumerate(rows):
                out[i] = graph_row(res, r)
        return out

    def text_logits(self, docs: list[Document], batch_size: int = BATCH_SIZE,
                    lowered: Lowered | None = None) -> tuple[np.ndarray | list, list[str]]:
        """Logits of documents given as text, in their order, and the ids cut at max_length: (N, C), or for a
        token bundle a list of (T, C), one per document's tokens."""
        if not docs:
            return np.zeros((0, max(1, len(self.bundle.labels))), dtype=np.float32), []
        low = lowered or self.lower_texts(docs)
        hidden = [self.roundtrip(h, e["input_ids"]) for h, e in zip(low.hidden, low.encoded)]
        truncated = [d.id for d, c in zip(docs, low.cut) if c]
        out = [z[0] if isinstance(z, tuple) else z for z in self.outputs(hidden, batch_size)]
        if self.token:
            return [z[: h.shape[0]] for z, h in zip(out, hidden)], truncated
        return np.stack(out), truncated

    # ---- rows ------------------------------------------------------------------------------------
    def text_documents(self, docs: list[Document]) -> list[Document]:
        """The documents as this bundle reads them: a token bundle's as their words (word_document)."""
        return [word_document(d) for d in docs] if self.token else docs

    def rows(self, docs: list[Document], outputs: dict, lowered: Lowered) -> list[dict]:
        """Rows of documents given as text, from their outputs ({id: self.outputs' value}): prediction_rows,
        or a token bundle's words and a label per word (erpack.words.word_rows, as `erpack predict` writes)."""
        ids = [d.id for d in docs]
        if not self.token:
            return prediction_rows(ids, outputs, self.info, set(ids), None)
        tokens = {d.id: e["input_ids"] for d, e in zip(lowered.docs, lowered.encoded)}
        words = {d.id: (d.text.split(), d.where or f"document {d.id!r}") for d in docs}
        return word_rows(ids, outputs, tokens, words, self.tokenizer, self.bundle.max_length, self.info, set(ids),
                         None, MISSING)

    def predict_texts(self, texts, ids=None, batch_size: int = BATCH_SIZE, add_to_cache=None,
                      storage_options: dict | None = None) -> Predictions:
        """Rows for texts (strings, with `ids` or `text-N`, or erpack.corpus.Document objects); with
        `add_to_cache` (a cache folder or URL the bundle fits) the documents are appended to it as
        `erpack encode` would store them (ids it holds already are left as they are). A token bundle reads
        each text as its words (the text split at whitespace, joined by one space)."""
        docs = self.text_documents(as_documents(texts, ids))
        if not docs:
            return Predictions([])
        lowered = self.lower_texts(docs)
        hidden = [self.roundtrip(h, e["input_ids"]) for h, e in zip(lowered.hidden, lowered.encoded)]
        outputs = dict(zip([d.id for d in docs], self.outputs(hidden, batch_size)))
        rows = self.rows(docs, outputs, lowered)
        added = self.append(add_to_cache, lowered, storage_options) if add_to_cache is not None else 0
        return Predictions(rows, from_text=len(docs), truncated=[d.id for d, c in zip(docs, lowered.cut) if c],
                           added_to_cache=added)

    def append(self, cache, lowered: Lowered, storage_options: dict | None = None) -> int:
        """Append documents run through the lower graph to `cache` as one shard: the states before the codec
        (the cache's codec encodes them), token ids, token hashes and truncation, as `erpack encode` stores
        them; ids the cache holds are skipped. How many were added."""
        with CacheReader(cache, storage_options=storage_options) as reader:
            self.check_cache(reader)  # never write into a cache the bundle was not made for
            meta, codec = reader.meta, reader.codec
        docs, enc = lowered.docs, lowered.encoded
        hashes = {d.id: token_hash(e["input_ids"], e.get("token_type_ids"), c) for d, e, c in zip(docs, enc, lowered.cut)}
        ids = {d.id: np.asarray(e["input_ids"], dtype=np.int64) for d, e in zip(docs, enc)}
        with CacheWriter(cache, meta=meta, codec=codec, mode="append", on_duplicate="skip",
                         storage_options=storage_options) as w:
            done = w.commit_shard([(d.id, h) for d, h in zip(docs, lowered.hidden)],
                                  truncated=[d.id for d, c in zip(docs, lowered.cut) if c], token_hashes=hashes,
                                  token_ids=ids)
        return done["documents"]

    def refuse_ids(self) -> None:
        """The service's rule: a token bundle is sent texts or words, not cached ids (a cached record holds
        token states, not the words a row labels); `erpack predict BUNDLE CACHE --labels` gives them."""
        if self.token:
            raise InputError(f"bundle {self.bundle.folder} is a token-classification model: its rows give a label "
                             "per word, and a cached record holds no words; send the documents' texts (or words) "
                             "instead of cached ids, or predict the cached ids with `erpack predict BUNDLE CACHE "
                             "--labels WORD_LABELS` (a word label file or built-in token task gives their words)")

    def predict_ids(self, cache, ids=None, batch_size: int = BATCH_SIZE, allow_other_codec: bool = False,
                    storage_options: dict | None = None, words: dict | None = None, labels: dict | None = None,
                    words_from: str | None = None) -> Predictions:
        """Rows for cached documents (`ids`, default every one) of `cache` (a CacheReader, folder or URL);
        an id the cache does not hold gets a row with an `error`. A token bundle needs each cached document's
        `words` ({id: (words, where)}: the text the cache was encoded from, split at whitespace) and gives the
        rows `erpack predict GRAPH CACHE` gives (erpack.predict.cached_rows: the words placed on the token ids
        the cache stored); `labels` ({id: the true label of each word}) adds a row's `labels`; `words_from`
        names where the words were looked up, for the error when some lack them."""
        if isinstance(cache, CacheReader):
            return self._predict_ids(cache, ids, batch_size, allow_other_codec, words, labels, words_from)
        with CacheReader(cache, storage_options=storage_options) as reader:
            return self._predict_ids(reader, ids, batch_size, allow_other_codec, words, labels, words_from)

    def _predict_ids(self, reader, ids, batch_size: int, allow_other_codec: bool, words: dict | None,
                     labels: dict | None, words_from: str | None) -> Predictions:
        if not self.token and (words is not None or labels is not None):
            raise InputError(f"bundle {self.bundle.folder} predicts one label per document: words and labels per "
                             "word apply to a token-classification bundle; drop them")
        notes = self.check_cache(reader, allow_other_codec)
        requested = list(dict.fromkeys(str(i) for i in (reader.ids() if ids is None else ids)))
        found = [i for i in requested if i in reader]
        if self.token:
            self.require_words(found, words or {}, words_from)
        kw = {"words": words or {}, "tokenizer": self.tokenizer, "labels": labels} if self.token else {}
        rows = {r["id"]: r for r in cached_rows(self.upper, reader, found, self.info, batch_size, **kw)}
        missing = [i for i in requested if i not in rows]
        out = [rows.get(i, {"id": i, "error": MISSING.replace(" and no text given", "")}) for i in requested]
        return Predictions(out, from_cache=len(found), missing=missing, notes=notes)

    def require_words(self, ids: list[str], words: dict, words_from: str | None = None) -> None:
        """Refuse, before any work, cached documents of a token bundle without words (erpack.words.require_words)."""
        require_words(ids, words, "cached document", f" (not in {words_from})" if words_from else "",
                      f"bundle {self.bundle.folder} is a token-classification model, which labels each word of a "
                      "document: give each cached document's words (`erpack predict BUNDLE CACHE --labels "
                      "WORD_LABELS`, a word label file with id, words, labels or a built-in token task; "
                      "BundleRuntime.predict_ids(..., words={id: (words, where)})), or predict its text instead "
                      "(--texts, --text)")


def predict_bundle(bundle, cache=None, texts=None, text_file=None, ids=None, variant: str = "fp32",
                   device: str = "auto", batch_size: int = BATCH_SIZE, output=None, allow_other_codec: bool = False,
                   storage_options: dict | None = None, add_to_cache: bool = False, early_exit: bool = True,
                   exit_threshold: float | None = None, labels: str | None = None,
                   split: str | None = None) -> tuple[Predictions, BundleRuntime]:
    """`erpack predict BUNDLE`: rows for `texts` (strings: ids text-0, text-1, ...), for the documents of
    `text_file` (a corpus: all of them, or those of `ids`), and for cached `ids` of `cache` (all of them
    when neither texts nor ids are given). An id of `ids` is taken from `text_file` when the file has
    it, else from the cache; found nowhere, its row has an `error`. Rows in that order; written to
    `output` (a file or URL, atomically) when given. add_to_cache: the documents predicted from text are
    appended to `cache` (see BundleRuntime.append). early_exit, exit_threshold: a bundle with exit graphs
    (BundleRuntime). A token bundle's cached ids need their words: `labels`, a word label source (a file of
    id, words, labels, or a built-in token task), gives them and the true labels, which the rows carry and
    the result's metrics score per word as `erpack predict GRAPH CACHE --labels` does; `split` (no ids)
    predicts that split's documents of it. Reading `labels` imports erpack.train (torch)."""
    rt = load_runtime(bundle, variant, device, early_exit=early_exit, exit_threshold=exit_threshold)
    texts = list(texts or [])
    if not texts and text_file is None and cache is None:
        raise InputError("nothing to predict: give texts, a texts file, or a cache")
    label_rows = _word_label_rows(rt, labels, cache, split)
    docs = as_documents(texts)
    wanted = None if ids is None else list(dict.fromkeys(str(i) for i in ids))
    if wanted is None and split is not None:
        wanted = [r.id for r in label_rows.values() if r.split == split]
    if text_file is not None:
        pool = {}
        for d in iter_corpus(str(text_file), storage_options=storage_options):
            if wanted is None or d.id in wanted:
                pool.setdefault(d.id, d)
        docs += list(pool.values()) if wanted is None else [pool[i] for i in wanted if i in pool]
    taken = {d.id for d in docs}
    if len(taken) < len(docs):
        raise InputError("two documents share an id; give each text its own id")
    if add_to_cache and cache is None:
        raise InputError("adding texts to a cache needs the cache: give CACHE")
    result = rt.predict_texts(docs, batch_size=batch_size, add_to_cache=cache if add_to_cache else None,
                              storage_options=storage_options)
    from_cache = None
    if cache is not None and (wanted is not None or (not texts and text_file is None)):
        rest = None if wanted is None else [i for i in wanted if i not in taken]
        words, true = _words_of(label_rows)
        from_cache = rt.predict_ids(cache, rest, batch_size, allow_other_codec, storage_options, words, true,
                                    f"--labels {labels}" if labels is not None else None)
    elif wanted is not None:
        rest = [i for i in wanted if i not in taken]
        from_cache = Predictions([{"id": i, "error": "not in the texts file, and no cache given"} for i in rest],
                                 missing=rest)
    if from_cache is not None:
        result.rows += from_cache.rows
        result.from_cache, result.missing, result.notes = from_cache.from_cache, from_cache.missing, from_cache.notes
    if wanted is not None:  # the texts given one by one first, then the ids in the order asked
        by_id = {r["id"]: r for r in result.rows[len(texts):]}
        result.rows = result.rows[:len(texts)] + [by_id[i] for i in wanted if i in by_id]
    if label_rows is not None:
        from erpack.predict_words import cut_of, score_counts, word_counts  # erpack.train: torch

        names = list(rt.bundle.labels)
        result.metrics = score_counts(word_counts(result.rows, names), names)
        result.notes.append(cut_note(*cut_of(result.rows)))
    if output is not None:
        write_rows(output, result.rows, storage_options)
    return result, rt


def _word_label_rows(rt: BundleRuntime, labels: str | None, cache, split: str | None) -> dict | None:
    """{id: Example} of a token bundle's word label source (erpack.predict_words.word_label_rows), or None."""
    if labels is None:
        if split is not None:
            raise InputError("--split selects ids from --labels: give --labels too")
        return None
    if not rt.token:
        raise InputError(f"bundle {rt.bundle.folder} predicts one label per document: scoring it against labels "
                         "is not supported; score its upper graph (`erpack predict GRAPH CACHE --labels`) instead")
    if cache is None:
        raise InputError(f"--labels {labels} gives the words of cached documents: give the CACHE they are in")
    from erpack.predict_words import word_label_rows  # erpack.train: torch

    return word_label_rows(labels, list(rt.bundle.labels))


def _words_of(label_rows: dict | None) -> tuple[dict | None, dict | None]:
    """({id: (words, where)}, {id: true label per word}) of word label rows, or (None, None)."""
    if label_rows is None:
        return None, None
    from erpack.predict_words import true_labels
    from erpack.train.word_labels import words_of

    return {i: (words_of(r), r.where) for i, r in label_rows.items()}, true_labels(label_rows)


def load_runtime(folder, variant: str = "fp32", device: str = "auto", threads: int | None = None,
                 early_exit: bool = True, exit_threshold: float | None = None) -> BundleRuntime:
    """BundleRuntime(folder, ...), with a BundleError naming the folder when it is not a bundle."""
    if not Path(folder).exists():
        raise BundleError(f"bundle {folder} does not exist; write one with `erpack export TASK_MODEL --bundle DIR`")
    return BundleRuntime(folder, variant, device, threads, early_exit=early_exit, exit_threshold=exit_threshold)
