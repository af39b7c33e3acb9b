"""Run a model's lower stack over a corpus into an activation cache (`erpack encode`).

The corpus is checked whole first (erpack.corpus), then processed in chunks of `shard_size`
documents in corpus order. Each chunk is tokenized, grouped by length into batches (little
padding), run through layers 0..k-1, and committed as one shard: the non-padding tokens of each
document, encoded by the codec pipeline. Memory holds one chunk at a time.

Cached ids: every record keeps a hash of the token ids that made it (`token_hash`, stored in the
shard index). A document whose id is cached is tokenized and compared: the same tokens are skipped
(unchanged); other tokens stop the run with an error naming the document (`on_duplicate="error"`),
are kept stale on request ("skip", counted and warned), or are encoded again ("replace"). A cached
record without a hash (a version-1 shard) cannot be compared: it is kept, with a warning.

Resuming: a chunk whose documents are all cached and unchanged was committed by an earlier run and
is skipped, so running the same command again after a crash continues where it stopped. Because a
chunk's batches depend only on the chunk, the records equal those of an uninterrupted run.

The cache and the corpus may be at URLs (s3://bucket/prefix, memory://..., with `storage_options`
for the fsspec file system): shards are published whole under their final names and the manifest,
written last, lists them, so resume and append work there as in a local folder (the writer deletes
the unlisted shards an interrupted run left). A remote cache has no lock: run one encode at a time
into it (a second writer opening it would delete the first one's unlisted shards).

Tokenizing (erpack.tokens) cuts a long text first, so a 10 MB line costs what its first tokens cost.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from itertools import islice

import numpy as np

from erpack.codecs import Pipeline
from erpack.corpus import Columns, Document, check_corpus, iter_corpus
from erpack.errors import InputError
from erpack.runtime.device import resolve_device
from erpack.runtime.lower import run_lower
from erpack.store import CacheWriter
from erpack.tokens import token_hash, tokenize

DEFAULT_CODEC = "int8c+zstd:3"


@dataclass
class EncodeSummary:
    output: str
    model: str
    layer: int
    codec: str
    device: str
    documents_in_corpus: int = 0
    encoded: int = 0
    already_in_cache: int = 0  # cached ids not encoded again: unchanged + unverified + kept_changed
    unchanged: int = 0  # cached with the same token hash
    unverified: int = 0  # cached without a token hash (e.g. a version-1 shard): kept, not compared
    kept_changed: int = 0  # cached with another token hash, kept because on_duplicate="skip"
    kept_changed_ids: list[str] = field(default_factory=list)
    replaced: int = 0  # cached ids encoded again (on_duplicate="replace")
    tokens: int = 0
    truncated: int = 0
    truncated_ids: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cache_documents: int = 0
    cache_tokens: int = 0
    cache_bytes: int = 0
    removed_leftovers: list[str] = field(default_factory=list)
    existing_documents: int = 0  # documents the cache held before this run (appended to when > 0)
    warnings: list[str] = field(default_factory=list)  # things the user should know, one sentence each
    engine: str = "single"  # "ray": erpack.cluster.encode
    workers: int = 1
    # Ray: from the first batch a worker started to the last one finished (wall clock), leaving out
    # Ray's start and the workers' model load: the rate a long run settles at is encoded / this.
    workers_seconds: float | None = None

    def as_dict(self) -> dict:
        d = asdict(self)
        d["truncated_ids"] = d["truncated_ids"][:20]
        d["kept_changed_ids"] = d["kept_changed_ids"][:20]
        d["documents_per_second"] = self.encoded / self.seconds if self.seconds else None
        d["tokens_per_second"] = self.tokens / self.seconds if self.seconds else None
        d["bytes_per_token"] = self.cache_bytes / self.cache_tokens if self.cache_tokens else None
        d["appended"] = self.appended
        return d

    @property
    def appended(self) -> bool:
        """This run added documents to a cache that held some before it."""
        return bool(self.existing_documents and self.encoded)


def default_max_length(tokenizer, config) -> int:
    """The longest input the model takes: the tokenizer's limit, capped at 512."""
    limit = getattr(tokenizer, "model_max_length", 512) or 512
    return int(min(limit, 512, getattr(config, "max_position_embeddings", 512)))


def cache_meta(loaded, layer: int, max_length: int) -> dict:
    """What the cache records about how it was made (checked again when appending or training)."""
    tok = loaded.tokenizer
    return {
        "model": loaded.identity(),
        "layer": layer,
        "max_length": max_length,
        "tokenizer": {
            "class": type(tok).__name__,
            "vocab_size": len(tok),
            "lowercase": bool(getattr(tok, "do_lower_case", False)),
            "special_tokens": True,
            "truncation": "longest_first",
        },
    }


def _chunks(docs: Iterable[Document], size: int) -> Iterator[list[Document]]:
    it = iter(docs)
    while chunk := list(islice(it, size)):
        yield chunk


ON_DUPLICATE = ("error", "skip", "replace")


