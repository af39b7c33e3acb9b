"""`erpack predict`: serve an exported upper-stack graph from the cache, and from text for new documents.

    s = predict("rt.int8-dynamic.onnx", "caches/rt", texts="new.jsonl", add_to_cache=True,
                output="predictions.jsonl")            # or predict(graph, cache, PredictOptions(...))
    s.predicted, s.missing, s.as_dict()                 # a PredictResult

Steps (one function each): open the graph and check it is an upper stack; check it fits the cache
(erpack.fit's rule: another encoder, layer or codec is refused with GraphCacheMismatchError before
any work); choose the documents; run the cached ones; run the ones given as text; append those to
the cache when asked; write the prediction lines; score them against labels when given.

- Cached documents: erpack.runtime.prefetch reads and decodes records (zstd and numpy release the
  GIL) into length-grouped padded batches in a background thread while onnxruntime runs the
  previous batch.
- Documents not in the cache but given in `texts` are tokenized as `erpack encode` does
  (erpack.tokens), run through the lower stack (erpack.runtime.lower: the exported lower graph if
  given, else PyTorch, the encoder found by the name the cache recorded and checked by its weights
  sha256), passed through the cache's codec (so their prediction equals the one a later run from the
  cache gives) and, with add_to_cache, appended.
- Requested ids found nowhere are never skipped in silence: each gets an output line with an
  `error`, and the result lists them (the CLI then exits 1).
- A token-classification graph (logits per token) predicts a label per word of each document:
  erpack.predict_words (the words come from --labels or --texts; a line holds the words, their labels
  and how many were cut off by max_length).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from erpack.batching import length_batches, pad_arrays
from erpack.corpus import iter_corpus
from erpack.depth.limits import check_graph_steps, graph_steps
from erpack.depth.ort import ExitGraphs, is_exit_graphs, refuse_exit_options
from erpack.errors import ExportError, InputError
from erpack.runtime.lower import run_lower, run_lower_onnx
from erpack.runtime.prefetch import Prefetcher
from erpack.store import CacheReader, CacheWriter
from erpack.store.atomic import write_atomic
from erpack.store.location import is_remote, is_url, open_location
from erpack.tasks import per_token
from erpack.tokens import token_hash, tokenize
from erpack.words import word_rows

MISSING = "not in the cache and no text given"


@dataclass
class PredictOptions:
    """What to predict and how. ids: None = every cached document, or, with `texts`, every document of
    that file (from the cache where it holds the id), or, with `split`, the ids of that split in `labels`."""

    ids: list[str] | None = None
    texts: str | None = None  # corpus whose documents are used for ids not in the cache
    add_to_cache: bool = False  # append the documents encoded from `texts` to the cache
    output: str | Path | None = None  # predictions JSONL
    batch_size: int = 32
    max_tokens: int = 16384
    device: str = "auto"  # onnxruntime: auto (CUDA when offered), cuda, cpu
    lower_graph: str | Path | None = None  # exported lower stack for `texts` (default: PyTorch)
    model: str | None = None  # where to load the encoder for `texts` when the cache's name is not found
    allow_other_codec: bool = False
    labels: str | None = None  # label source (as for `erpack eval`): the predictions are scored
    split: str | None = None  # with labels and no ids: the documents of this split
    storage_options: dict | None = None  # fsspec options for a cache or output given as a URL
    shard_cache: str | Path | None = None  # local folder for whole copies of a remote cache's shards
    early_exit: bool = True  # an exit-graph folder (erpack.depth.ort): False runs every layer
    exit_threshold: float | None = None  # an exit-graph folder: another threshold than the recorded one
    steps: int | None = None  # an ODE-step graph's step count, checked against its metadata (erpack.depth.limits)


@dataclass
class TextRun:
    """The documents predicted from text: how their lower stack ran, which were truncated, and how
    many were appended to the cache."""

    documents: int = 0
    lower: str | None = None  # "pytorch" or "onnx:PROVIDER"
    truncated: list[str] = field(default_factory=list)
    added_to_cache: int = 0


@dataclass
class PredictResult:
    """What `predict` did. `as_dict()` is the JSON document `erpack predict --json` prints."""

    graph: str
    cache: str
    variant: str | None
    task: str | None
    requested: int = 0
    predicted: int = 0
    from_cache: int = 0
    from_text: TextRun = field(default_factory=TextRun)
    missing: list[str] = field(default_factory=list)  # requested ids found nowhere
    provider: str = ""
    providers: list[str] = field(default_factory=list)
    output: str | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    inference_seconds: float = 0.0
    waited_on_reader_seconds: float = 0.0
    metrics: dict | None = None  # with labels: documents and accuracy (or mse, pearson; a token task's per word)
    steps: int | None = None  # an ODE-step graph: block evaluations per document (each line's "layers")

    def as_dict(self) -> dict:
        d = asdict(self)
        metrics, steps = d.pop("metrics"), d.pop("steps")
        d["documents_per_second"] = self.predicted / self.seconds if self.seconds else None
        if metrics is not None:
            d["metrics"] = metrics
        if steps is not None:  # an ODE-step graph only: a plain graph's document keeps its fields
            d["steps"] = steps
        return d


@dataclass
class Selection:
    """Which requested documents come from where."""

    requested: list[str]  # in request order, each once
    cached: list[str]  # in the cache
    text_docs: list  # erpack.corpus.Document, in request order, not in the cache but in `texts`
    missing: list[str]  # found nowhere


def read_ids_file(path) -> list[str]:
    """Ids one per line (blank lines and # comments skipped), or JSONL objects with an `id`."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"ids file {p} does not exist")
    out = []
    for number, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{p}:{number}: malformed JSON ({exc.msg}); give one id per line") from None
            if "id" not in obj:
                raise InputError(f"{p}:{number}: the object has no `id`")
            line = str(obj["id"])
        out.append(line)
    return out


def predict(graph, cache, progress: Callable | None = None, **fields) -> PredictResult:
    """Predictions of the upper-stack `graph` for documents of `cache` (and of the `texts` field).

    `fields` are PredictOptions fields: predict(graph, cache, ids=["d1"], output="p.jsonl").
    `progress(total=..., desc=..., unit=...)` makes a tqdm-like bar.
    """
    opts = PredictOptions(**fields)
    t_start = time.perf_counter()
    sess, info = open_upper(graph, opts.device, early_exit=opts.early_exit, exit_threshold=opts.exit_threshold)
    steps = check_graph_steps(info, opts.steps, graph)
    label_rows = read_label_rows(opts.labels, info)
    token = per_token(info)
    result = PredictResult(graph=str(graph), cache=str(cache), variant=info.get("variant"), task=info.get("task"),
                           provider=sess.provider, providers=list(sess.providers),
                           output=str(opts.output) if opts.output is not None else None, steps=steps)
    cache = _where(cache, opts.storage_options)
    with CacheReader(cache, shard_cache=opts.shard_cache) as reader:
        result.notes = _check_fit(info, reader, graph, opts) + list(sess.notes)
        chosen = _select(reader, opts, label_rows, result.notes)
        words = _words(chosen, label_rows, opts) if token else None  # refused before any work when lacking
        bar = progress(total=len(chosen.cached) + len(chosen.text_docs), desc="predict", unit="doc") if progress else None
        try:
            logits = _run_cached(sess, reader, chosen.cached, opts, bar, result)
            encoded = _encode_texts(reader, chosen.text_docs, opts) if chosen.text_docs else None
            if encoded is not None:
                logits.update(_run_arrays(sess, chosen.text_docs, encoded.hidden, opts, bar))
                result.from_text = TextRun(len(chosen.text_docs), encoded.how, encoded.truncated)
            meta, codec = reader.meta, reader.codec
            if token:
                tokens = {i: reader.get_tokens(i) for i in chosen.cached}
                tokens.update(zip([d.id for d in chosen.text_docs], encoded.token_ids if encoded else []))
                tokenizer = encoded.tokenizer if encoded is not None else reader_tokenizer(reader, opts.model)
                max_length = reader.meta.get("max_length")
        finally:
            if bar:
                bar.close()
    if encoded is not None and opts.add_to_cache:  # the reader is closed: the writer appends one shard
        result.from_text.added_to_cache = _append(cache, meta, codec, chosen.text_docs, encoded)
    text_ids = {d.id for d in chosen.text_docs}
    if token:
        from erpack.predict_words import true_labels

        rows = word_rows(chosen.requested, logits, tokens, words, tokenizer, max_length, info, text_ids,
                         true_labels(label_rows), MISSING)
    else:
        rows = prediction_rows(chosen.requested, logits, info, text_ids, label_rows)
    if opts.output is not None:
        write_rows(opts.output, rows, opts.storage_options)
    result.requested, result.predicted, result.missing = len(chosen.requested), len(logits), chosen.missing
    result.from_cache = len(chosen.cached)
    if label_rows is not None:
        result.metrics = _score(rows, label_rows, info)
    if token and result.predicted:
        from erpack.predict_words import cut_of

        result.notes.append(cut_note(*cut_of(rows)))
    result.seconds = time.perf_counter() - t_start
    return result


def open_upper(graph, device: str, threads: int | None = None, early_exit: bool = True,
               exit_threshold: float | None = None):
    """(session, metadata) of an upper-stack graph; another part is refused. threads: onnxruntime's
    intra-op threads (default: its own choice). An exit-graph folder (erpack.depth.ort) gives an ExitGraphs,
    whose run() also returns the layers each document ran; an exit option with a plain graph is refused."""
    from erpack.export.metadata import read_metadata
    from erpack.export.session import create_session

    if is_exit_graphs(graph):
        graphs = ExitGraphs(graph, device, threads, exit_threshold, early_exit)
        return graphs, graphs.info
    refuse_exit_options(graph, exit_threshold)
    sess = create_session(graph, device, threads)
    info = read_metadata(sess.session)
    if info.get("part") != "upper":
        raise ExportError(f"{graph} is the {info.get('part')} part; predict needs the upper graph (erpack export "
                          "TASK_MODEL -o FILE.onnx)")
    return sess, info


def read_label_rows(labels, info: dict) -> dict | None:
    """{id: erpack.train.labels.Example} of the label source, or None without one (a token task's:
    its words and their labels)."""
    if labels is None:
        return None
    if per_token(info):
        from erpack.predict_words import word_label_rows

        return word_label_rows(labels, list(info.get("labels") or []))
    from erpack.train.labels import read_labels

    task = "regression" if info.get("task") == "regression" else "classification"
    return {r.id: r for r in read_labels(labels, task)}


def _words(chosen: Selection, label_rows: dict | None, opts: PredictOptions) -> dict:
    """{id: (words, where)} of the documents a token graph predicts (erpack.predict_words)."""
    from erpack.predict_words import document_words

    return document_words(chosen.cached + [d.id for d in chosen.text_docs], label_rows, opts.texts, chosen.text_docs,
                          opts.labels)


def reader_tokenizer(reader, model: str | None):
    """The tokenizer of the encoder the open cache records (at `model`, the user's --model)."""
    from erpack.train.word_targets import cache_tokenizer

    return cache_tokenizer(reader.meta["model"], model)


def cut_note(words: int, documents: int) -> str:
    """How many words were cut off by max_length (they have no prediction: label null), in how many documents."""
    return (f"{words} word(s) of {documents} document(s) lie past max_length: their label is null and they are "
            "not scored" if documents else "every word was predicted (none past max_length)")


def _check_fit(info: dict, reader, graph, opts: PredictOptions) -> list[str]:
    from erpack.export.metadata import check_cache

    return check_cache(info, reader, f"graph {graph}", opts.allow_other_codec)


def requested_ids(reader, opts: PredictOptions, label_rows: dict | None) -> list[str]:
    """The ids asked for, in order (repeats kept): given, a split of the labels, every document of
    `texts`, or every cached one. (`texts` used to add its documents to every cached one: asked for one
    new sentence, predict ran the whole cache.)"""
    if opts.ids is not None:
        return [str(i) for i in opts.ids]
    if opts.split is not None:
        if label_rows is None:
            raise InputError("--split selects ids from --labels: give --labels too")
        return [r.id for r in label_rows.values() if r.split == opts.split]
    if opts.texts is not None:
        return [d.id for d in iter_corpus(str(opts.texts))]
    return reader.ids()


def _select(reader, opts: PredictOptions, label_rows: dict | None, notes: list[str]) -> Selection:
    """Where each requested document comes from; a note when ids were repeated."""
    ids = requested_ids(reader, opts, label_rows)
    requested = list(dict.fromkeys(ids))
    if len(requested) < len(ids):
        notes.append(f"{len(ids) - len(requested)} repeated id(s) given; each is predicted once")
    absent = [i for i in requested if i not in reader]
    found = _texts(opts.texts, set(absent)) if absent and opts.texts is not None else {}
    return Selection(requested, [i for i in requested if i in reader], [found[i] for i in absent if i in found],
                     [i for i in absent if i not in found])


def _texts(source, wanted: set[str]) -> dict:
    return {d.id: d for d in iter_corpus(str(source)) if d.id in wanted}


def _run_cached(sess, reader, ids: list[str], opts: PredictOptions, bar, result: PredictResult) -> dict:
    """{id: logits} of cached documents, batches read and decoded ahead in a background thread; the
    seconds spent in inference and waiting on the reader go into `result`."""
    plan = length_batches([reader.info(i)["tokens"] for i in ids], opts.batch_size, opts.max_tokens)
    source = Prefetcher(plan, lambda rows: reader.get_batch([ids[i] for i in rows]))  # (B, T, H), (B, T)
    logits = {}
    for rows, (hidden, mask) in source:
        t0 = time.perf_counter()
        outs = sess.run({"hidden_states": hidden, "attention_mask": mask})
        result.inference_seconds += time.perf_counter() - t0
        logits.update((ids[i], graph_row(outs, r)) for r, i in enumerate(rows))
        if bar:
            bar.update(len(rows))
    result.waited_on_reader_seconds = source.wait_seconds
    return logits


def _run_arrays(sess, docs: list, hidden: list[np.ndarray], opts: PredictOptions, bar) -> dict:
    """{id: logits} of documents given as (T, H) arrays, padded in length-grouped batches."""
    logits = {}
    for rows in length_batches([h.shape[0] for h in hidden], opts.batch_size, opts.max_tokens):
        batch, mask = pad_arrays([hidden[i] for i in rows])  # (B, T, H), (B, T)
        outs = sess.run({"hidden_states": batch, "attention_mask": mask})
        logits.update((docs[i].id, graph_row(outs, r)) for r, i in enumerate(rows))
        if bar:
            bar.update(len(rows))
    return logits


def graph_row(outs: list, r: int):
    """Row r of a graph's outputs: its logits, or (logits, layers) from exit graphs (erpack.depth.ort)."""
    return (outs[0][r], int(outs[1][r])) if len(outs) > 1 else outs[0][r]


@dataclass
class Encoded:
    """Text documents run through the lower stack as `erpack encode` would store them."""

    hidden: list[np.ndarray]  # per document (T, H) float32, after the cache's codec round trip
    truncated: list[str]  # ids cut at max_length
    hashes: dict[str, int]  # id -> token hash
    how: str  # "pytorch" or "onnx:PROVIDER"
    token_ids: list[np.ndarray] = field(default_factory=list)  # per document (T,) int64: the ids the lower stack ran
    tokenizer: object = None


def _encode_texts(reader, docs: list, opts: PredictOptions) -> Encoded:
    """Hidden states entering layer k for text documents, after the cache's codec round trip, with
    the truncated ids and each document's token hash (what `erpack encode` would store)."""
    tokenizer, run, how = _lower_runner(reader, opts)
    encoded, cut = tokenize(tokenizer, docs, reader.meta["max_length"])
    hidden = run(encoded, tokenizer.pad_token_id or 0)
    codec = reader.codec
    roundtrip = [codec.decode(codec.encode(h), shape=h.shape) for h in hidden]
    hashes = {d.id: token_hash(e["input_ids"], e.get("token_type_ids"), c) for d, e, c in zip(docs, encoded, cut)}
    return Encoded(roundtrip, [d.id for d, c in zip(docs, cut) if c], hashes, how,
                   [np.asarray(e["input_ids"], dtype=np.int64) for e in encoded], tokenizer)


def _lower_runner(reader, opts: PredictOptions):
    """(tokenizer, run(encoded, pad_id) -> list of (T, H), how) for the encoder the cache was made with."""
    from erpack.models import recorded_location  # torch and transformers

    if opts.lower_graph is None:
        return _torch_lower(reader, opts.model)
    return _onnx_lower(reader, opts.model or recorded_location(reader.meta["model"]), opts.lower_graph, opts.device)


def _torch_lower(reader, model_override: str | None):
    """The encoder the cache records (or `model_override`, checked against the recorded weights sha256),
    in PyTorch on the CPU."""
    from erpack.models import load_recorded, split_model  # torch and transformers

    loaded = load_recorded(reader.meta["model"], model_override, f"the cache {getattr(reader, 'location', None) or reader.path}")
    lower, _ = split_model(loaded.model, reader.meta["layer"])
    return loaded.tokenizer, lambda enc, pad: run_lower(lower, enc, pad, "cpu"), "pytorch"


def _onnx_lower(reader, name: str, lower_graph, device: str):
    """An exported lower graph, refused unless it fits the cache (the codec aside: it never sees it)."""
    from erpack.export.metadata import check_cache, read_metadata
    from erpack.export.session import create_session
    from erpack.train.word_targets import cache_tokenizer

    sess = create_session(lower_graph, device)
    info = read_metadata(sess.session)
    if info.get("part") != "lower":
        raise ExportError(f"{lower_graph} is the {info.get('part')} part; --lower needs a graph exported with --part lower")
    check_cache(info, reader, f"graph {lower_graph}", allow_other_codec=True)
    tokenizer = cache_tokenizer(reader.meta["model"], name)
    return tokenizer, lambda enc, pad: run_lower_onnx(sess, enc, pad), f"onnx:{sess.provider}"


def _append(cache, meta: dict, codec, docs: list, encoded: Encoded) -> int:
    """Append the documents encoded from text to the cache as one shard; how many were added."""
    with CacheWriter(cache, meta=meta, codec=codec, mode="append", on_duplicate="skip") as w:
        done = w.commit_shard([(d.id, h) for d, h in zip(docs, encoded.hidden)], truncated=encoded.truncated,
                              token_hashes=encoded.hashes,  # and the token ids, as `erpack encode` keeps them
                              token_ids={d.id: ids for d, ids in zip(docs, encoded.token_ids)})
    return done["documents"]


def write_rows(path, rows: list[dict], storage_options: dict | None = None) -> None:
    """The prediction lines, fsynced and renamed (one PUT at a URL): a kill leaves the old file or the new one."""
    data = "".join(json.dumps(row) + "\n" for row in rows).encode("utf-8")
    if is_remote(str(path)):
        folder, _, name = str(path).rstrip("/").rpartition("/")
        open_location(folder, storage_options).write_atomic(name, data)
        return
    path = Path(str(path).removeprefix("file://"))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)


