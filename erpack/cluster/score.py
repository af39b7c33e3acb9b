"""Distributed scoring on Ray Data: an exported upper-stack graph over the records of a cache, predictions
written as Parquet or JSONL parts (`erpack predict GRAPH CACHE --engine ray --out URL`).

    s = score_on_ray("rt.onnx", "s3://bucket/caches/rt", "s3://bucket/predictions/rt", workers=2)
    s.documents, s.parts, s.as_dict()                       # a ScoreResult

The driver opens the cache once (the graph must fit it, as for `erpack predict`), splits the ids into
parts of `part_docs` documents and hands them to Ray Data (`from_items` + `map_batches` with an actor
class). Each actor opens the graph with onnxruntime once (the driver ships its bytes through the object
store, so workers need no shared disk) and a CacheReader on the cache (path or URL), scores its parts in
length-grouped batches exactly as the single-process `erpack predict` does (erpack.predict.cached_rows),
and writes each part whole under its final name (Location.write_atomic: a rename locally, one PUT on
object storage). Part names depend only on the part number, so a task Ray retries after a worker died
rewrites the same part.

A token-classification graph (a label per word, erpack.predict_words) needs each document's words: the
driver reads them from `labels` (a word label file or a built-in token task, checked as `erpack predict`
checks it: a document without words is refused before any work, naming the file) and hands each part's
words, with its ids, to the actor in the part's item (JSON: {id: [words, where, true labels]}); the
cache's tokenizer travels once through the object store, as the graph does. The actor places the words
on the token ids each cached record holds (erpack.predict.cached_rows, erpack.words.word_rows: the rows
`erpack predict` writes), so a word file whose words are not a record's text fails that part naming
the document and the file. Each actor also returns its part's sums (words cut off by max_length, and
the confusion counts of the words against their true labels: erpack.predict_words.word_counts), from
which the driver gives the single engine's note and per-word scores without reading the parts back.

Why the words travel with the ids rather than each actor reading the word file: the file is the
driver's (a local path, or a built-in task the driver downloaded), which a cluster node need not have,
and each actor would read it whole; the words are small beside the records the actor reads anyway:
1,000 BBC articles' words and labels are 5.0 MB of JSON (measured: 342 words a document, 0.07 s to
encode), their cached records at int8 24 MB at max_length 64 (64 tokens x 384) and about 155 MB at 512.

When every part is written, the driver writes `_parts.json` (each part's name,
rows, bytes and sha256), last: a run that stops early leaves no listing, and a rerun first removes the
old listing and parts. Read the result with `read_parts(out)`, which checks each part against it.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from erpack import errors
from erpack.cluster.session import connect, worker_env
from erpack.errors import ErpackError, InputError, StoreError
from erpack.predict import (
    PredictOptions,
    cached_rows,
    cut_note,
    open_upper,
    read_label_rows,
    reader_tokenizer,
    requested_ids,
)
from erpack.store import CacheReader
from erpack.store.location import Location, open_location
from erpack.tasks import per_token

PARTS = "_parts.json"
RAISED = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception)): .*$", re.M)  # "ValueError: ..." in a traceback
RAY_WRAPPERS = ("UserCodeException", "RayTaskError", "RayActorError")
FORMATS = ("parquet", "jsonl")


@dataclass
class ScoreResult:
    """What `score_on_ray` did. `as_dict()` is the JSON document `erpack predict --engine ray --json` prints."""

    graph: str
    cache: str
    output: str
    format: str
    workers: int
    variant: str | None = None
    task: str | None = None
    requested: int = 0
    predicted: int = 0
    missing: list[str] = field(default_factory=list)  # requested ids not in the cache (in no part)
    parts: list[dict] = field(default_factory=list)  # {"name", "rows", "bytes", "sha256"} in id order
    provider: str = ""  # what the workers' onnxruntime ran on
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    metrics: dict | None = None  # a token graph with true labels: the per-word scores `erpack predict` prints

    def as_dict(self) -> dict:
        d = asdict(self)
        if d["metrics"] is None:  # a document graph's document keeps its fields
            del d["metrics"]
        d["documents_per_second"] = self.predicted / self.seconds if self.seconds else None
        return d


def encode_part(rows: list[dict], fmt: str) -> bytes:
    """A part's bytes: Parquet (one row group, zstd) or JSON lines, the rows `erpack predict` writes."""
    if fmt == "jsonl":
        return "".join(json.dumps(r) + "\n" for r in rows).encode("utf-8")
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf, compression="zstd")
    return buf.getvalue()


