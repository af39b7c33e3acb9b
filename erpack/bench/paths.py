"""The inference paths `erpack bench` compares, documents to predictions, one class each.

Every path has the same interface: `prepare()` (load, export, open: not timed as inference),
`begin_run(cold)` (before each timed pass: a cold pass evicts the cache files from the page cache),
and `run(batch_ids) -> predicted class ids`, which charges its seconds to the sections of
`self.watch` (tokenize, read, decompress, dequantize, pad, host_to_device, compute).

    full-torch          text -> tokenizer -> whole model in PyTorch
    full-onnx-int8      text -> tokenizer -> whole model as ONNX, int8 dynamic quantization
    erpack-torch        cache on disk -> read -> decompress -> dequantize -> pad -> upper stack (PyTorch)
    erpack-onnx-fp32    the same, upper stack as ONNX fp32
    erpack-onnx-int8    the same, upper stack as ONNX int8 (dynamic)
    erpack-pruned-int8  the same, pruned upper stack as ONNX int8
    erpack-exit-int8    the same, a task model with exits as per-layer ONNX int8 graphs: documents stop early
                        and leave the batch (erpack.depth.ort)
    erpack-ode-int8     the same, a shared upper block run S ODE steps (erpack.depth.ode) as ONNX int8

ONNX graphs are written once into the work folder (`Workload.graph`) and shared by every codec.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from erpack.batching import mask_from_lengths
from erpack.depth.ort import ExitGraphs, is_exit_graphs
from erpack.errors import ErpackError
from erpack.runtime.lower import wants_token_types
from erpack.runtime.timing import Stopwatch, evict
from erpack.store import CacheReader
from erpack.store.location import Location


@dataclass
class Workload:
    """The documents, the model and the settings every path shares."""

    ids: list[str]
    texts: list[str]
    lengths: list[int]  # tokens per document after truncation
    batches: list[list[int]]  # indices into ids, grouped by length
    model: torch.nn.Module  # the full sequence-classification model (lower layers = the cache's encoder)
    tokenizer: object
    layer: int
    max_length: int
    work: Path
    threads: int | None = None
    device: str = "cpu"  # torch device of the PyTorch paths; ONNX sessions use CUDA when it is "cuda"
    graphs: dict = field(default_factory=dict)
    quantization: dict = field(default_factory=dict)  # graph key -> what int8 left in float

    def calibration_indices(self, limit: int = 128) -> list[list[int]]:
        """Batches of 16 (grouped by length) of the first half of the documents, at most `limit`:
        what the int8 graphs are calibrated on (agreement with fp32 only; no label is read)."""
        first = sorted(range(min(limit, max(1, len(self.ids) // 2))), key=lambda i: self.lengths[i])
        return [first[i: i + 16] for i in range(0, len(first), 16)]

    @property
    def num_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    def graph(self, key: str, make) -> Path:
        """The ONNX file for `key`, written by make(path) the first time it is asked for."""
        if key not in self.graphs:
            path = self.work / "graphs" / f"{key}.onnx"
            path.parent.mkdir(parents=True, exist_ok=True)
            make(path)
            self.graphs[key] = path
        return self.graphs[key]


class InferencePath:
    name = "path"
    needs_cache = False

    def __init__(self, work: Workload):
        self.work = work
        self.watch = Stopwatch()
        self.notes: list[str] = []

    def prepare(self) -> None:
        pass

    def begin_run(self, cold: bool = False) -> None:
        self.watch = Stopwatch()

    def run(self, batch_ids: list[int]) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def describe(self) -> dict:
        return {"name": self.name, "notes": self.notes}


# ---- whole model, from text ---------------------------------------------------------------------
class FullTorch(InferencePath):
    """The full model in PyTorch: tokenize, move to the device, run all L layers and the head."""

    name = "full-torch"

    def prepare(self) -> None:
        self.device = next(self.work.model.parameters()).device
        self.work.model.eval()

    def _tokenize(self, batch_ids, tensors: str):
        with self.watch("tokenize"):
            return self.work.tokenizer([self.work.texts[i] for i in batch_ids], padding=True, truncation=True,
                                       max_length=self.work.max_length, return_tensors=tensors)

    @torch.no_grad()
    def run(self, batch_ids):
        enc = self._tokenize(batch_ids, "pt")
        with self.watch("host_to_device"):
            enc = {k: v.to(self.device) for k, v in enc.items()}
        with self.watch("compute"):
            return self.work.model(**enc).logits.argmax(-1).cpu().numpy()


def on_cpu(model, make):
    """make() with `model` moved to the CPU (the exporters trace with CPU example inputs), then back."""
    device = next(model.parameters()).device
    model.cpu()
    try:
        return make()
    finally:
        model.to(device)


def quantized(work: Workload, key: str, make_fp32, calibration) -> Path:
    """int8 dynamic quantization of the graph `key` with `erpack export`'s settings, written once:
    7-bit weights, and the fewest outlier-fed MatMuls left in float that bring argmax agreement with
    the fp32 graph to 99% on `calibration()`'s batches (`erpack.export.quantize.sensitive_nodes`).
    What was left in float is kept in `work.quantization[key]`."""
    from erpack.export.quantize import sensitive_nodes

    source = work.graph(key, make_fp32)

    def make(path):
        batches = calibration()
        details = sensitive_nodes(source, path, batches)
        steps = details["auto_exclude"]["steps"]
        work.quantization[key] = {"excluded": details["excluded"], "agreement": steps[-1]["agreement"],
                                  "calibration_documents": int(details["auto_exclude"]["rows"])}

    return work.graph(f"{key}.int8", make)


def quantization_note(work: Workload, key: str) -> str:
    q = work.quantization[key]
    return (f"int8 dynamic, 7-bit weights; {len(q['excluded'])} MatMul(s) left in float for "
            f"{q['agreement']:.1%} argmax agreement with fp32 on {q['calibration_documents']} calibration documents")


def session(path: Path, threads: int | None, device: str = "cpu"):
    from erpack.export.session import create_session

    return create_session(path, device="cuda" if device.startswith("cuda") else "cpu", threads=threads)


class FullOnnxInt8(FullTorch):
    """The full model exported to ONNX and quantized to int8 by hand (torch.onnx + quantize_dynamic),
    or a graph given by the caller (e.g. optimum's export, tools/optimum_full_export.py)."""

    name = "full-onnx-int8"

    def __init__(self, work: Workload, graph: str | None = None):
        super().__init__(work)
        self.given = graph

    def prepare(self) -> None:
        if self.given:
            path = Path(self.given)
            self.notes.append(f"graph given: {path}")
        else:
            from erpack.export.onnx_export import FullStack, export_full  # `erpack export`'s exporter

            full = FullStack(self.work.model)
            make = lambda p: on_cpu(self.work.model, lambda: export_full(full, p, info={"source": "erpack bench"}))  # noqa: E731
            path = quantized(self.work, "full", make, self.calibration)
            self.notes.append("torch.onnx (TorchScript exporter, as erpack export) + onnxruntime quantize_dynamic; "
                              + quantization_note(self.work, "full"))
        self.sess = session(path, self.work.threads, self.work.device)
        self.notes += self.sess.notes
        self.inputs = set(self.sess.input_names)
        self.path = path

    def feeds(self, batch_ids, inputs) -> dict:
        enc = self._tokenize(batch_ids, "np")
        feeds = {k: np.asarray(v, dtype=np.int64) for k, v in enc.items() if k in inputs}
        if "token_type_ids" in inputs and "token_type_ids" not in feeds:
            feeds["token_type_ids"] = np.zeros_like(feeds["input_ids"])
        return feeds

    def calibration(self) -> list[dict]:
        names = {"input_ids", "attention_mask"} | ({"token_type_ids"} if wants_token_types(self.work.model) else set())
        return [self.feeds(b, names) for b in self.work.calibration_indices()]

    def run(self, batch_ids):
        feeds = self.feeds(batch_ids, self.inputs)
        with self.watch("compute"):
            return self.sess.run(feeds)[0].argmax(-1)


# ---- erpack: from the cache ---------------------------------------------------------------------
class CachePath(InferencePath):
    """Read records from a cache on disk, decode them stage by stage, pad, run an upper stack."""

    needs_cache = True
    kind = "torch"

    def __init__(self, work: Workload, cache):
        super().__init__(work)
        self.cache = cache if isinstance(cache, Location) else Path(cache)  # a Location: a cache at a URL
        self.reader = None

    @property
    def label(self) -> str:
        return f"{self.name} [{self.codec}]"

    def prepare(self) -> None:
        self.reader = CacheReader(self.cache)
        meta = self.reader.meta
        hidden = int(self.work.model.config.hidden_size)
        if meta.get("layer") != self.work.layer or self.reader.hidden_size != hidden:
            raise ErpackError(f"cache {self.cache} holds layer {meta.get('layer')} width {self.reader.hidden_size}; "
                              f"the benchmark runs layer {self.work.layer} width {hidden}: encode it with --layer "
                              f"{self.work.layer}")
        missing = [d for d in self.work.ids if d not in self.reader]
        if missing:
            raise ErpackError(f"cache {self.cache} lacks {len(missing)} of the benchmark's documents "
                              f"(e.g. {missing[0]!r}); encode the same corpus into it")
        self.codec = self.reader.codec.spec
        self.stats = self.reader.stats()
        self.files = ([self.cache / s.name for s in self.stats.shards] + [self.cache / "manifest.json"]
                      if isinstance(self.cache, Path) else [])  # --cold evicts local files only
        self.prepare_compute()

    def prepare_compute(self) -> None:
        from erpack.models import split_model

        _, self.upper = split_model(self.work.model, self.work.layer)
        self.upper.eval()
        self.device = next(self.work.model.parameters()).device

    def begin_run(self, cold: bool = False) -> None:
        super().begin_run(cold)
        if cold:  # close (unmap) first: mapped pages are not evicted
            self.reader.close()
            self.evicted = evict(self.files)
            with self.watch("read"):
                self.reader = CacheReader(self.cache)

    def decode_batch(self, batch_ids) -> tuple[np.ndarray, np.ndarray]:
        """(hidden (B, T, H) float32, mask (B, T) int64) for the batch, timing each stage."""

        codec, w = self.reader.codec, self.watch
        views, lengths = [], []
        tokens = [] if codec.needs_tokens else None  # token ids, for a codec that reads them
        for i in batch_ids:
            with w("read"):  # copy out of the memory map: the page faults are the disk read
                buf, (T, H) = self.reader.get_encoded(self.work.ids[i])
                data = bytes(buf)
                if tokens is not None:
                    tokens.append(self.reader.get_tokens(self.work.ids[i]))
            with w("decompress"):  # every byte stage undone, bounded by the record's shape
                views.append(codec.unwrap(data, T, H))
            lengths.append(T)
        with w("dequantize"):  # into the padded batch: one multiply for the batch where the codec allows
            hidden = codec.dequantize_batch(views, lengths, H, tokens=tokens)  # (B, T, H)
        with w("pad"):
            mask = mask_from_lengths(lengths, hidden.shape[1])  # (B, T)
        return hidden, mask

    @torch.no_grad()
    def run(self, batch_ids):
        hidden, mask = self.decode_batch(batch_ids)
        with self.watch("host_to_device"):
            h = torch.from_numpy(hidden).to(self.device)
            m = torch.from_numpy(mask).to(self.device)
        with self.watch("compute"):
            return self.upper(h, m).argmax(-1).cpu().numpy()

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()

    def describe(self) -> dict:
        s = self.stats
        return {"name": self.name, "cache": str(self.cache), "codec": self.codec, "notes": self.notes,
                "bytes_per_token": s.bytes_per_token, "bits_per_value": s.bits_per_value,
                "cache_bytes": s.bytes_on_disk, "cache_documents": s.documents, "cache_tokens": s.tokens}


class ErpackTorch(CachePath):
    name = "erpack-torch"


def export_upper_graph(upper, hidden_size: int, path: Path) -> Path:
    from erpack.export.onnx_export import export_upper

    return export_upper(upper, path, hidden_size=hidden_size, info={"source": "erpack bench"})


class ErpackOnnx(CachePath):
    """The upper stack as an ONNX graph in onnxruntime (fp32, or int8 dynamic)."""

    def __init__(self, work: Workload, cache, int8: bool):
        super().__init__(work, cache)
        self.int8 = int8
        self.name = "erpack-onnx-int8" if int8 else "erpack-onnx-fp32"

    def upper_module(self):
        from erpack.models import split_model

        return split_model(self.work.model, self.work.layer)[1], "upper", self.work.model

    def prepare_compute(self) -> None:
        upper, key, root = self.upper_module()
        hidden = int(self.work.model.config.hidden_size)
        make = lambda p: on_cpu(root, lambda: export_upper_graph(upper, hidden, p))  # noqa: E731
        if self.int8:
            path = quantized(self.work, key, make, self.calibration)
            self.notes.append(quantization_note(self.work, key))
        else:
            path = self.work.graph(key, make)
        self.sess = session(path, self.work.threads, self.work.device)
        self.notes += self.sess.notes
        self.graph_bytes = path.stat().st_size

    def calibration(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Decoded records of the calibration documents, padded: [(hidden (B, T, H), mask (B, T))]."""
        return [self.decode_batch(b) for b in self.work.calibration_indices()]

    def run(self, batch_ids):
        hidden, mask = self.decode_batch(batch_ids)
        with self.watch("compute"):
            return self.sess.run({"hidden_states": hidden, "attention_mask": mask})[0].argmax(-1)


class ErpackPrunedInt8(ErpackOnnx):
    """A pruned upper stack (an `erpack prune` task model, or pruned here by importance) as ONNX int8."""

    def __init__(self, work: Workload, cache, pruned_model):
        super().__init__(work, cache, int8=True)
        self.name = "erpack-pruned-int8"
        self.pruned_model = pruned_model  # nn.Module (full classifier, pruned upper layers)

    def upper_module(self):
        from erpack.models import split_model

        return split_model(self.pruned_model, self.work.layer)[1], "upper-pruned", self.pruned_model


class ErpackExitInt8(CachePath):
    """A task model trained with --early-exit, as per-layer int8 graphs with their exits (erpack.depth.onnx),
    run with batch compaction (erpack.depth.ort). Its own weights (not the workload's model): give the task
    model with --exit-model, or a --task-model that has exits."""

    name = "erpack-exit-int8"
    kind = "onnx"

    def __init__(self, work: Workload, cache, exit_model: str):
        super().__init__(work, cache)
        self.exit_model = exit_model
        self.layers: list[np.ndarray] = []

    def prepare_compute(self) -> None:
        from erpack.depth.onnx import export_exit_graphs
        from erpack.train import TaskModel

        tm = TaskModel.load(self.exit_model)
        if tm.layer != self.work.layer:
            raise ErpackError(f"exit model {self.exit_model} runs from layer {tm.layer}; the benchmark runs layer "
                              f"{self.work.layer}")
        folder = self.work.work / "graphs" / f"exits-int8-auto-{tm.info['checksum'][:12]}"
        if not is_exit_graphs(folder):  # float exclusions per layer by the int8 upper graph's rule, on its batches
            calibration = [self.decode_batch(b) for b in self.work.calibration_indices()]
            export_exit_graphs(tm, folder, int8=True, overwrite=True, source=self.exit_model, calibration=calibration)
        self.graphs = ExitGraphs(folder, "cuda" if self.work.device.startswith("cuda") else "cpu", self.work.threads)
        rule = self.graphs.rule
        self.notes += self.graphs.notes + [f"exit rule {rule.name} threshold {rule.threshold:g} from "
                                           f"{self.exit_model}; int8 dynamic, 7-bit weights, per-layer graphs "
                                           "(MatMuls left in float: " + ", ".join(
                                               f"{n} {len(g['excluded'])}" for n, g in
                                               (self.graphs.info.get("quantization") or {}).get("graphs", {}).items()) + ")"]
        self.graph_bytes = sum((folder / n).stat().st_size for n in self.graphs.info["files"])

    def begin_run(self, cold: bool = False) -> None:
        super().begin_run(cold)
        self.layers = []

    def run(self, batch_ids):
        hidden, mask = self.decode_batch(batch_ids)
        with self.watch("compute"):
            logits, layers = self.graphs.run({"hidden_states": hidden, "attention_mask": mask})
        self.layers.append(layers)
        return logits.argmax(-1)

    def describe(self) -> dict:
        d = super().describe()
        if self.layers:
            used = np.concatenate(self.layers)
            d["mean_layers"] = float(used.mean())
            d["mean_layers_fraction"] = float(used.mean() / self.graphs.layers)
        return d


class ErpackOdeInt8(ErpackOnnx):
    """A shared-block task model (`erpack train --shared-block`, or ALBERT) run S ODE steps, unrolled into an
    ONNX graph (as `erpack export --steps S`), int8."""

    def __init__(self, work: Workload, cache, task_model, steps: int):
        super().__init__(work, cache, int8=True)
        self.name = "erpack-ode-int8"
        self.task_model, self.steps = task_model, steps  # a TaskModel with a shared block; steps checked

    def upper_module(self):
        from erpack.depth.ode import ode_upper

        return ode_upper(self.task_model, self.steps), f"upper-ode-s{self.steps}", self.task_model.model


def prune_by_importance(model, layer: int, batches, heads: float, ffn: float):
    """A pruned copy of `model` (no recovery): importance |dLoss/dgate| on `batches` of
    (hidden, mask, y), then the least important heads and neurons cut (erpack.prune)."""
    import copy

    from erpack.prune import Fractions, apply_plan, make_plan, score_importance

    importance = score_importance(model, layer, batches)
    plan = make_plan(importance, Fractions(heads=heads, ffn=ffn))
    return apply_plan(copy.deepcopy(model), plan).eval(), plan.counts()