def _where(cache, storage_options: dict | None):
    """A cache URL as a Location carrying the storage options; a path or Location unchanged."""
    return open_location(cache, storage_options) if is_url(cache) else cache


def per_document_only(info: dict, what: str) -> None:
    """Refuse a token-classification graph where the lines are one prediction per document."""
    if per_token(info):
        raise ExportError(f"{what} writes one prediction per document; this graph is a token-classification one "
                          "(a label per word, which needs each document's words): run `erpack predict GRAPH CACHE "
                          "--labels WORD_LABELS (or --texts CORPUS) -o FILE` instead")


def cached_rows(sess, reader, ids: list[str], info: dict, batch_size: int = 32, max_tokens: int = 16384,
                words: dict | None = None, tokenizer=None, labels: dict | None = None) -> list[dict]:
    """Prediction rows of the cached documents `ids` (in their order), exactly as `predict` writes them:
    what each worker of the distributed scorer (erpack.cluster.score) runs on its share of the ids, and a
    bundle's runtime on cached ids. A token graph's rows (erpack.words.word_rows) need each document's
    `words` ({id: (words, where)}, erpack.predict_words.document_words) and the cache's `tokenizer`: the
    words are placed on the token ids the cache stored with each record, cut at the cache's max_length, as
    `predict` places them; `labels` ({id: true label per word}) adds each row's `labels`."""
    token = per_token(info)
    if token and (words is None or tokenizer is None):
        per_document_only(info, "this scorer (no words given)")
    result = PredictResult(graph="", cache="", variant=None, task=None)
    logits = _run_cached(sess, reader, ids, PredictOptions(batch_size=batch_size, max_tokens=max_tokens), None, result)
    if not token:
        return prediction_rows(ids, logits, info, set(), None)
    tokens = {i: reader.get_tokens(i) for i in ids}
    return word_rows(ids, logits, tokens, words, tokenizer, reader.meta.get("max_length"), info, set(), labels, MISSING)


