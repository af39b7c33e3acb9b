"""A corpus of a built-in data set with N documents of each split drawn by a seeded permutation.

    python tools/seeded_corpus.py rotten_tomatoes 1000 600 all runs/mpnet/corpus-rt.jsonl
    python tools/seeded_corpus.py bbc 400 all all runs/mpnet/corpus-bbc.jsonl
    python tools/seeded_corpus.py bbc 0 0 96 runs/mpnet/speed-bbc.jsonl      # 96 test articles only

For each split, the split's records in the data set's order (erpack.assets.load_dataset), indexed by
`numpy.random.default_rng(SEED).permutation(len(split))[:N]` (a fresh generator per split; `all` keeps
the whole split, 0 none of it). The corpus keeps the data set's order (JSONL: id, text, label, split,
written atomically). Prints the file, its document count and the training split's classes. The MPNet
early-exit runs (docs/results/depth/mpnet-k6-notes.md) used these subsets.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", help="a built-in data set (rotten_tomatoes, bbc)")
    for split in ("train", "validation", "test"):
        p.add_argument(split, help=f"{split} documents: a number, or `all`")
    p.add_argument("output", help="the corpus file to write (JSONL)")
    p.add_argument("--seed", type=int, default=0, help="the permutation's seed (default 0)")
    args = p.parse_args(argv)

    import numpy as np

    from erpack.assets import load_dataset
    from erpack.errors import ErpackError
    from erpack.experiments.corpora import write_records

    try:
        records = load_dataset(args.dataset)
        keep: set[str] = set()
        for split in ("train", "validation", "test"):
            n, rows = getattr(args, split), [r for r in records if r.split == split]
            if n != "all" and not n.isdigit():
                raise ErpackError(f"{split}: give a number of documents or `all`, not {n!r}")
            chosen = range(len(rows)) if n == "all" else np.random.default_rng(args.seed).permutation(len(rows))[:int(n)]
            keep |= {rows[i].id for i in chosen}
        rows = [r for r in records if r.id in keep]
        write_records(Path(args.output), rows)
    except ErpackError as e:
        print(f"seeded_corpus: error: {e}", file=sys.stderr)
        return 2
    classes = collections.Counter(r.label for r in rows if r.split == "train")
    print(f"{args.output} {len(rows)} {dict(classes)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
