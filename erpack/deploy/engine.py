"""Several task models (bundles) served together over one cache: what the service runs for a batch.

    eng = Engine({"sentiment": "bundles/rt", "topic": "bundles/topic"}, cache="caches/rt")
    eng.predict_ids(["d1", "d2"], ["sentiment", "topic"])     # {model: [rows]}: each record decoded once
    eng.predict_texts(docs, ["sentiment"], add_to_cache=True)  # one lower-graph pass, every head after it

Bundles served together must serve the same cache (encoder weights, layer, max_length, codec and its
fitted state): a record decoded once, or a text run once through the lower graph and the codec, is
then what every head reads (recycling at serving time). The first bundle's tokenizer, lower graph and
codec are the ones run. Rows are BundleRuntime's: erpack.predict.prediction_rows (with `layers` for a
bundle with exits or ODE steps), or a token model's words and a label per word (erpack.words.word_rows;
texts only here: a cached record holds no words; `erpack predict BUNDLE CACHE --labels` gives them). One
thread uses an Engine at a time (the service's batcher worker). No torch.
"""

from __future__ import annotations

import json
from pathlib import Path

from erpack.batching import length_batches, pad_arrays
from erpack.corpus import Document
from erpack.deploy.bundle import Bundle
from erpack.deploy.runtime import BATCH_SIZE, MAX_TOKENS, BundleRuntime, Lowered, word_document
from erpack.errors import ErpackError, InputError
from erpack.predict import graph_row, prediction_rows
from erpack.store import CacheReader


class UnknownIds(InputError):
    def __init__(self, missing: list[str], cache):
        shown = ", ".join(missing[:10]) + (", ..." if len(missing) > 10 else "")
        super().__init__(f"{len(missing)} id(s) not in the cache {cache}: {shown}")
        self.missing = missing


def identity(rt: BundleRuntime) -> str:
    """What must be equal for two bundles to share a decoded record or a lowered text."""
    c = rt.bundle.cache
    return json.dumps({"weights": c["model"].get("weights_sha256"), "layer": c["layer"], "max_length": c["max_length"],
                       "codec": c["codec"], "state": (c.get("codec_state") or {}).get("sha256"),
                       "tokenizer": c.get("tokenizer")}, sort_keys=True)


def bundle_names(specs: list[str]) -> dict[str, str]:
    """`NAME=FOLDER` or `FOLDER` (named by its last part) -> {name: folder}; a repeated name is refused."""
    out: dict[str, str] = {}
    for spec in specs:
        name, sep, folder = spec.partition("=")
        if not sep:
            name, folder = Path(spec.rstrip("/")).name, spec
        if not name or name in out:
            raise InputError(f"two bundles are named {name!r}: name them, as NAME=FOLDER")
        out[name] = folder
    return out


