"""`erpack predict`: serve an exported upper-stack graph from the cache, and from text for new documents.

    s = predict("rt.int8-dynamic.onnx", "caches/rt", ids=None, texts="new.jsonl", add_to_cache=True,
                output="predictions.jsonl")

- The graph's metadata names the cache it was made for; another encoder, layer or codec is refused
  (GraphCacheMismatchError) before any work.
- Cached documents: a background thread reads and decodes records (zstd and numpy release the GIL)
  into length-grouped padded batches while onnxruntime runs the previous batch.
- Documents not in the cache but given in `texts` are tokenized as `erpack encode` does, run through
  the lower stack (the exported lower graph if given, else PyTorch, the encoder found by the name the
  cache recorded and checked by its weights sha256), passed through the cache's codec (so their
  prediction equals the one a later run from the cache gives) and, with add_to_cache, appended.
- Requested ids found nowhere are never skipped in silence: each gets an output line with an
  `error`, and the summary lists them (the CLI then exits 1).
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from erpack.batching import length_batches
from erpack.errors import ExportError, InputError
from erpack.export.inputs import pad_batch

MISSING = "not in the cache and no text given"


class _Reader:
    """Background thread: decoded, padded batches of cached records, in plan order, through a bounded queue."""

    def __init__(self, reader, ids: list[str], plan: list[list[int]], depth: int = 4):
        self.q: queue.Queue = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(reader, ids, plan), daemon=True, name="erpack-predict-reader")
        self.thread.start()

    def _run(self, reader, ids, plan) -> None:
        try:
            for rows in plan:
                if self.stop.is_set():
                    return
                batch = reader.get_batch([ids[i] for i in rows])  # (B, T, H), (B, T)
                self.q.put((rows, batch))
            self.q.put(None)
        except BaseException as exc:  # handed to the consumer, raised there
            self.q.put(exc)

    def __iter__(self):
        while True:
            item = self.q.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self.stop.set()
        while self.thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                self.q.get_nowait()
            except queue.Empty:
                self.thread.join(0.05)


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


def _texts(source, wanted: set[str]) -> dict:
    from erpack.corpus import iter_corpus

    return {d.id: d for d in iter_corpus(str(source)) if d.id in wanted}


def _lower_runner(reader, lower_graph, model_override, device: str):
    """(tokenizer, run(encoded) -> list of (T, H)) for the encoder the cache was made with."""
    from erpack.encode import run_lower
    from erpack.models import load_recorded, recorded_location, split_model

    ident = reader.meta["model"]
    name = model_override or recorded_location(ident)
    if lower_graph is None:
        loaded = load_recorded(ident, model_override, f"the cache {reader.path}")
        lower, _ = split_model(loaded.model, reader.meta["layer"])
        pad = loaded.tokenizer.pad_token_id or 0
        return loaded.tokenizer, lambda enc: run_lower(lower, enc, pad, "cpu", 32, 16384), "pytorch"
    from transformers import AutoTokenizer

    from erpack.assets import resolve_model
    from erpack.export.metadata import check_cache, read_metadata
    from erpack.export.session import create_session

    sess = create_session(lower_graph, device)
    info = read_metadata(sess.session)
    if info.get("part") != "lower":
        raise ExportError(f"{lower_graph} is the {info.get('part')} part; --lower needs a graph exported with --part lower")
    check_cache(info, reader, str(lower_graph), allow_other_codec=True)  # the lower graph never sees the codec
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(name))
    pad = tokenizer.pad_token_id or 0

    def run(encoded):
        out = []
        for rows in length_batches([len(e["input_ids"]) for e in encoded], 32):
            T = max(len(encoded[i]["input_ids"]) for i in rows)
            feeds = {n: np.zeros((len(rows), T), dtype=np.int64) for n in sess.input_names}
            feeds["input_ids"][:] = pad
            for r, i in enumerate(rows):
                n = len(encoded[i]["input_ids"])
                feeds["input_ids"][r, :n] = encoded[i]["input_ids"]
                feeds["attention_mask"][r, :n] = 1
                if "token_type_ids" in feeds and "token_type_ids" in encoded[i]:
                    feeds["token_type_ids"][r, :n] = encoded[i]["token_type_ids"]
            hidden = sess.run(feeds)[0]  # (B, T, H)
            out.extend((i, np.ascontiguousarray(hidden[r, : len(encoded[i]["input_ids"])])) for r, i in enumerate(rows))
        out.sort(key=lambda x: x[0])
        return [a for _, a in out]

    return tokenizer, run, f"onnx:{sess.provider}"


def _encode_texts(reader, docs: list, lower_graph, model_override,
                  device) -> tuple[list[np.ndarray], list[str], dict[str, int], str]:
    """Hidden states entering layer k for text documents, after the cache's codec round trip, with
    the truncated ids and each document's token hash (what `erpack encode` would store)."""
    from erpack.tokens import token_hash, tokenize  # the exact tokenization `erpack encode` stores

    tokenizer, run, how = _lower_runner(reader, lower_graph, model_override, device)
    encoded, cut = tokenize(tokenizer, docs, reader.meta["max_length"])
    hidden = run(encoded)
    codec = reader.codec
    roundtrip = [codec.decode(codec.encode(h), shape=h.shape) for h in hidden]
    hashes = {d.id: token_hash(e["input_ids"], e.get("token_type_ids"), c) for d, e, c in zip(docs, encoded, cut)}
    return roundtrip, [d.id for d, c in zip(docs, cut) if c], hashes, how