def prediction_rows(requested, logits, info, text_docs, label_rows) -> list[dict]:
    names = info.get("labels") or []
    out = []
    for doc_id in requested:
        if doc_id not in logits:
            out.append({"id": doc_id, "error": MISSING})
            continue
        row = {"id": doc_id, "source": "text" if doc_id in text_docs else "cache"}
        z = logits[doc_id]
        if isinstance(z, tuple):  # exit graphs: the upper layers the document ran
            z, row["layers"] = z
        z = z.astype(np.float64)
        if info.get("task") == "regression":
            row["score"] = float(z[0])
        else:
            p = np.exp(z - z.max())
            p /= p.sum()
            k = int(p.argmax())
            row["predicted"] = names[k] if k < len(names) else k
            row["probabilities"] = {str(names[j] if j < len(names) else j): round(float(v), 6) for j, v in enumerate(p)}
        if graph_steps(info) is not None:
            row["layers"] = graph_steps(info)
        if label_rows is not None and doc_id in label_rows:
            row["label"] = label_rows[doc_id].label
        out.append(row)
    return out


def _score(rows, label_rows, info) -> dict:
    if per_token(info):
        from erpack.predict_words import score_words

        return score_words(rows, list(info.get("labels") or []))
    scored = [r for r in rows if "error" not in r and r["id"] in label_rows]
    if not scored:
        return {"documents": 0}
    if info.get("task") == "regression":
        y = np.array([float(label_rows[r["id"]].label) for r in scored])
        s = np.array([r["score"] for r in scored])
        return {"documents": len(scored), "mse": float(((y - s) ** 2).mean()),
                "pearson": float(np.corrcoef(y, s)[0, 1]) if len(scored) > 1 else None}
    correct = sum(str(r["predicted"]) == str(label_rows[r["id"]].label) for r in scored)
    return {"documents": len(scored), "accuracy": correct / len(scored)}
