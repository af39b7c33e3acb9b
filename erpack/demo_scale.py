"""`erpack demo --scale`: the demo's real model and reviews through erpack's corpus-scale parts, on
one machine: Ray workers, a cache on object storage, training and scoring from it.

    1 services  an S3-compatible server on loopback (moto; or a real bucket/prefix given as `storage`)
                and a local Ray instance (or a running cluster at `address`)
    2 encode    the subset (the normal demo's) uploaded as Parquet to storage/corpus/, read by Ray Data
                and encoded by `workers` Ray
                actors into the int8z cache storage/cache (erpack encode --engine ray)
    3 verify    every shard and record of the cache, read back from storage (erpack verify URL)
    4 train     LoRA adapters + head from the cache on storage: range reads, prefetched (erpack train URL)
    5 export    the task model to ONNX, checked against PyTorch on records from storage (erpack export)
    6 predict   every test document scored by Ray actors into storage/predictions as Parquet parts,
                read back and scored against the labels (erpack predict --engine ray)

Each step's figures carry its wall time and, on the local server, the S3 requests it made. Local
files (the subset, the task model, the graph, demo-scale.json) go into `out`.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from erpack.cluster.encode import RayOptions, encode_on_ray
from erpack.cluster.s3local import local_s3
from erpack.cluster.score import read_parts, score_on_ray
from erpack.cluster.session import connect
from erpack.demo import TRAIN_CODEC, write_subset
from erpack.runtime.timing import describe_machine
from erpack.store import verify_cache
from erpack.store.location import open_location
from erpack.train.labels import read_labels

STEPS = ("services", "encode", "verify", "train", "export", "predict")
BUCKET = "erpack-demo"  # of the local server


@dataclass
class ScaleConfig:
    """What `erpack demo --scale` runs; `quick()` is the tiniest run (the test suite's)."""

    out: str = "erpack-demo-scale"
    storage: str | None = None  # s3://bucket/prefix (AWS_* from the environment); None: a local server
    address: str | None = None  # a running Ray cluster; None: a local instance
    workers: int = 2
    model: str = "minilm"
    dataset: str = "rotten_tomatoes"
    layer: int | None = None  # default: the middle
    documents: int = 2000
    codec: str = TRAIN_CODEC
    epochs: int = 1
    rank: int = 16
    batch_size: int = 32
    max_length: int = 128
    shard_size: int | None = None  # documents per shard; default: 4 shards per worker
    part_docs: int | None = None  # test documents per prediction part; default: 2 parts per worker
    timing_runs: int = 3
    seed: int = 0
    device: str = "auto"

    @classmethod
    def quick(cls, **kw) -> ScaleConfig:
        small = dict(documents=160, epochs=1, timing_runs=1)
        small.update({k: v for k, v in kw.items() if v is not None})
        return cls(**small)

    def shard_docs(self) -> int:
        return self.shard_size or max(1, math.ceil(self.documents / (4 * self.workers)))


@dataclass
class ScaleRun:
    """One run: settings, where things are, figures so far; `requests()` counts the local server's."""

    cfg: ScaleConfig
    out: Path
    progress: Callable | None = None
    on_step: Callable | None = None
    storage: str = ""
    server: object = None
    steps: dict[str, dict] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return f"{self.storage.rstrip('/')}/{name}"

    def bar(self, *args, **kw):
        return self.progress(*args, leave=False, **kw) if self.progress else None

    def requests(self) -> int | None:
        return self.server.requests() if self.server is not None else None

    def start(self) -> tuple[float, int | None]:
        return time.perf_counter(), self.requests()

    def done(self, name: str, mark: tuple[float, int | None], figures: dict) -> dict:
        """Record step `name`'s figures, its seconds and S3 requests since `mark`, and tell on_step."""
        t0, r0 = mark
        figures["seconds"] = time.perf_counter() - t0
        figures["requests"] = None if r0 is None else self.requests() - r0
        self.steps[name] = figures
        if self.on_step:
            self.on_step(STEPS.index(name) + 1, name, figures)
        return figures


def services_step(run: ScaleRun, mark) -> dict:
    """1. the storage is reachable and Ray is up."""
    cfg = run.cfg
    loc = open_location(run.storage)
    loc.makedirs()
    loc.listdir()  # an unreachable endpoint or a missing bucket fails here, named
    ray = connect(cfg.address, cfg.workers)
    return run.done("services", mark, {
        "storage": run.storage, "endpoint": run.server.endpoint if run.server is not None else None,
        "local_server": run.server is not None, "ray_version": ray.__version__,
        "ray_address": cfg.address or "local", "ray_cpus": ray.cluster_resources().get("CPU", 0.0),
        "workers": cfg.workers})


def upload_parquet(jsonl: Path, url: str) -> None:
    """The JSONL subset as one Parquet file at `url` (a corpus Ray Data reads from object storage)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines() if line]
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf, compression="zstd")
    folder, _, name = url.rpartition("/")
    open_location(folder).write_atomic(name, buf.getvalue())


def encode_step(run: ScaleRun) -> dict:
    """2. the subset, uploaded; encoded on Ray into storage/cache."""
    cfg, mark = run.cfg, run.start()
    corpus = run.out / "corpus.jsonl"
    subset = write_subset(cfg.dataset, cfg.documents, corpus)
    corpus_url = run.url("corpus/corpus.parquet")
    upload_parquet(corpus, corpus_url)
    enc = encode_on_ray(corpus_url, run.url("cache"), model=cfg.model, layer=cfg.layer,
                        codec=cfg.codec, max_length=cfg.max_length, batch_size=cfg.batch_size,
                        shard_size=cfg.shard_docs(), device=cfg.device, progress=run.bar,
                        ray_options=RayOptions(address=cfg.address, workers=cfg.workers))
    return run.done("encode", mark, {**subset, "corpus": corpus_url, "cache": run.url("cache"),
                                     "codec": cfg.codec, "shard_size": cfg.shard_docs(), "encode": enc.as_dict()})


def verify_step(run: ScaleRun) -> dict:
    """3. the cache read back whole from storage, every record decoded."""
    mark = run.start()
    ver = verify_cache(run.url("cache"))
    return run.done("verify", mark, {"cache": run.url("cache"), "ok": ver.ok, "documents": ver.documents,
                                     "records": ver.records, "shards": len(ver.shards),
                                     "failures": len(ver.failures), "warnings": list(ver.warnings)})


def train_step(run: ScaleRun) -> dict:
    """4. LoRA adapters + head trained from the cache on storage."""
    from erpack.train import AdapterSpec, TrainConfig  # torch, peft
    from erpack.train.trainer import train_from_cache

    cfg, mark = run.cfg, run.start()
    output = run.out / "model-lora"
    tcfg = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed, device=cfg.device)
    tr = train_from_cache(run.url("cache"), str(run.out / "corpus.jsonl"), mode="adapter",
                          adapter=AdapterSpec("lora", r=cfg.rank), output=output, config=tcfg, progress=run.bar,
                          overwrite=True)  # the demo's own folder: a rerun replaces it
    r = tr.recycled
    return run.done("train", mark, {"cache": run.url("cache"), "output": str(output), "documents": tr.documents,
                                    "labels": tr.labels, "epochs": len(r.epochs), "prefetch": tcfg.prefetch,
                                    "accuracy": r.test["accuracy"],
                                    "validation_accuracy": r.best_validation["accuracy"],
                                    "trainable_params": r.trainable_params, "total_params": r.total_params,
                                    "train_seconds_per_epoch": r.train_seconds_per_epoch,
                                    "read_wait_seconds": sum(e.get("wait_seconds", 0.0) for e in r.epochs)})


def export_step(run: ScaleRun) -> dict:
    """5. the task model to ONNX, checked against PyTorch on cached records read from storage."""
    from erpack.export import export_task_model  # torch, onnx

    mark = run.start()
    graph = run.out / "onnx" / "model.onnx"
    ex = export_task_model(run.out / "model-lora", graph, calibration_cache=run.url("cache"),
                           timing_runs=run.cfg.timing_runs, overwrite=True)
    return run.done("export", mark, {"output": ex.output, "bytes": ex.bytes, "parity_max_diff": ex.parity["max_diff"],
                                     "tolerance": ex.parity["tolerance"], "notes": ex.notes})


def predict_step(run: ScaleRun) -> dict:
    """6. the test documents scored on Ray into Parquet parts on storage; read back, scored."""
    cfg, mark = run.cfg, run.start()
    labels = {e.id: e for e in read_labels(str(run.out / "corpus.jsonl")) if e.split == "test"}
    ids = list(labels)
    part_docs = cfg.part_docs or max(1, math.ceil(len(ids) / (2 * cfg.workers)))
    s = score_on_ray(run.steps["export"]["output"], run.url("cache"), run.url("predictions"), ids=ids,
                     fmt="parquet", workers=cfg.workers, address=cfg.address, part_docs=part_docs,
                     batch_size=cfg.batch_size, device=cfg.device)
    rows = read_parts(run.url("predictions"))
    scored = [r for r in rows if r["id"] in labels]
    correct = sum(str(r["predicted"]) == str(labels[r["id"]].label) for r in scored)
    accuracy = correct / len(scored) if scored else None
    pytorch = run.steps["train"]["accuracy"]
    return run.done("predict", mark, {
        "output": run.url("predictions"), "format": "parquet", "parts": len(s.parts), "part_docs": part_docs,
        "workers": cfg.workers, "provider": s.provider, "documents": len(ids), "predicted": s.predicted,
        "read_back": len(rows), "missing": len(s.missing), "accuracy": accuracy,
        "matches_pytorch": accuracy is not None and abs(accuracy - pytorch) < 1e-9,
        "scoring_seconds": s.seconds})


@contextlib.contextmanager
def _storage(cfg: ScaleConfig):
    """(storage URL, the local server or None) for the run; the local server stops on exit."""
    if cfg.storage:
        yield cfg.storage.rstrip("/"), None
        return
    with local_s3(BUCKET) as s3:
        yield s3.url, s3


def run_scale_demo(cfg: ScaleConfig | None = None, progress: Callable | None = None,
                   on_step: Callable[[int, str, dict], None] | None = None) -> dict:
    """Run the six steps; returns {config, out, storage, steps: {name: figures incl. seconds and
    requests}, seconds, ok}, also written to out/demo-scale.json. A Ray instance this call started is
    shut down at the end; one already running (or a cluster) is left as it was."""
    import transformers

    cfg = cfg or ScaleConfig()
    transformers.logging.set_verbosity_error()  # the new head's "newly initialised" report is expected
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    started_ray = False
    with warnings.catch_warnings(), _storage(cfg) as (storage, server):
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        run = ScaleRun(cfg, out, progress, on_step, storage=storage, server=server)
        mark = run.start()
        try:
            import ray

            started_ray = not ray.is_initialized()
        except ImportError:
            pass
        try:
            services_step(run, mark)
            encode_step(run)
            verify_step(run)
            train_step(run)
            export_step(run)
            predict_step(run)
        finally:
            if started_ray:
                import ray

                ray.shutdown()
    steps = run.steps
    pred = steps["predict"]
    ok = (steps["verify"]["ok"] and steps["verify"]["documents"] == steps["encode"]["documents"]
          and pred["predicted"] == pred["documents"] == pred["read_back"] and pred["matches_pytorch"])
    result = {"kind": "erpack-demo-scale", "config": asdict(cfg), "out": str(out), "storage": storage,
              "model": cfg.model, "dataset": cfg.dataset, "steps": steps, "seconds": time.perf_counter() - t_all,
              "ok": ok, "machine": describe_machine()}
    (out / "demo-scale.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    return result
