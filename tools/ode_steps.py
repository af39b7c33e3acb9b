"""Accuracy against ODE steps for a shared block distilled from the cache (or ALBERT's own groups).

    python tools/ode_steps.py --cache CACHE --labels bbc --name minilm-k3-bbc [--distill-epochs 2 --epochs 3
        --block-init mean --train-limit N --work runs/ode]       # -> docs/results/depth/ode-NAME.json
    python tools/ode_steps.py ... --name NAME-random --random-steps   # the same, fine-tuned at a random S per batch
    python tools/ode_steps.py --render --results docs/results/ode-steps.md   # the page, from the JSON files
    python tools/ode_steps.py --unrolled-against-loop            # -> docs/results/depth/ode-unroll.json
    python tools/ode_steps.py --compare-inits --cache CACHE --labels L --name NAME  # mean vs layer-k block init
    python tools/ode_steps.py --tiny-albert FOLDER               # a random 6-layer ALBERT to encode with --model

One run: `erpack train CACHE --labels L --shared-block ...` (library call: train_from_cache with a
ShareSpec) into WORK/NAME, then `erpack eval WORK/NAME CACHE --labels L --steps S --json` on the test
split for every S in 1..L-k (the step size each S uses was set on validation at training time), plus
the plain upper stack's eval (no --steps). The JSON holds the command, the machine, the training
record (distillation losses, validation per step size) and one row per S; `half_steps` checks issue
22's "at half the steps, within 1 point of all the steps".
"""

from __future__ import annotations

import argparse
import json

from erpack.experiments.ode_steps import (
    RESULTS,
    compare_inits,
    page_body,
    render,
    run_steps,
    tiny_albert_folder,
    unrolled_against_loop,
)


def main(argv=None) -> int:
    from erpack.store.atomic import write_atomic

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache")
    p.add_argument("--labels")
    p.add_argument("--name")
    p.add_argument("--work", default="runs/ode")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--distill-epochs", type=int, default=2)
    p.add_argument("--block-init", choices=["mean", "layer"], default="mean")
    p.add_argument("--train-limit", type=int, default=None)
    p.add_argument("--random-steps", action="store_true", help="fine-tune at a random step count per batch "
                   "(erpack train --shared-block --random-steps); the result file's config says so")
    p.add_argument("--random-distill", action="store_true", help="with --random-steps: distil at a random step "
                   "count per batch too (erpack train --random-distill)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patience", type=int, default=2)
    p.add_argument("--beta-docs", type=int, default=512, help="validation documents the step sizes are chosen on")
    p.add_argument("--eval-steps", default=None, help="comma-separated S to score (default: every S in 1..L-k)")
    p.add_argument("--compare-inits", action="store_true", help="distil from both block inits on --train-limit "
                   "documents (default 500) and write docs/results/depth/ode-init-NAME.json")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--render", action="store_true", help="print the table of every result file")
    p.add_argument("--results", metavar="PAGE", help="with --render: write the results page (docs/results/ode-steps.md)")
    p.add_argument("--unrolled-against-loop", action="store_true", help="time one S-step graph against a block "
                   "graph called S times (MiniLM, k = 3, S = 3, batch 32 x 40)")
    p.add_argument("--tiny-albert", metavar="FOLDER", help="write a random ALBERT (6 virtual layers, one shared "
                   "group, hidden 128) with MiniLM's tokenizer into FOLDER, and stop")
    args = p.parse_args(argv)
    args.eval_steps = [int(x) for x in args.eval_steps.split(",")] if args.eval_steps else None
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.compare_inits:
        result = compare_inits(args.cache, args.labels, args.train_limit or 500, epochs=max(1, args.distill_epochs))
        write_atomic(RESULTS / f"ode-init-{args.name}.json", (json.dumps(result, indent=2) + "\n").encode())
        print(json.dumps({i: {"before": r["before"], "after": r["after"]} for i, r in result["inits"].items()}))
        return 0
    if args.tiny_albert:
        print(tiny_albert_folder(args.tiny_albert))
        return 0
    if args.unrolled_against_loop:
        result = unrolled_against_loop(threads=args.threads, work=args.work)
        RESULTS.mkdir(parents=True, exist_ok=True)
        write_atomic(RESULTS / "ode-unroll.json", (json.dumps(result, indent=2) + "\n").encode())
        print(json.dumps({k: result[k] for k in ("unrolled_ms", "loop_ms", "max_diff")}))
        return 0
    if args.render:
        if args.results:
            from erpack.experiments.page import command_line, write_page
            from erpack.runtime.timing import describe_machine

            write_page(args.results, "ODE steps: accuracy against the number of steps", command_line(),
                       describe_machine(), page_body())
        print(render(), end="")
        return 0
    result = run_steps(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    dst = RESULTS / f"ode-{args.name}.json"
    write_atomic(dst, (json.dumps(result, indent=2) + "\n").encode())
    print(json.dumps(result["half_steps"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