def predict(graph, cache, ids=None, texts=None, add_to_cache: bool = False, output=None, batch_size: int = 32,
            max_tokens: int = 16384, device: str = "auto", lower_graph=None, model=None,
            allow_other_codec: bool = False, labels=None, split=None, progress: Callable | None = None) -> dict:
    """Predictions for `ids` (default: every cached document, plus every document of `texts`).

    Returns a summary: documents, from_cache, from_text, missing (ids), provider(s), timings, notes,
    and metrics when `labels` (a label source, as for `erpack eval`) is given. With `split` and no
    `ids`, the ids are those of that split in `labels`.
    """
    from erpack.export.metadata import check_cache, read_metadata
    from erpack.export.session import create_session
    from erpack.store import CacheReader, CacheWriter

    t_start = time.perf_counter()
    sess = create_session(graph, device)
    info = read_metadata(sess.session)
    if info.get("part") != "upper":
        raise ExportError(f"{graph} is the {info.get('part')} part; predict needs the upper graph (erpack export "
                          "TASK_MODEL -o FILE.onnx)")
    label_rows = None
    if labels is not None:
        from erpack.train.labels import read_labels

        label_rows = {r.id: r for r in read_labels(labels, "regression" if info.get("task") == "regression"
                                                   else "classification")}
    with CacheReader(cache) as reader:
        notes = check_cache(info, reader, str(graph), allow_other_codec) + list(sess.notes)
        if ids is None and split is not None:
            if label_rows is None:
                raise InputError("--split selects ids from --labels: give --labels too")
            ids = [r.id for r in label_rows.values() if r.split == split]
        text_docs = {}
        if ids is None:
            ids = reader.ids()
            if texts is not None:
                from erpack.corpus import iter_corpus

                cached = set(ids)
                ids += [d.id for d in iter_corpus(str(texts)) if d.id not in cached]
        requested = list(dict.fromkeys(str(i) for i in ids))
        if len(requested) < len(ids):
            notes.append(f"{len(ids) - len(requested)} repeated id(s) given; each is predicted once")
        absent = [i for i in requested if i not in reader]
        if absent and texts is not None:
            text_docs = _texts(texts, set(absent))
        missing = [i for i in absent if i not in text_docs]
        cached_ids = [i for i in requested if i in reader]

        logits: dict[str, np.ndarray] = {}
        wait = compute = 0.0
        lengths = [reader.info(i)["tokens"] for i in cached_ids]
        plan = length_batches(lengths, batch_size, max_tokens)
        bar = progress(total=len(cached_ids) + len(text_docs), desc="predict", unit="doc") if progress else None
        source = _Reader(reader, cached_ids, plan)
        try:
            it = iter(source)
            while True:
                t0 = time.perf_counter()
                item = next(it, None)
                t1 = time.perf_counter()
                wait += t1 - t0
                if item is None:
                    break
                rows, (hidden, mask) = item
                out = sess.run({"hidden_states": hidden, "attention_mask": mask})[0]
                compute += time.perf_counter() - t1
                for r, i in enumerate(rows):
                    logits[cached_ids[i]] = out[r]
                if bar:
                    bar.update(len(rows))
        finally:
            source.close()

        text_info = {"documents": len(text_docs), "lower": None, "truncated": [], "added_to_cache": 0}
        if text_docs:
            docs = [text_docs[i] for i in absent if i in text_docs]
            hidden_list, truncated, hashes, how = _encode_texts(reader, docs, lower_graph, model, device)
            text_info.update(lower=how, truncated=truncated)
            for rows in length_batches([h.shape[0] for h in hidden_list], batch_size, max_tokens):
                hidden, mask = pad_batch([hidden_list[i] for i in rows])
                out = sess.run({"hidden_states": hidden, "attention_mask": mask})[0]
                for r, i in enumerate(rows):
                    logits[docs[i].id] = out[r]
                if bar:
                    bar.update(len(rows))
            if add_to_cache:
                meta, codec = reader.meta, reader.codec
        if bar:
            bar.close()
    if text_docs and add_to_cache:  # the reader is closed: the writer appends one shard
        with CacheWriter(cache, meta=meta, codec=codec, mode="append", on_duplicate="skip") as w:
            done = w.commit_shard([(d.id, h) for d, h in zip(docs, hidden_list)], truncated=truncated,
                                  token_hashes=hashes)
        text_info["added_to_cache"] = done["documents"]

    rows_out = _prediction_rows(requested, logits, info, text_docs, label_rows)
    if output is not None:
        # fsynced and renamed: a kill leaves the old file or the new one
        from erpack.store.atomic import write_atomic

        out_path = Path(output)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(out_path, "".join(json.dumps(row) + "\n" for row in rows_out).encode("utf-8"))
    seconds = time.perf_counter() - t_start
    summary = {
        "graph": str(graph), "cache": str(cache), "variant": info.get("variant"), "task": info.get("task"),
        "requested": len(requested), "predicted": len(logits), "from_cache": len(cached_ids),
        "from_text": text_info, "missing": missing, "provider": sess.provider, "providers": sess.providers,
        "output": str(output) if output is not None else None, "notes": notes, "seconds": seconds,
        "inference_seconds": compute, "waited_on_reader_seconds": wait,
        "documents_per_second": len(logits) / seconds if seconds else None,
    }
    if label_rows is not None:
        summary["metrics"] = _score(rows_out, label_rows, info)
    return summary


def _prediction_rows(requested, logits, info, text_docs, label_rows) -> list[dict]:
    names = info.get("labels") or []
    out = []
    for doc_id in requested:
        if doc_id not in logits:
            out.append({"id": doc_id, "error": MISSING})
            continue
        row = {"id": doc_id, "source": "text" if doc_id in text_docs else "cache"}
        z = logits[doc_id].astype(np.float64)
        if info.get("task") == "regression":
            row["score"] = float(z[0])
        else:
            p = np.exp(z - z.max())
            p /= p.sum()
            k = int(p.argmax())
            row["predicted"] = names[k] if k < len(names) else k
            row["probabilities"] = {str(names[j] if j < len(names) else j): round(float(v), 6) for j, v in enumerate(p)}
        if label_rows is not None and doc_id in label_rows:
            row["label"] = label_rows[doc_id].label
        out.append(row)
    return out


def _score(rows, label_rows, info) -> dict:
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