def decode_part(data: bytes, fmt: str) -> list[dict]:
    if fmt == "jsonl":
        return [json.loads(line) for line in data.decode("utf-8").splitlines() if line]
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(data)).to_pylist()


def part_name(number: int, fmt: str) -> str:
    return f"part-{number:06d}.{fmt}"


class Scorer:
    """A Ray Data actor: the graph's onnxruntime session and a CacheReader, opened once; each call scores
    a batch of parts (rows {"part", "ids"}) and writes each part whole, returning its listing entry."""

    def __init__(self, graph_ref: list, graph_name: str, cache: str, storage_options: dict | None, out: str,
                 fmt: str, batch_size: int, max_tokens: int, device: str, threads: int | None,
                 shard_cache: str | None = None, tokenizer_ref: list | None = None):
        import ray

        data = ray.get(graph_ref[0])  # in a list, so Ray hands the actor the reference, not the bytes
        self.tokenizer = ray.get(tokenizer_ref[0]) if tokenizer_ref else None  # a token graph's: the cache's
        folder = Path(tempfile.mkdtemp(prefix="erpack-score-"))
        try:  # onnxruntime holds the graph in memory once the session is made
            path = folder / Path(graph_name).name
            path.write_bytes(data)
            self.sess, self.info = open_upper(path, device, threads)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self.reader = CacheReader(_open(cache, storage_options), shard_cache=shard_cache)  # a folder on each node
        self.out = open_location(out, storage_options)
        self.fmt, self.batch_size, self.max_tokens = fmt, batch_size, max_tokens

    def __call__(self, batch: dict) -> dict:
        names, counts, sizes, shas, errors, tallies = [], [], [], [], [], []
        for k, (number, ids) in enumerate(zip(batch["part"], batch["ids"])):
            name = part_name(int(number), self.fmt)
            try:
                words, labels = _part_words(batch, k)
                rows = cached_rows(self.sess, self.reader, [str(i) for i in ids], self.info, self.batch_size,
                                   self.max_tokens, words, self.tokenizer, labels)
                data = encode_part(rows, self.fmt)
                self.out.write_atomic(name, data)
                tallies.append(_tally(rows, self.info) if words is not None else "")
            except ErpackError as exc:  # handed to the driver as data: Ray's wrappers keep only a traceback
                rows, data = [], b""
                errors.append(f"{type(exc).__name__}\t{exc}")
                tallies.append("")
            else:
                errors.append("")
            names.append(name)
            counts.append(len(rows))
            sizes.append(len(data))
            shas.append(hashlib.sha256(data).hexdigest())
        return {"part": list(batch["part"]), "name": names, "rows": counts, "bytes": sizes, "sha256": shas,
                "provider": [self.sess.provider] * len(names), "error": errors, "words": tallies}


def _words_item(ids: list[str], words: dict, labels: dict | None) -> str:
    """A part's words as its item carries them: JSON {id: [words, where, true labels or null]}."""
    return json.dumps({i: [words[i][0], words[i][1], labels.get(i) if labels else None] for i in ids})


def _tally(rows: list[dict], info: dict) -> str:
    """A token part's sums for the driver, JSON: the words cut off by max_length and their documents, and
    the rows' word_counts when they carry true labels (erpack.predict_words: they add up across parts)."""
    from erpack.predict_words import cut_of, word_counts

    labelled = any("labels" in r for r in rows)
    return json.dumps({"cut": list(cut_of(rows)),
                       "counts": word_counts(rows, list(info.get("labels") or [])) if labelled else None})


def _part_words(batch: dict, k: int) -> tuple[dict | None, dict | None]:
    """({id: (words, where)}, {id: true labels}) of item k of a batch: None, None for a document graph."""
    if "words" not in batch:
        return None, None
    got = json.loads(str(batch["words"][k]))
    labels = {i: w[2] for i, w in got.items() if w[2] is not None}
    return {i: (w[0], w[1]) for i, w in got.items()}, labels or None


def _open(cache, storage_options: dict | None):
    """A cache URL as a Location with the storage options (opened in the worker: nothing unpicklable travels)."""
    if isinstance(cache, str) and "://" in cache:
        return open_location(cache, storage_options)
    return cache


def _url(cache) -> str:
    """What names a cache for the workers: a Location's URL (its storage options travel separately)."""
    return cache.url if isinstance(cache, Location) else str(cache)