def _triage(writer, chunk: list[Document], hashes: list[int], on_duplicate: str, summary: EncodeSummary) -> list[int]:
    """Positions in chunk to encode. Cached ids are compared by token hash: unchanged ones, ones with
    no stored hash, and (with "skip") changed ones are counted in summary and left out; a changed one
    raises with "error". Nothing is written here."""
    todo, changed = [], []
    for k, (doc, h) in enumerate(zip(chunk, hashes)):
        if doc.id not in writer or on_duplicate == "replace":
            todo.append(k)
            continue
        old = writer.token_hash(doc.id)
        if old is None:
            summary.unverified += 1
        elif old == h:
            summary.unchanged += 1
        elif on_duplicate == "skip":
            summary.kept_changed += 1
            summary.kept_changed_ids.append(doc.id)
        else:
            changed.append(doc)
    if changed:
        doc, more = changed[0], (f" ({len(changed) - 1} more in the same shard)" if len(changed) > 1 else "")
        done = f"; the {summary.encoded} documents committed before it are kept" if summary.encoded else ""
        raise InputError(
            f"{doc.where}: document {doc.id!r} changed since it was encoded into {summary.output}: its "
            f"tokens differ from the cached record's{more}. Nothing of this shard was written{done}. "
            f"Pass --on-duplicate replace to encode changed documents again, or --on-duplicate skip to "
            f"keep the cached records"
        )
    return todo


def _warnings(summary: EncodeSummary, corpus_warnings: list[str]) -> list[str]:
    out = list(corpus_warnings)
    if summary.unverified:
        out.append(
            f"{summary.unverified} cached document(s) have no token hash (written by erpack before shard "
            f"version 2, or by a caller that gave none), so they were kept without checking that their text "
            f"is unchanged; pass --on-duplicate replace to encode them again"
        )
    if summary.kept_changed:
        out.append(
            f"{summary.kept_changed} document(s) changed since they were cached and were kept stale "
            f"(--on-duplicate skip), e.g. {', '.join(summary.kept_changed_ids[:5])}; pass --on-duplicate "
            f"replace to encode them again"
        )
    return out


@dataclass
class LowerRun:
    """The loaded model cut at layer k, and what running its lower stack needs."""

    loaded: object  # erpack.models.LoadedModel
    lower: object  # the LowerStack of layers 0..k-1
    layer: int
    max_length: int
    device: object  # torch.device
    pad_id: int

    @classmethod
    def open(cls, model: str, layer: int | None, max_length: int | None, device) -> LowerRun:
        """Load `model` on `device` and split it at `layer` (default: the middle, L // 2)."""
        from erpack.models import load_model, split_model

        dev = resolve_device(device)
        loaded = load_model(model, device=dev)
        k = loaded.num_layers // 2 if layer is None else layer
        if not 0 <= k <= loaded.num_layers:
            raise InputError(f"--layer must be between 0 and {loaded.num_layers} for {model}, got {k}")
        max_length = max_length or default_max_length(loaded.tokenizer, loaded.config)
        lower, _ = split_model(loaded.model, k)
        return cls(loaded, lower, k, max_length, dev, loaded.tokenizer.pad_token_id or 0)


