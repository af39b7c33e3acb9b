"""The exits' learning rate (`erpack train --exit-lr`): one DACT run per exit lr on the same cache, labels, seed
and run lr, and what each gives on the test split: the task metric with exits and with every layer (the
row's `test_all_layers`: DACT's halting-weighted mixture; `test_head`: the task head, in runs whose record has
it), mean layers, and how far the halting probabilities spread across documents.

    python tools/exit_lr.py runs/cache-rt runs/scores-rt.jsonl --task regression --exit-lrs 1e-4,1e-3 \
        --work runs/reg -o docs/results/depth/exit-lr-minilm-k3-rt-regression.json

Each run is `erpack train CACHE --labels LABELS --task TASK --mode MODE --lr LR --epochs E --seed S
--early-exit dact --exit-lr X -o WORK/tm-X --json` (its output kept as WORK/train-X.out, reused when present).
The halting statistics are per exit (layers k..L-2): the sigmoid of each test document's halting logit, its
mean, standard deviation across documents and 5th/95th percentiles. Writes OUT (the command, the machine, a
row per exit lr) and prints one line per run.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from erpack.depth.rules import every_layer_scores


def halting_stats(model: str, cache: str, labels: str, task: str) -> dict:
    """Per exit: the test documents' halting probabilities (mean, std, p5, p95) and the exit-layer counts."""
    import torch

    from erpack.depth.runner import ExitModel
    from erpack.store import CacheReader
    from erpack.train import TaskModel
    from erpack.train.labels import read_labels

    tm = TaskModel.load(model)
    em = ExitModel.of(tm)
    em.eval()
    ids = [e.id for e in read_labels(labels, task) if e.split == "test"]
    probs, layers = [], []
    with CacheReader(cache) as reader, torch.no_grad():
        for i in range(0, len(ids), 64):
            hidden, mask = (torch.from_numpy(a) for a in reader.get_batch(ids[i:i + 64]))
            _, hs = em.outputs(hidden, mask)  # (B, L-k-1) halting logits
            probs.append(torch.sigmoid(hs).numpy())
            layers.append(em.run(hidden, mask)[1])
    p, used = np.concatenate(probs), np.concatenate(layers)  # (N, L-k-1), (N,)
    return {"halting": [{"exit": j, "mean": float(p[:, j].mean()), "std": float(p[:, j].std()),
                         "p5": float(np.percentile(p[:, j], 5)), "p95": float(np.percentile(p[:, j], 95))}
                        for j in range(p.shape[1])],
            "exit_layers": {str(n): int((used == n).sum()) for n in range(1, em.layers + 1)}}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cache", help="cache folder (erpack encode)")
    p.add_argument("labels", help="label file (id, label, split per line)")
    p.add_argument("--task", choices=["classification", "regression"], default="classification")
    p.add_argument("--mode", choices=["upper", "adapter", "head"], default="upper")
    p.add_argument("--lr", type=float, default=1e-4, help="the run's lr (default: 1e-4)")
    p.add_argument("--exit-lrs", default="1e-4,1e-3", help="comma-separated exit lrs, one run each (default: 1e-4,1e-3)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", required=True, help="folder for the task models and the train outputs")
    p.add_argument("-o", "--output", required=True, help="the result file (docs/results/depth/exit-lr-*.json)")
    args = p.parse_args(argv)
    from erpack.runtime.timing import describe_machine

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for x in args.exit_lrs.split(","):
        lr = float(x)
        tm, out = work / f"tm-{lr:g}", work / f"train-{lr:g}.out"
        cmd = [sys.executable, "-m", "erpack", "train", args.cache, "--labels", args.labels, "--task", args.task,
               "--mode", args.mode, "--lr", f"{args.lr:g}", "--epochs", str(args.epochs), "--seed", str(args.seed),
               "--early-exit", "dact", "--exit-lr", f"{lr:g}", "-o", str(tm), "--json"]
        if not out.is_file():
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode:
                print(done.stderr, file=sys.stderr)
                return done.returncode
            out.write_text(done.stdout)
        s = json.loads(out.read_text().strip().splitlines()[-1])
        r, e = s["recycled"], s["recycled"]["notes"]["early_exit"]
        metric = "pearson" if args.task == "regression" else "accuracy"
        row = {"exit_lr": lr, "run_lr": args.lr, "metric": metric, "test": r["test"][metric],
               "test_all_layers": every_layer_scores(e)[metric],  # the mixture
               **({"test_head": e["test_all_layers"][metric]} if "test_mixture" in e else {}),
               "mean_layers": r["test"]["mean_layers"],
               "threshold": e["threshold"], "validation": e.get("validation"), "best_epoch": r["best_epoch"],
               "seconds_per_epoch": r["train_seconds_per_epoch"], "documents": s["documents"],
               "command": " ".join(["erpack"] + cmd[3:])}
        row.update(halting_stats(str(tm), args.cache, args.labels, args.task))
        rows.append(row)
        spread = max(h["std"] for h in row["halting"])
        head = f", the head {row['test_head']:.4f}" if "test_head" in row else ""
        print(f"exit lr {lr:g}: test {metric} {row['test']:.4f} (every layer: the mixture {row['test_all_layers']:.4f}"
              f"{head}), "
              f"{row['mean_layers']:.2f} layers, threshold {row['threshold']:g}, halting std <= {spread:.4f}")
    Path(args.output).write_text(json.dumps({"command": "python tools/exit_lr.py " + " ".join(argv),
                                             "machine": describe_machine(threads=1), "runs": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