def _clear_output(out: Location) -> None:
    """Remove an earlier run's listing first (the folder is then no finished result), then its parts."""
    out.delete(PARTS)
    for name in out.listdir():
        if name.startswith("part-") and name.endswith(tuple(f".{f}" for f in FORMATS)):
            out.delete(name)


def score_on_ray(graph, cache, out, ids: list[str] | None = None, fmt: str = "parquet", workers: int = 2,
                 address: str | None = None, part_docs: int = 1000, batch_size: int = 32, max_tokens: int = 16384,
                 device: str = "auto", cpus_per_worker: float = 1, gpus_per_worker: float = 0,
                 storage_options: dict | None = None, allow_other_codec: bool = False,
                 shard_cache=None, labels: str | None = None, split: str | None = None,
                 model: str | None = None) -> ScoreResult:
    """Score the cached documents `ids` (default: every one; with `split`, those of that split in `labels`)
    of `cache` with the upper-stack `graph` on a Ray cluster (`address`, or the running/local instance)
    across `workers` actors; write the parts and `_parts.json` to `out` (a folder or URL). A token graph
    needs `labels` (a word label file or built-in token task: each document's words), and loads the
    cache's tokenizer (from `model` when the cache's recorded name is not found). See the module docstring."""
    from erpack.export.metadata import check_cache  # erpack.export loads torch
    from erpack.predict_words import add_counts, document_words, score_counts, true_labels

    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; use parquet or jsonl")
    if workers < 1 or part_docs < 1:
        raise InputError(f"workers and part_docs must be at least 1, got {workers} and {part_docs}")
    t0 = time.perf_counter()
    sess, info = open_upper(graph, "cpu")  # the driver checks the graph and its fit; workers run it
    token = per_token(info)
    if token and labels is None:
        raise InputError(f"{graph} is a token-classification graph (a label per word): --engine ray needs each "
                         "document's words, so give --labels (a word label file: id, words, labels; or a built-in "
                         "token task such as bbc-truecase)")
    if not token and (labels is not None or split is not None):
        raise InputError("labels and split give a token graph's words; the distributed scorer does not score a "
                         f"document graph ({graph}): run `erpack predict ... -o FILE --labels` for that")
    label_rows = read_label_rows(labels, info) if token else None  # checked against the graph's labels
    cache = _open(_url(cache), storage_options or getattr(cache, "storage_options", None))
    result = ScoreResult(graph=str(graph), cache=_url(cache), output=str(out), format=fmt, workers=workers,
                         variant=info.get("variant"), task=info.get("task"))
    with CacheReader(cache) as reader:
        result.notes = check_cache(info, reader, f"graph {graph}", allow_other_codec)  # as `erpack predict` does
        requested = list(dict.fromkeys(requested_ids(reader, PredictOptions(ids=ids, split=split), label_rows)))
        present = [i for i in requested if i in reader]
        result.missing = [i for i in requested if i not in reader]
        words = document_words(present, label_rows, None, [], labels) if token else None  # before any work
        tokenizer = reader_tokenizer(reader, model) if token and present else None
    del sess
    result.requested = len(requested)
    output = open_location(out, storage_options)
    output.makedirs()
    _clear_output(output)
    chunks = [present[k:k + part_docs] for k in range(0, len(present), part_docs)]
    items = [{"part": k, "ids": chunk} for k, chunk in enumerate(chunks)]
    if token:
        true = true_labels(label_rows)
        items = [dict(item, words=_words_item(item["ids"], words, true)) for item in items]
    entries = _run(graph, cache, storage_options, output, items, fmt, workers, address, batch_size, max_tokens,
                   device, cpus_per_worker, gpus_per_worker, shard_cache, tokenizer)
    result.parts = [{k: e[k] for k in ("name", "rows", "bytes", "sha256")} for e in entries]
    result.predicted = sum(e["rows"] for e in entries)
    result.provider = ", ".join(sorted({e["provider"] for e in entries}))
    if token and result.predicted:  # the single engine's note and, with true labels, its scores: the parts' sums
        tallies = [e["words"] for e in entries if e["words"]]
        result.notes.append(cut_note(sum(t["cut"][0] for t in tallies), sum(t["cut"][1] for t in tallies)))
        counts = add_counts([t["counts"] for t in tallies if t["counts"]])
        result.metrics = score_counts(counts, list(info.get("labels") or [])) if counts else None
    if result.predicted != len(present):
        raise StoreError(f"{out}: the parts hold {result.predicted} rows, not the {len(present)} documents scored; "
                         "run the command again")
    listing = {"version": 1, "format": fmt, "graph": str(graph), "cache": _url(cache), "documents": result.predicted,
               "missing": result.missing, "parts": result.parts}
    output.write_atomic(PARTS, (json.dumps(listing, indent=1) + "\n").encode("utf-8"))  # last: the run is whole
    result.seconds = time.perf_counter() - t0
    return result