class _Bar:
    """The encode bar (None without `progress`): documents done, and tokens per second as its postfix."""

    def __init__(self, progress: Callable | None, total: int):
        self.bar = progress(total=total, desc="encode", unit="doc") if progress else None
        self.start = time.perf_counter()
        self.tokens = 0  # tokens run through the lower stack so far

    def skipped(self, docs: int) -> None:
        if self.bar is not None and docs:
            self.bar.update(docs)

    def on_batch(self, docs: int, tokens: int) -> None:
        self.tokens += tokens
        if self.bar is not None:
            self.bar.update(docs)
            elapsed = time.perf_counter() - self.start
            self.bar.set_postfix(tok_s=f"{self.tokens / max(elapsed, 1e-9):.0f}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:  # ends the bar's line, so whatever is printed next (an error too) starts a line of its own
            self.bar.close()


def _check_options(shard_size: int, on_duplicate: str) -> None:
    if shard_size < 1:
        raise InputError(f"shard_size must be >= 1, got {shard_size}")
    if on_duplicate not in ON_DUPLICATE:
        raise InputError(f"on_duplicate must be one of {ON_DUPLICATE}, got {on_duplicate!r}")


@dataclass
class Tokenized:
    """A list of documents' token ids (erpack.tokens.tokenize), which were cut, and their token hashes."""

    docs: list[Document]
    encoded: list[dict]
    cut: list[bool]
    hashes: list[int]

    @classmethod
    def of(cls, run: LowerRun, docs: list[Document]) -> Tokenized:
        encoded, cut = tokenize(run.loaded.tokenizer, docs, run.max_length)
        hashes = [token_hash(e["input_ids"], e.get("token_type_ids"), c) for e, c in zip(encoded, cut)]
        return cls(docs, encoded, cut, hashes)

    def lower(self, run: LowerRun, todo: list[int], batch_size: int, max_tokens: int,
              on_batch: Callable | None = None
              ) -> tuple[list[tuple[str, object]], list[str], dict[str, int], dict[str, np.ndarray]]:
        """Run documents `todo` (positions) through the lower stack in length-grouped batches: their
        records [(id, float32 (T, H))], the ids that were truncated, {id: token hash} and {id: input ids
        (T,)} (the non-padding tokens each record holds); what a shard of them holds, whichever engine
        writes it."""
        arrays = run_lower(run.lower, [self.encoded[i] for i in todo], run.pad_id, run.device, batch_size,
                           max_tokens, on_batch)
        records = [(self.docs[i].id, a) for i, a in zip(todo, arrays)]
        truncated = [self.docs[i].id for i in todo if self.cut[i]]
        ids = {self.docs[i].id: np.asarray(self.encoded[i]["input_ids"], dtype=np.int64) for i in todo}
        return records, truncated, {self.docs[i].id: self.hashes[i] for i in todo}, ids


def _encode_chunk(writer, chunk: list[Document], run: LowerRun, on_duplicate: str, summary: EncodeSummary,
                  bar: _Bar, batch_size: int, max_tokens: int) -> None:
    """Tokenize a chunk, leave out what is cached (see _triage), run the rest through the lower stack
    and commit it as one shard; counted in summary."""
    tok = Tokenized.of(run, chunk)
    todo = _triage(writer, chunk, tok.hashes, on_duplicate, summary)
    bar.skipped(len(chunk) - len(todo))
    if not todo:  # committed by an earlier run (resume) or all unchanged
        return
    records, truncated, hashes, ids = tok.lower(run, todo, batch_size, max_tokens, bar.on_batch)
    arrays = [a for _, a in records]
    info = writer.commit_shard(records, truncated=truncated, token_hashes=hashes, token_ids=ids)
    summary.encoded += info["documents"]
    summary.replaced += info["replaced"]
    summary.tokens += sum(a.shape[0] for a in arrays)
    summary.truncated += len(truncated)
    summary.truncated_ids.extend(truncated)


def _finish(summary: EncodeSummary, counts: dict, corpus_warnings: list[str], seconds: float) -> EncodeSummary:
    """The run's totals and warnings, and what the cache holds after it."""
    summary.seconds = seconds
    summary.already_in_cache = summary.unchanged + summary.unverified + summary.kept_changed
    summary.warnings = _warnings(summary, corpus_warnings)
    summary.cache_documents = counts["documents"]
    summary.cache_tokens = counts["tokens"]
    summary.cache_bytes = counts["bytes"]
    return summary


def encode_corpus(
    source: str,
    output: str,
    model: str = "minilm",
    layer: int | None = None,
    codec: str = DEFAULT_CODEC,
    max_length: int | None = None,
    batch_size: int = 32,
    max_tokens: int = 16384,
    shard_size: int = 1024,
    on_duplicate: str = "error",
    device: str | None = None,
    progress: Callable | None = None,
    id_column: str | None = None,
    text_column: str | None = None,
    text_pair_column: str | None = None,
    storage_options: dict | None = None,
) -> EncodeSummary:
    """Encode `source` (JSONL, CSV, Parquet, a folder or glob of them, local or at a URL, or a built-in
    data set) into the cache `output`: a folder, a URL (s3://bucket/prefix, memory://...) or a Location.
    `storage_options` go to the fsspec file systems of URLs (default: the environment, AWS_* for S3).

    `layer` defaults to the middle (L // 2). `progress(total=..., desc=...)` makes a tqdm-like bar.
    `on_duplicate`: what a document whose id is cached does when its tokens changed: "error" (stop,
    nothing of its shard written), "skip" (keep the cached record, warned) or "replace" (encode
    every cached id again); unchanged ones are skipped except with "replace". `id_column`,
    `text_column`, `text_pair_column`: the fields or columns holding ids, texts and second texts
    (default `id`, `text`, `text_pair`; a CSV without an id column gets generated ids, warned).
    """
    _check_options(shard_size, on_duplicate)
    pipeline = Pipeline.from_spec(codec)  # an unknown codec fails here, before any work
    columns = Columns.of(id_column, text_column, text_pair_column)
    checked = check_corpus(source, columns=columns, storage_options=storage_options)
    run = LowerRun.open(model, layer, max_length, device)
    summary = EncodeSummary(output=str(output), model=model, layer=run.layer, codec=pipeline.spec,
                            device=str(run.device), documents_in_corpus=checked.documents)
    bar = _Bar(progress, checked.documents)
    try:
        with CacheWriter(output, meta=cache_meta(run.loaded, run.layer, run.max_length), codec=pipeline,
                         mode="append", on_duplicate=on_duplicate, storage_options=storage_options) as writer:
            summary.removed_leftovers = list(writer.removed)
            summary.existing_documents = writer.manifest["counts"]["documents"]
            docs = iter_corpus(source, columns=columns, storage_options=storage_options)
            for chunk in _chunks(docs, shard_size):
                _encode_chunk(writer, chunk, run, on_duplicate, summary, bar, batch_size, max_tokens)
            counts = writer.manifest["counts"]
    finally:
        bar.close()
    return _finish(summary, counts, checked.warnings, time.perf_counter() - bar.start)