class Engine:
    """Loaded bundles by name, the cache they serve (optional), and the counters the metrics read."""

    def __init__(self, bundles: dict[str, str], cache=None, variant: str = "fp32", device: str = "auto",
                 threads: int | None = None, storage_options: dict | None = None, early_exit: bool = True,
                 exit_threshold: float | None = None):
        """early_exit, exit_threshold: for the bundles with exits (BundleRuntime); a threshold with none of
        them is refused."""
        if not bundles:
            raise InputError("no bundle to serve: give at least one bundle folder")
        loaded = {name: Bundle.load(folder) for name, folder in bundles.items()}
        if exit_threshold is not None and not any(b.has_exits for b in loaded.values()):
            raise InputError(f"none of the bundles {', '.join(loaded)} has exit graphs, so an exit threshold does not "
                             "apply; bundle a task model trained with --early-exit")
        self.runtimes = {name: BundleRuntime(b, variant, device, threads, early_exit=early_exit,
                                             exit_threshold=exit_threshold if b.has_exits else None)
                         for name, b in loaded.items()}
        self.lead = next(iter(self.runtimes.values()))
        for name, rt in self.runtimes.items():
            if identity(rt) != identity(self.lead):
                raise ErpackError(f"bundle {name} ({rt.bundle.folder}) serves another cache than "
                                  f"{self.lead.bundle.folder} (encoder, layer or codec differ): serve it separately")
        self.cache, self.storage_options = cache, storage_options
        self.reader = None
        self.notes: list[str] = []
        if cache is not None:
            self.reader = CacheReader(cache, storage_options=storage_options)
            for rt in self.runtimes.values():
                self.notes += rt.check_cache(self.reader)
        self.cache_reads = 0

    @property
    def names(self) -> list[str]:
        return list(self.runtimes)

    @property
    def provider(self) -> str:
        return self.lead.provider

    def warm(self) -> None:
        """Load the tokenizer, the lower graph and the codec, and run one text through every head."""
        self.predict_texts([Document("warm-up", "warm up")], self.names)

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()

    # ---- cached ids ------------------------------------------------------------------------------
    def missing(self, ids: list[str]) -> list[str]:
        if self.reader is None:
            raise InputError("this service has no cache: start it with --cache URL to predict ids, or send texts")
        return [i for i in ids if i not in self.reader]

    def predict_ids(self, ids: list[str], models: list[str]) -> dict[str, list[dict]]:
        """Rows per model for cached ids (each decoded once, whichever models ask for it)."""
        for m in models:
            self.runtimes[m].refuse_ids()
        missing = self.missing(ids)
        if missing:
            raise UnknownIds(missing, self.cache)
        unique = list(dict.fromkeys(ids))
        outputs = {m: {} for m in models}
        for rows in length_batches([self.reader.info(i)["tokens"] for i in unique], BATCH_SIZE, MAX_TOKENS):
            hidden, mask = self.reader.get_batch([unique[i] for i in rows])  # (B, T, H), (B, T)
            self.cache_reads += len(rows)
            for m in models:
                res = self.runtimes[m].upper.run({"hidden_states": hidden, "attention_mask": mask})  # [(B, C), layers?]
                outputs[m].update((unique[i], graph_row(res, r)) for r, i in enumerate(rows))
        return {m: prediction_rows(ids, outputs[m], self.runtimes[m].info, set(), None) for m in models}

    # ---- texts -----------------------------------------------------------------------------------
    def predict_texts(self, docs: list[Document], models: list[str], add_to_cache: bool = False) -> dict:
        """{"predictions": {model: rows}, "truncated": [ids], "lowered": Lowered}: one pass through the
        tokenizer, lower graph and codec, then every model's upper graph. A token model reads each text as
        its words (erpack.deploy.runtime.word_document); when that changes a text (runs of whitespace), the
        token models get a second pass of their own. `lowered` is the pass of the texts as given."""
        passes = {}  # token model? -> (docs, lowered, hidden)
        for token in dict.fromkeys(self.runtimes[m].token for m in models):
            mine = [word_document(d) for d in docs] if token else docs
            same = next((p for p in passes.values() if [d.text for d in p[0]] == [d.text for d in mine]), None)
            if same is None:
                lowered = self.lead.lower_texts(mine)
                same = (mine, lowered, [self.lead.roundtrip(h, e["input_ids"])
                                        for h, e in zip(lowered.hidden, lowered.encoded)])
            passes[token] = same
        result = {"predictions": {}, "truncated": [], "lowered": None}
        for token, (mine, lowered, hidden) in passes.items():
            result["lowered"] = result["lowered"] or lowered
            result["truncated"] = sorted(set(result["truncated"]) | {d.id for d, c in zip(mine, lowered.cut) if c},
                                         key=[d.id for d in docs].index)
            keyed = [Document(str(i), d.text, d.text_pair, d.where or f"document {d.id!r}") for i, d in enumerate(mine)]
            low = Lowered(keyed, lowered.encoded, lowered.cut, lowered.hidden)
            outs = {m: {} for m in models if self.runtimes[m].token == token}
            for rows in length_batches([h.shape[0] for h in hidden], BATCH_SIZE, MAX_TOKENS):
                batch, mask = pad_arrays([hidden[i] for i in rows])  # (B, T, H), (B, T)
                for m in outs:
                    res = self.runtimes[m].upper.run({"hidden_states": batch, "attention_mask": mask})
                    outs[m].update((str(i), graph_row(res, r)) for r, i in enumerate(rows))
            for m, out in outs.items():
                rows = self.runtimes[m].rows(keyed, out, low)  # keyed by position: two texts may share an id
                for row, d in zip(rows, docs):
                    row["id"] = d.id
                result["predictions"][m] = rows
        result["predictions"] = {m: result["predictions"][m] for m in models}
        return result

    def append(self, lowered: Lowered) -> int:
        """Append lowered texts to the cache (BundleRuntime.append) and reopen the reader to see them."""
        if self.cache is None:
            raise InputError("add_to_cache needs a cache: start the service with --cache URL")
        added = self.lead.append(self.cache, lowered, self.storage_options)
        if added:
            old, self.reader = self.reader, CacheReader(self.cache, storage_options=self.storage_options)
            old.close()
        return added


def split_lowered(lowered: Lowered, start: int, stop: int, docs: list[Document]) -> Lowered:
    """The documents start..stop of a lowered batch, under their own ids."""
    return Lowered(docs, lowered.encoded[start:stop], lowered.cut[start:stop], lowered.hidden[start:stop])