def _run(graph, cache, storage_options, output: Location, items: list[dict], fmt: str, workers: int,
         address, batch_size: int, max_tokens: int, device: str, cpus: float, gpus: float,
         shard_cache=None, tokenizer=None) -> list[dict]:
    """Score the parts ({"part", "ids"} and a token graph's "words") on Ray; their listing entries in part order."""
    if not items:
        return []
    ray = connect(address, workers)
    graph_ref = ray.put(Path(graph).read_bytes())
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    kwargs = {"graph_ref": [graph_ref], "graph_name": Path(graph).name, "cache": _url(cache),
              "storage_options": storage_options or getattr(cache, "storage_options", None) or None,
              "out": output.url, "fmt": fmt, "batch_size": batch_size, "max_tokens": max_tokens, "device": device,
              "threads": max(1, int(cpus)) if cpus else None,
              "shard_cache": str(shard_cache) if shard_cache is not None else None,
              "tokenizer_ref": [ray.put(tokenizer)] if tokenizer is not None else None}
    scored = ds.map_batches(Scorer, fn_constructor_kwargs=kwargs, batch_size=1, batch_format="numpy",
                            compute=ray.data.ActorPoolStrategy(size=min(workers, len(items))), num_cpus=cpus,
                            num_gpus=gpus or None,
                            runtime_env={"env_vars": worker_env()})  # however Ray was started
    try:
        entries = sorted(scored.take_all(), key=lambda e: int(e["part"]))
    except Exception as exc:  # an actor failed outside the scoring (Ray keeps only its traceback)
        raise _worker_error(exc) from None
    failed = [e for e in entries if str(e["error"])]
    if failed:  # what an actor raised, with its own class (exit 2 in the CLI): the first part's error
        kind, _, message = str(failed[0]["error"]).partition("\t")
        cls = getattr(errors, kind, None)
        cls = cls if isinstance(cls, type) and issubclass(cls, ErpackError) else StoreError
        raise cls(f"{message} (part {int(failed[0]['part'])}; {len(failed)} part(s) failed, no {PARTS} written)")
    return [{"part": int(e["part"]), "name": str(e["name"]), "rows": int(e["rows"]), "bytes": int(e["bytes"]),
             "sha256": str(e["sha256"]), "provider": str(e["provider"]),
             "words": json.loads(str(e["words"])) if str(e["words"]) else None} for e in entries]


def _worker_error(exc: BaseException) -> BaseException:
    """A StoreError saying that the scoring failed outside erpack's own checks (the worker's own exception
    line, found in the traceback Ray passes on), and where to look."""
    lines = [m.group(0) for m in RAISED.finditer(str(exc)) if m.group(1).rsplit(".", 1)[-1] not in RAY_WRAPPERS]
    what = lines[-1] if lines else f"{type(exc).__name__}: {str(exc).strip()[:300]}"
    return StoreError(f"scoring on Ray failed ({what[:400]}): no {PARTS} was written; see the Ray logs, then run "
                      "the command again")


def read_parts(out, storage_options: dict | None = None) -> list[dict]:
    """Every row of a finished `score_on_ray` output, in id order; each part checked against the sha256 and
    row count `_parts.json` lists. StoreError if the listing is missing (the run did not finish) or a part
    does not match."""
    loc = open_location(out, storage_options)
    try:
        listing = json.loads(loc.read(PARTS))
    except FileNotFoundError:
        raise StoreError(f"{loc / PARTS} does not exist: the scoring run did not finish; run it again") from None
    rows = []
    for part in listing["parts"]:
        data = loc.read(part["name"])
        if len(data) != part["bytes"] or hashlib.sha256(data).hexdigest() != part["sha256"]:
            raise StoreError(f"{loc / part['name']} does not match its sha256 in {PARTS}: run the scoring again")
        got = decode_part(data, listing["format"])
        if len(got) != part["rows"]:
            raise StoreError(f"{loc / part['name']} holds {len(got)} rows, {PARTS} lists {part['rows']}")
        rows.extend(got)
    return rows
