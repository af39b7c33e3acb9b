"""A CPU-sized corpus of a built-in data set: the first N (or a hash sample of N) of each split.

    python tools/subset_corpus.py rotten_tomatoes --train 800 --validation 300 --how first \
        -o runs/s10/corpus-rt.jsonl --labels-dir runs/s10
    python tools/subset_corpus.py bbc --train 400 --validation 150 --how hash -o runs/s10/corpus-bbc.jsonl \
        --labels-dir runs/s10

Writes the corpus (JSONL: id, text, label, split; a split without a limit is kept whole) and, in
--labels-dir, the label file `tools/prune_table.py` uses for the same limits
(erpack.experiments.corpora.subset_labels), so
an `erpack encode` of the corpus makes the cache that the pruning table, `erpack train` and
`tools/export_bench.py` read. Prints the label file's path and the document count.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from erpack.assets import load_dataset
from erpack.errors import ErpackError
from erpack.experiments.corpora import DATASETS, subset_labels, subset_records, write_records


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dataset", choices=sorted(DATASETS.values()))
    p.add_argument("--train", type=int, default=None, help="training documents (default: all)")
    p.add_argument("--validation", type=int, default=None, help="validation documents (default: all)")
    p.add_argument("--test", type=int, default=None, help="test documents (default: all)")
    p.add_argument("--how", choices=["first", "hash"], default="hash",
                   help="the first N in the data set's order, or the N with the smallest sha1(id)")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--labels-dir", required=True)
    args = p.parse_args()
    short = next(k for k, v in DATASETS.items() if v == args.dataset)
    limits = {"train": args.train, "validation": args.validation, "test": args.test}
    try:
        labels = subset_labels(Path(args.labels_dir), short, limits, args.how)
        ids = {r.id for r in subset_records(short, limits, args.how)}
        rows = [r for r in load_dataset(args.dataset) if r.id in ids]  # the corpus keeps the data set's order
        write_records(Path(args.output), rows)
    except ErpackError as e:
        print(f"subset_corpus: error: {e}", file=sys.stderr)
        return 2
    print(f"{labels} {len(rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
