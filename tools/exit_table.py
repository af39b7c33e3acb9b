"""Collect early-exit runs: per data set, seed and rule, test accuracy with exits, with every layer (the same
task model, `erpack eval --no-early-exit`: its head), mean layers, and the plain model trained without exits.

    python tools/exit_table.py WORK OUT.json

    python tools/exit_table.py WORK OUT.json --merge OLD.json   # OLD's runs that WORK does not hold are kept

WORK holds `train-DATA-RULE-SEED.out` (the output of `erpack train ... --json`, RULE = dact, patience or
none) and `cache-DATA`, `corpus-DATA.jsonl` (see docs/results/early-exit.md for the commands). Writes
OUT.json and prints one line per run and a Markdown table; tools/exit_page.py renders
docs/results/early-exit.md from every such file. --merge keeps the runs of an earlier result file whose
(data, rule, seed) WORK does not hold (their work folder may be gone), records that file's command and
machine under `merged`, and pairs every run with exits with the plain model of its data set and seed
whichever file measured it.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

from erpack.depth.rules import every_layer_scores
from erpack.runtime.timing import describe_machine
from erpack.train.labels import TRAIN_SUBSET


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("work", help="the work folder of the runs (train-DATA-RULE-SEED.out, cache-DATA, corpus-DATA.jsonl)")
    parser.add_argument("out", help="the result file to write (docs/results/depth/....json)")
    parser.add_argument("--merge", metavar="OLD.json", help="an earlier result file: its runs that WORK does not "
                        "hold are kept (marked with the file's command and machine under `merged`)")
    args = parser.parse_args(argv)
    W = Path(args.work)
    rows = []
    for out in sorted(W.glob("train-*-*-[0-9].out")):
        _, ds, rule, seed = out.stem.split("-")
        lines = out.read_text().strip().splitlines()
        if not lines or not lines[-1].startswith("{"):
            continue
        s = json.loads(lines[-1])
        r = s["recycled"]
        row = {"data": ds, "rule": rule, "seed": int(seed), "train_documents": s["documents"]["train"],
               "validation_documents": s["documents"]["validation"], "test_documents": s["documents"]["test"],
               "test_accuracy": r["test"]["accuracy"], "best_epoch": r["best_epoch"],
               "seconds_per_epoch": r["train_seconds_per_epoch"], "model": s["output"],
               "train_limit": (s.get("config") or {}).get("train_limit")}
        if rule != "none":
            e = r["notes"]["early_exit"]
            row.update(threshold=e["threshold"], mean_layers=r["test"]["mean_layers"],
                       mean_layers_fraction=r["test"]["mean_layers_fraction"], validation=e.get("validation"),
                       test_accuracy_every_layer_rule=every_layer_scores(e)["accuracy"])
            done = W / f"eval-{ds}-{rule}-{seed}.json"  # the --no-early-exit evaluation, kept for the next call
            if not done.is_file():
                model = Path(s["output"]) if Path(s["output"]).is_absolute() else W / s["output"]  # trained in WORK
                cmd = [sys.executable, "-m", "erpack", "eval", str(model), f"{W}/cache-{ds}", "--labels",
                       f"{W}/corpus-{ds}.jsonl", "--no-early-exit", "--json"]
                done.write_text(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
            ev = json.loads(done.read_text())
            row["test_accuracy_no_exits"] = ev["metrics"]["accuracy"]
            row["loss_points_vs_no_exits"] = 100 * (row["test_accuracy_no_exits"] - row["test_accuracy"])
        rows.append(row)
    merged = []
    if args.merge:  # an earlier file's runs that WORK does not hold, each marked with the file that measured it
        old = json.loads(Path(args.merge).read_text())
        have = {(r["data"], r["rule"], r["seed"]) for r in rows}
        kept = [r for r in old["runs"] if (r["data"], r["rule"], r["seed"]) not in have]
        for r in kept:
            r.pop("test_accuracy_plain_model", None), r.pop("loss_points_vs_plain_model", None)
            r.setdefault("measured_by", len(old.get("merged", [])))  # index into `merged`
        merged = [*old.get("merged", []), {"command": old.get("command"), "machine": old.get("machine")}]
        rows = sorted(kept + rows, key=lambda r: (r["data"], r["rule"], r["seed"]))
    plain = {(r["data"], r["seed"]): r["test_accuracy"] for r in rows if r["rule"] == "none"}
    for r in rows:
        if r["rule"] != "none" and (r["data"], r["seed"]) in plain:
            r["test_accuracy_plain_model"] = plain[(r["data"], r["seed"])]
            r["loss_points_vs_plain_model"] = 100 * (plain[(r["data"], r["seed"])] - r["test_accuracy"])
    Path(args.out).write_text(json.dumps({"command": "python tools/exit_table.py " + " ".join(argv),
                                         "machine": describe_machine(), "train_subset": TRAIN_SUBSET,
                                         "runs": rows, **({"merged": merged} if merged else {})},
                                        indent=2) + "\n")
    for r in rows:
        print(r["data"], r["rule"], r["seed"], round(r["test_accuracy"], 4), r.get("test_accuracy_no_exits"),
              r.get("mean_layers_fraction"), r.get("loss_points_vs_no_exits"), r.get("loss_points_vs_plain_model"))
    print()
    with_plain = any(r["rule"] == "none" for r in rows)  # plain models trained without exits, when the runs have them
    # L - k of the runs (3 for MiniLM k = 3, 6 for MPNet k = 6), from mean layers over their share
    upper = sorted({round(r["mean_layers"] / r["mean_layers_fraction"]) for r in rows if r["rule"] != "none"})
    print("| data | rule | seed | threshold | test acc. with exits | same model, every layer | "
          + ("plain model | " if with_plain else "") + f"loss vs every layer (pt) | mean layers (of {'/'.join(map(str, upper))}) | share of L-k |")
    print("|---|---|---|---|---|---|" + ("---|" if with_plain else "") + "---|---|---|")
    for r in rows:
        if r["rule"] == "none":
            continue
        plain = r.get("test_accuracy_plain_model")
        print(f"| {r['data']} | {r['rule']} | {r['seed']} | {r['threshold']:g} | {100 * r['test_accuracy']:.2f} | "
              f"{100 * r['test_accuracy_no_exits']:.2f} | "
              + (f"{'' if plain is None else f'{100 * plain:.2f}'} | " if with_plain else "")
              + f"{r['loss_points_vs_no_exits']:+.2f} | {r['mean_layers']:.2f} | {100 * r['mean_layers_fraction']:.0f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
