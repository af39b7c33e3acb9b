"""Measurements the storage-cost report stands on, each taken from a cache or a timed sample.

    cache_row(path)                     sizes as stored: bytes per token / document, a + b*tokens fit
    codec_row(reference, spec)          a sample of a cache re-encoded with another codec (erpack.compress)
    length_profile(name_or_cache, ...)  tokens per document of a real corpus (a cache's index, or the
                                        built-in corpus tokenized as the cache's encoder does)
    lower_seconds_per_token(...)        layers 0..k-1 timed on batches of the profile's lengths
    read_seconds_per_token(path)        read + decode of cached records, timed
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from erpack.assets import load_dataset, resolve_model
from erpack.batching import length_batches
from erpack.codecs import Pipeline
from erpack.compress import measure
from erpack.errors import ErpackError, InputError
from erpack.models.loading import recorded_location
from erpack.report.project import fit_bytes
from erpack.store import CacheReader
from erpack.store.idindex import ENTRY
from erpack.store.location import Location

INDEX_ENTRY = 32  # bytes of a record's index entry (docs/cache-format.md); its id is stored twice
TOKEN_HASH = 8  # bytes of a record's token hash in the index (shard version 2 and later)
ID_INDEX_ENTRY = ENTRY.itemsize  # bytes of a live record's entry in the cache's id index (64)


def _hashed(reader, k: int, shard) -> bool:
    """Whether shard k's index stores a token hash per record (shard version 2 and later). A non-zero
    hash says so without opening it; a shard whose live records have none is opened to ask."""
    if shard.token_hashes.any():
        return True
    return reader.open_shard(k).hashes is not None


def _records(reader, limit: int | None = None):
    """(ids, tokens, on-disk bytes per record incl. index entry and id copy, and its entry and id copy in
    the cache's id index when it has one) of live records."""
    ids, tokens, sizes, overhead = [], [], [], []
    indexed = getattr(reader, "has_index", False)
    for k, shard in enumerate(reader.live_records()):
        if not shard.live:
            continue
        index = INDEX_ENTRY + (TOKEN_HASH if _hashed(reader, k, shard) else 0)
        for doc, t, rec, plen in zip(shard.ids, shard.tokens.tolist(), shard.sizes.tolist(),
                                     shard.payload_len.tolist()):
            n_id = len(doc.encode("utf-8"))
            extra = index + n_id + ((ID_INDEX_ENTRY + n_id) if indexed else 0)
            ids.append(doc)
            tokens.append(t)
            sizes.append(rec + extra)
            overhead.append(rec - plen + extra)
        if limit is not None and len(ids) >= limit:
            break
    return ids[:limit], tokens[:limit], sizes[:limit], overhead[:limit]


def sample_arrays(reader, n: int) -> list[np.ndarray]:
    """n records taken evenly over the cache, decoded."""
    ids = reader.ids()
    pick = np.linspace(0, len(ids) - 1, num=min(n, len(ids))).round().astype(int)
    return [reader.get(ids[i]) for i in sorted(set(pick.tolist()))]


def cache_row(path, sample: int = 200) -> dict:
    """What a cache costs as stored, and its codec's speed on a sample of its records."""
    with CacheReader(path) as r:
        st = r.stats()
        _, tokens, sizes, overhead = _records(r)
        a, b = fit_bytes(tokens, sizes)
        m = measure(r.codec, sample_arrays(r, sample))
        return {"kind": "cache", "source": str(path), "codec": r.codec.spec, "lossless": r.codec.lossless,
                "model": st.model.get("name"), "model_location": recorded_location(st.model),
                "model_type": st.model.get("model_type"),
                "layer": st.layer, "hidden": st.hidden_size, "max_length": st.max_length,
                "documents": st.documents, "tokens": st.tokens, "bytes": st.bytes_on_disk,
                "bytes_per_token": st.bytes_per_token, "bytes_per_document": st.bytes_on_disk / st.documents,
                "bits_per_value": st.bits_per_value, "payload_bits_per_value": st.payload_bits_per_value,
                "fit": {"a": a, "b": b}, "record_overhead_bytes": float(np.mean(overhead)),
                "sqnr_db": None, "encode_MBps": m.encode_MBps, "decode_MBps": m.decode_MBps,
                "sample_documents": m.docs}


def codec_row(reference, spec: str, sample: int = 200) -> dict:
    """A sample of the reference cache re-encoded with `spec`: size per record (blob + the reference's
    framing overhead), SQNR against the reference's decoded values, codec speed."""
    pipe = Pipeline.from_spec(spec)
    with CacheReader(reference) as r:
        arrays = sample_arrays(r, sample)
        _, _, _, overhead = _records(r)
        extra = float(np.mean(overhead)) + 8 / 2  # framing of the reference, plus half an alignment word
        meta = r.meta
        ref_codec = r.codec.spec
    tokens = [a.shape[0] for a in arrays]
    sizes = [len(pipe.encode(a)) + extra for a in arrays]
    a, b = fit_bytes(tokens, sizes)
    m = measure(pipe, arrays)
    hidden = int(arrays[0].shape[1])
    n_tok = sum(tokens)
    total = sum(sizes)
    return {"kind": "re-encoded sample", "source": f"{len(arrays)} records of {reference} ({ref_codec})",
            "codec": pipe.spec, "lossless": pipe.lossless, "model": meta["model"].get("name"),
            "model_location": recorded_location(meta["model"]),
            "model_type": meta["model"].get("model_type"), "layer": meta.get("layer"), "hidden": hidden,
            "max_length": meta.get("max_length"), "documents": len(arrays), "tokens": n_tok, "bytes": total,
            "bytes_per_token": total / n_tok, "bytes_per_document": total / len(arrays),
            "bits_per_value": 8 * total / (n_tok * hidden), "payload_bits_per_value": m.bits_per_value,
            "fit": {"a": a, "b": b}, "record_overhead_bytes": extra,
            "sqnr_db": m.sqnr_db,  # None: decodes the reference exactly
            "sqnr_reference": ref_codec, "encode_MBps": m.encode_MBps, "decode_MBps": m.decode_MBps,
            "sample_documents": m.docs}


def sqnr_against(reference, path, limit: int = 200) -> float | None:
    """SQNR in dB of a cache's decoded records against a lossless reference cache, on shared ids."""
    with CacheReader(reference) as ref, CacheReader(path) as r:
        shared = [d for d in ref.ids() if d in r][:limit]
        if not shared:
            return None
        sig = err = 0.0
        for d in shared:
            x, y = ref.get(d), r.get(d)
            sig += float(np.square(x, dtype=np.float64).sum())
            err += float(np.square(x - y, dtype=np.float64).sum())
    return None if err == 0 else 10 * np.log10(sig / err)


# ---- length profile ------------------------------------------------------------------------------
def length_profile(source: str, tokenizer_model: str | None = None, max_length: int | None = None) -> dict:
    """Tokens per document of a real corpus: a cache folder (its index), or a built-in data set
    tokenized with `tokenizer_model` and truncated at `max_length`, as `erpack encode` would."""
    path = source if isinstance(source, Location) else Path(source)  # a Location: a cache at a URL
    if isinstance(path, Location) or (path / "manifest.json").is_file():
        with CacheReader(path) as r:
            lengths = _records(r)[1]
            how = f"token counts of the {len(lengths)} records of cache {path} ({r.meta['model'].get('name')}, " \
                  f"max_length {r.meta.get('max_length')})"
    else:
        from transformers import AutoTokenizer

        if tokenizer_model is None:
            raise InputError(f"profile {source!r}: a built-in corpus needs the caches' model to tokenize it")
        name, _, split = source.partition(":")
        texts = [r.text for r in load_dataset(name, split=split or None)]
        tok = AutoTokenizer.from_pretrained(resolve_model(tokenizer_model))
        ml = max_length or 512
        lengths = [len(x) for x in tok(texts, truncation=True, max_length=ml)["input_ids"]]
        how = f"{len(texts)} documents of {source} tokenized by {tokenizer_model}, truncated at {ml}"
    if not lengths:
        raise InputError(f"length profile {source}: no documents")
    t = np.asarray(lengths)
    counts, edges = np.histogram(t, bins=min(40, max(1, len(set(lengths)))))
    return {"name": str(source), "how": how, "documents": len(t), "tokens": int(t.sum()), "mean": float(t.mean()),
            "median": float(np.median(t)), "p90": float(np.percentile(t, 90)), "max": int(t.max()),
            "histogram": {"counts": counts.tolist(), "edges": edges.tolist()}, "lengths": lengths}


# ---- timed samples -----------------------------------------------------------------------------
def lower_seconds_per_token(model: str, layer: int, lengths: list[int], docs: int = 32, batch_size: int = 16,
                            repeats: int = 2, seed: int = 0) -> dict:
    """Seconds per token of layers 0..k-1 on random token ids with lengths drawn from the profile
    (compute does not depend on which ids): the cost erpack saves on every run."""
    import torch

    from erpack.models import load_model, split_model

    try:
        loaded = load_model(model)
    except ErpackError as exc:
        raise ErpackError(f"cannot time the lower stack of {model!r}: {exc}") from None
    lower, _ = split_model(loaded.model, layer)
    rng = np.random.default_rng(seed)
    sample = rng.choice(np.asarray(lengths), size=min(docs, len(lengths)), replace=False).tolist()
    vocab = int(loaded.config.vocab_size)
    batches = []
    for rows in length_batches(sample, batch_size):
        T = max(sample[i] for i in rows)
        ids = torch.randint(5, vocab, (len(rows), T), generator=torch.Generator().manual_seed(seed))
        mask = torch.zeros((len(rows), T), dtype=torch.long)
        for r, i in enumerate(rows):
            mask[r, : sample[i]] = 1
        batches.append((ids, mask))
    times = []
    with torch.no_grad():
        lower(*batches[0])  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            for ids, mask in batches:
                lower(ids, mask)
            times.append(time.perf_counter() - t0)
    tokens = sum(sample)
    return {"model": model, "layer": layer, "documents": len(sample), "tokens": tokens,
            "seconds_per_token": float(np.median(times)) / tokens, "threads": torch.get_num_threads(),
            "how": f"layers 0..{layer - 1} of {model} on {len(sample)} random-id documents with lengths drawn "
                   f"from the profile, batches of {batch_size}, median of {repeats} passes after a warm-up batch"}


def read_seconds_per_token(path, sample: int = 200, repeats: int = 3) -> float:
    """Seconds per token to read (copy out of the map) and decode records of a cache, warm page cache."""
    with CacheReader(path) as r:
        ids = r.ids()
        pick = sorted(set(np.linspace(0, len(ids) - 1, num=min(sample, len(ids))).round().astype(int).tolist()))
        chosen = [ids[i] for i in pick]
        times, tokens = [], 0
        for rep in range(repeats + 1):
            t0 = time.perf_counter()
            n = 0
            for d in chosen:
                buf, shape = r.get_encoded(d)
                if r.codec.needs_tokens:  # a codec that reads token ids gets the record's
                    r.codec.decode(bytes(buf), shape=shape, tokens=r.get_tokens(d))
                else:
                    r.codec.decode(bytes(buf), shape=shape)
                n += shape[0]
            if rep:
                times.append(time.perf_counter() - t0)
            tokens = n
    return float(np.median(times)) / tokens
