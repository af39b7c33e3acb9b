"""`erpack eval`: score a saved task model on one split of a cache, and write its predictions."""

from __future__ import annotations

import json

from erpack.cli.storage import add_shard_cache, add_storage_options, cache_where


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="score a task model (from `erpack train`) on a split of a cache: accuracy/macro-F1 or Pearson/MSE",
        description=(
            "Run a saved task model over the documents of one split of CACHE and score it: accuracy and macro-F1 "
            "for classification, Pearson correlation and mean squared error for regression. The cache must come "
            "from the encoder and layer the task model was trained on (else the command stops and says how to "
            "encode one); a different codec or max_length is allowed and reported."
        ),
        epilog="Example: erpack eval models/rt-lora caches/rt --labels rotten_tomatoes --split test --predictions p.jsonl",
    )
    p.add_argument("task_model", help="folder written by `erpack train`")
    p.add_argument("cache", help="cache folder or URL (s3://bucket/prefix, ...) written by `erpack encode`")
    p.add_argument("--labels", required=True, help="label source, as for `erpack train` (built-in data set, or "
                   ".jsonl/.csv with `id`, `label`, optional `split`)")
    p.add_argument("--split", choices=["train", "validation", "test"], default="test", help="split to score (default: test)")
    p.add_argument("--predictions", default=None, help="write one JSON line per document: id, label, predicted, "
                   "probabilities (classification) or id, label, score (regression)")
    p.add_argument("--skip-missing", action="store_true", help="score the labelled documents the cache holds instead "
                   "of stopping at the first it lacks")
    p.add_argument("--batch-size", type=int, default=64, help="documents per batch (default: 64)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (CUDA when present; default)")
    p.add_argument("--steps", type=int, default=None, help="a task model with a shared upper block (`erpack train "
                   "--shared-block`, or ALBERT): run it in S ODE steps of the size set on validation (default: L-k, "
                   "as trained; fewer steps, fewer block evaluations: --json reports them as mean_layers)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON document on the last line")
    add_storage_options(p)
    add_shard_cache(p)
    p.set_defaults(run=run)


def run(args) -> int:
    import transformers
    from tqdm import tqdm

    from erpack.train.evaluation import evaluate

    transformers.logging.set_verbosity_error()
    r = evaluate(args.task_model, cache_where(args.cache, args), args.labels, split=args.split, predictions=args.predictions,
                 skip_missing=args.skip_missing, batch_size=args.batch_size, device=args.device,
                 progress=lambda **kw: tqdm(leave=False, **kw), shard_cache=args.shard_cache, steps=args.steps)
    m = r.metrics
    print(f"{args.task_model} ({r.task}, {r.mode}) on {args.cache} {args.split}: {r.documents} documents"
          + (f" ({r.skipped_missing} not in the cache, skipped)" if r.skipped_missing else ""))
    if r.task == "regression":
        print(f"pearson {m['pearson']:.4f}  mse {m['mse']:.4f}")
    else:
        print(f"accuracy {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}")
    if r.steps is not None:
        print(f"steps {r.steps} (block evaluations per document; mean_layers {r.mean_layers:g})")
    for note in r.notes:
        print(f"note: {note}")
    if r.predictions:
        print(f"predictions {r.predictions}")
    if args.json:
        print(json.dumps(r.as_dict()))
    return 0
