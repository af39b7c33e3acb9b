"""`erpack eval`: score a saved task model on one split of a cache, and write its predictions."""

from __future__ import annotations

import json

from erpack.cli.storage import add_shard_cache, add_storage_options, cache_where


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="score a task model (from `erpack train`) on a split of a cache: accuracy/macro-F1, Pearson/MSE, or "
        "per-word F1 (token tasks)",
        description=(
            "Run a saved task model over the documents of one split of CACHE and score it: accuracy and macro-F1 "
            "for classification, Pearson correlation and mean squared error for regression; for a token task, "
            "per word: precision, recall and F1 per label, micro-F1 over the labels but O, macro-F1 and word "
            "accuracy. The cache must come "
            "from the encoder and layer the task model was trained on (else the command stops and says how to "
            "encode one); a different codec or max_length is allowed and reported."
        ),
        epilog="Example: erpack eval models/rt-lora caches/rt --labels rotten_tomatoes --split test --predictions p.jsonl",
    )
    p.add_argument("task_model", help="folder written by `erpack train`")
    p.add_argument("cache", help="cache folder or URL (s3://bucket/prefix, ...) written by `erpack encode`")
    p.add_argument("--labels", required=True, help="label source, as for `erpack train` (built-in data set, or "
                   ".jsonl/.csv with `id`, `label`, optional `split`; a token task: bbc-truecase, bbc-punctuation or "
                   ".jsonl with `id`, `words`, `labels`)")
    p.add_argument("--split", choices=["train", "validation", "test"], default="test", help="split to score (default: test)")
    p.add_argument("--predictions", default=None, help="write one JSON line per document: id, label, predicted, "
                   "probabilities (classification), id, label, score (regression), or id, words, labels, predicted "
                   "(a label per word: token tasks); and layers, the upper layers it ran")
    p.add_argument("--skip-missing", action="store_true", help="score the labelled documents the cache holds instead "
                   "of stopping at the first it lacks")
    p.add_argument("--batch-size", type=int, default=64, help="documents per batch (default: 64)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (CUDA when present; default)")
    p.add_argument("--no-early-exit", action="store_true", help="a task model with exits (train --early-exit): run "
                   "every upper layer for every document, to compare with the exits (mean_layers is then L-k)")
    p.add_argument("--exit-threshold", type=float, default=None, help="a task model with exits: stop documents with "
                   "this threshold instead of the one chosen on validation (dact 0..1, patience 1..L-k, entropy "
                   "0..ln C; a regression model's dact 0..1 is the halting mass a document may leave unspent: 0 runs "
                   "every layer's mixture, 1 stops after the first)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON document on the last line "
                   "(metrics; mean_layers: upper layers run per document, mean_layers_fraction: of L-k)")
    p.add_argument("--steps", type=int, default=None, help="a task model with a shared upper block (`erpack train "
                   "--shared-block`, or ALBERT): run it in S ODE steps of the size set on validation (default: L-k, "
                   "as trained; fewer steps, fewer block evaluations: --json reports them as mean_layers)")
    add_storage_options(p)
    add_shard_cache(p)
    p.set_defaults(run=run)


def run(args) -> int:
    import transformers
    from tqdm import tqdm

    from erpack.train.evaluation import evaluate
    from erpack.train.metrics import token_metric_lines

    transformers.logging.set_verbosity_error()
    r = evaluate(args.task_model, cache_where(args.cache, args), args.labels, split=args.split, predictions=args.predictions,
                 skip_missing=args.skip_missing, batch_size=args.batch_size, device=args.device,
                 progress=lambda **kw: tqdm(leave=False, **kw), shard_cache=args.shard_cache,
                 early_exit=not args.no_early_exit, exit_threshold=args.exit_threshold, steps=args.steps)
    m = r.metrics
    print(f"{args.task_model} ({r.task}, {r.mode}) on {args.cache} {args.split}: {r.documents} documents"
          + (f" ({r.skipped_missing} not in the cache, skipped)" if r.skipped_missing else ""))
    if r.task == "regression":
        print(f"pearson {m['pearson']:.4f}  mse {m['mse']:.4f}")
    elif r.task == "token-classification":
        print("\n".join(token_metric_lines(m)))
    else:
        print(f"accuracy {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}")
    if r.early_exit:
        print(f"early exit {r.early_exit['rule']} threshold {r.early_exit['threshold']:g}: {r.mean_layers:.2f} upper "
              f"layers a document ({100 * r.mean_layers_fraction:.0f}% of {round(r.mean_layers / r.mean_layers_fraction)})")
    if r.steps is not None:
        print(f"steps {r.steps} (block evaluations per document; mean_layers {r.mean_layers:g})")
    for note in r.notes:
        print(f"note: {note}")
    if r.predictions:
        print(f"predictions {r.predictions}")
    if args.json:
        print(json.dumps(r.as_dict()))
    return 0
