"""`erpack bench --train`: one training epoch from the cache against one epoch of full fine-tuning.

Uses erpack.train (train_from_cache with baseline=True) on a small labelled set: the first N
training and N/4 validation and test documents of a built-in data set (or a labelled JSONL), encoded
into a cache with the benchmark's first codec. Epochs are long, so each side runs once (no repeats):
the figure is an epoch time ratio, with the machine load beside it.
"""

from __future__ import annotations

import json
from pathlib import Path

from erpack.assets import load_dataset
from erpack.encode import encode_corpus
from erpack.errors import InputError


def training_documents(corpus: str, n: int) -> tuple[list[dict], str]:
    """(rows with id, text, label, split; the label source erpack.train reads) for a corpus spec."""
    path = Path(corpus)
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
        if not all("label" in r and "split" in r for r in rows):
            raise InputError(f"--train on {corpus}: each row needs `label` and `split` (train/validation/test)")
        return rows, str(path)

    name = corpus.partition(":")[0]
    quota = {"train": n, "validation": max(8, n // 4), "test": max(8, n // 4)}
    rows = []
    for r in load_dataset(name):
        if quota.get(r.split, 0) > 0:
            quota[r.split] -= 1
            rows.append({"id": r.id, "text": r.text, "label": r.label, "split": r.split})
    return rows, name


def bench_training(corpus: str, model: str, layer: int, codec: str, work: Path, n: int = 128,
                   batch_size: int = 32, device: str = "cpu", progress=None) -> dict:
    from erpack.train import TrainConfig, train_from_cache

    rows, labels = training_documents(corpus, n)
    folder = work / "train"
    folder.mkdir(parents=True, exist_ok=True)
    src = folder / "corpus.jsonl"
    src.write_text("".join(json.dumps({"id": r["id"], "text": r["text"]}) + "\n" for r in rows))
    cache = folder / "cache"
    if not (cache / "manifest.json").exists():
        encode_corpus(str(src), cache, model=model, layer=layer, codec=codec, batch_size=batch_size, device=device)
    cfg = TrainConfig(epochs=1, batch_size=batch_size, seed=0, device=device)
    s = train_from_cache(str(cache), labels, mode="upper", config=cfg, baseline=True, model_override=None,
                         skip_missing=True, progress=progress)
    rec, base = s.recycled, s.baseline
    return {"documents": s.documents, "codec": codec, "mode": "upper", "epochs": 1,
            "recycled_seconds_per_epoch": rec.train_seconds_per_epoch,
            "baseline_seconds_per_epoch": base.train_seconds_per_epoch,
            "speedup": base.train_seconds_per_epoch / rec.train_seconds_per_epoch,
            "recycled_test": rec.test, "baseline_test": base.test,
            "comparison": s.comparison.as_dict() if s.comparison else None,
            "note": "one epoch each, not repeated; the baseline fine-tunes every layer from text, the recycled "
                    "run trains layers k..L-1 and the head from the cache"}
