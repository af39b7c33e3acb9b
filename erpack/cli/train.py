"""`erpack train`: train a task model from a cache (and, with --baseline, the full fine-tune beside it)."""

from __future__ import annotations

import json

from erpack.cli.storage import add_shard_cache, add_storage_options, cache_where
from erpack.errors import InputError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a task model from a cache of layer-k hidden states (upper layers, adapters or head)",
        description=(
            "Train a classifier or regressor that starts from the layer-k hidden states in CACHE: the encoder "
            "the cache was made with (found by the name it recorded, checked by its weights sha256) gets a "
            "sequence-classification head (a token task: a token-classification head, a label per word), is cut at "
            "the cache's layer, and only layers k..L-1 run, on batches "
            "of decoded records (grouped by length, padded per batch, read and decoded in a background thread). "
            "Each epoch ends with an evaluation on the validation split; the best epoch's weights are kept and "
            "training stops after --patience epochs without improvement. The test split is scored at the end. "
            "Modes: `upper` fine-tunes layers k..L-1 and the head; `adapter` freezes them and trains PEFT "
            "adapters (LoRA or (IA)^3) in layers k..L-1 only, plus the head; `head` trains the head alone on the "
            "frozen model's last hidden state. The head is the classifier with whatever pools for it (BERT's "
            "pooler included), trained in every mode. The result is a folder that `erpack eval` and `TaskModel.load` read "
            "(docs/training.md)."
        ),
        epilog="Examples: erpack train caches/rt --labels rotten_tomatoes --mode adapter -o models/rt-lora --baseline; "
               "erpack encode bbc-truecase -o caches/tc --layer 3 && erpack train caches/tc --labels "
               "bbc-truecase --task token-classification -o models/tc",
    )
    _add_input_options(p)
    _add_mode_options(p)
    _add_init_options(p)
    _add_output_options(p)
    _add_training_options(p)
    _add_exit_options(p)
    _add_shared_block_options(p)
    _add_run_options(p)
    add_storage_options(p)
    add_shard_cache(p)
    p.set_defaults(run=run)


def _add_input_options(p) -> None:
    """The cache, the labels and the task."""
    p.add_argument("cache", help="cache folder or URL (s3://bucket/prefix, ...) written by `erpack encode`")
    p.add_argument("--labels", required=True, help="label source: a built-in data set (rotten_tomatoes, bbc: labels "
                   "and splits included), or a .jsonl/.csv file with `id` and `label` per document (optional: `split` "
                   "= train/validation/test, else a hash of the id decides; `text`/`text_pair`, needed by --baseline). "
                   "Every labelled id must be in the cache (see --skip-missing). --task token-classification: bbc-truecase, "
                   "bbc-punctuation (built-in, their texts encode as `erpack encode bbc-truecase`), or a .jsonl with "
                   "`id`, `words` (the cached text split at whitespace) and `labels` (one per word)")
    p.add_argument("--task", choices=["classification", "pair-classification", "regression", "token-classification"],
                   default=None,
                   help="classification (cross-entropy, accuracy), pair-classification (the same on text pairs), "
                   "regression (one output, MSE, Pearson), token-classification (a label per word of the text: "
                   "--labels bbc-truecase, bbc-punctuation or a .jsonl with `id`, `words`, `labels`; per-word "
                   "micro-F1); default: classification, or with --init the task model's task")
    p.add_argument("--subwords", choices=["first", "all"], default="first",
                   help="token-classification: which subword tokens of a word carry its label in the loss: first "
                   "(the word's first token; prediction: its argmax) or all (every token; prediction: the mean of "
                   "the word's token logits); default: first")


def _add_mode_options(p) -> None:
    """What trains: the mode and, for --mode adapter, the adapter."""
    p.add_argument("--mode", choices=["upper", "adapter", "head"], default="upper",
                   help="what trains: upper (layers k..L-1 + head), adapter (PEFT adapters in layers k..L-1 + head), "
                   "head (the head alone); default: upper")
    p.add_argument("--adapter", choices=["lora", "ia3"], default="lora", help="adapter kind for --mode adapter "
                   "(default: lora, r=16, alpha=32 on every linear of layers k..L-1)")
    p.add_argument("--rank", type=int, default=16, help="LoRA rank r (default: 16)")
    p.add_argument("--alpha", type=int, default=None, help="LoRA alpha (default: 2 x --rank). The update's scale "
                   "grows with the rank at a fixed alpha/r: a larger --rank at the same --lr may need --alpha 32")
    p.add_argument("--dora", action="store_true", help="--adapter lora: DoRA (weight-decomposed LoRA: each output's "
                   "magnitude trains beside the low-rank direction update; on the CPU about 1.7x the time of a LoRA epoch)")
    p.add_argument("--adapter-norms", action="store_true", help="--mode adapter: also train the LayerNorms of "
                   "layers k..L-1 (4 x hidden values a layer), which the adapters leave frozen")


def _add_init_options(p) -> None:
    """Start from an existing task model (a pruned one included) instead of a fresh head."""
    p.add_argument("--init", default=None, metavar="TASK_MODEL",
                   help="start from this task model (trained from the same cache; a model `erpack prune` made keeps "
                   "its pruned shapes) instead of a fresh head on the encoder, e.g. to train exits on a pruned model: "
                   "--init models/rt-p60 --early-exit dact --mode head (head mode with --early-exit: the model's "
                   "weights stay frozen and only the exits train; --mode upper: its upper layers and head train "
                   "too). Without --early-exit it continues training the model. The labels are the model's; not "
                   "with --baseline, --shared-block or --mode adapter, nor a model that has exits already")


def _add_output_options(p) -> None:
    """Where the task model goes, and the baseline saved beside it."""
    p.add_argument("-o", "--output", required=True, help="folder for the task model (config.json, model.safetensors, "
                   "erpack_task.json with the sha256 of the other files); written whole or not at all")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output folder (atomically: "
                   "until the new model is complete the old one stays; without this flag an existing folder is refused)")
    p.add_argument("--baseline", action="store_true", help="also fine-tune the whole model from the texts (same "
                   "documents tokenized with the cache's max_length, same head, batches, seeds and epochs), report "
                   "both, and save it as OUTPUT/baseline (a task model computing from text, which `erpack eval` "
                   "scores on the texts of --labels and `erpack export` writes whole); needs texts in --labels")


def _add_training_options(p) -> None:
    """Epochs, batches, learning rates, early stopping, seed and the training subset."""
    p.add_argument("--epochs", type=int, default=3, help="most epochs (default: 3)")
    p.add_argument("--batch-size", type=int, default=32, help="documents per batch (default: 32)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: 1e-4 upper, 1e-3 adapter and "
                   "head); linear warm-up over 10%% of the steps, then linear decay")
    p.add_argument("--baseline-lr", type=float, default=None, help="learning rate of the baseline (default: --lr in "
                   "upper mode, else 1e-4)")
    p.add_argument("--patience", type=int, default=2, help="stop after this many epochs without a better validation "
                   "score (default: 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the head's init, dropout and the shuffle order (default: 0)")
    p.add_argument("--train-limit", type=int, default=None, metavar="N", help="train on N training documents only: "
                   "the N with the smallest sha256 of SEED:id (--seed), kept in their order; a sample that does not "
                   "depend on the corpus order (BBC's is by class)")


def _add_exit_options(p) -> None:
    """Early exit: the rule, its accuracy budget, DACT's ponder penalty (docs/depth.md)."""
    p.add_argument("--early-exit", choices=["dact", "patience", "entropy"], default=None,
                   help="also train an exit after each upper layer (a pooled classifier, or regressor for --task "
                   "regression; the last is the task head) and stop each document at the first layer where the rule "
                   "says its answer is settled: dact (a halting unit per layer; stop when the runner-up of the "
                   "halting-weighted prediction can no longer overtake the top class; regression: when the "
                   "accumulated halting probability reaches 1 - threshold, ACT's rule), patience (PABEE: the same "
                   "answer at --exit-threshold layers in a row), entropy (DeeBERT: the exit's entropy below a "
                   "threshold). Regression takes dact only; saved as exits.safetensors in the task model folder, "
                   "used by eval, export and predict")
    p.add_argument("--exit-budget", type=float, default=0.5, help="--early-exit: what the exits may cost on the "
                   "validation split against the task head, the last exit (what the same model answers without "
                   "exits, --no-early-exit), in accuracy points (regression: Pearson r points x 100, so 0.5 allows r "
                   "0.005 lower); the most aggressive threshold within it is saved. DACT answers with a mixture of "
                   "the exits that may score below the head: when no threshold is within the budget, the most "
                   "accurate one is saved and train says so (default: 0.5)")
    p.add_argument("--ponder", type=float, default=None, help="--early-exit dact: weight of the ponder penalty, the "
                   "expected share of upper layers run, in the loss (default: 0.05); larger stops earlier")
    p.add_argument("--exit-threshold", type=float, default=None, help="--early-exit: use this threshold instead of "
                   "choosing one on validation (dact 0..1, patience 1..L-k layers, entropy 0..ln C nats; regression "
                   "dact 0..1, the halting mass a document may leave unspent: 0 runs every layer)")
    p.add_argument("--exit-lr", type=float, default=None, metavar="LR", help="--early-exit: peak learning rate of the "
                   "exits and DACT's halting units, an optimizer group of their own beside the model's --lr (same "
                   "warm-up and decay); they start untrained while the upper layers are pretrained, and at upper "
                   "mode's 1e-4 DACT's halting units barely leave 0.5 (docs/results/early-exit-lr.md). Default: "
                   "the run's --lr, at least 1e-3 (head mode's default: so 1e-3 in upper mode at its default lr, "
                   "the run's lr in adapter and head mode); recorded in the task model's early_exit record")


def _add_shared_block_options(p) -> None:
    """One block shared by the upper layers, run as ODE steps (erpack.depth, docs/depth.md)."""
    p.add_argument("--shared-block", action="store_true", help="replace layers k..L-1 by one shared block, distilled "
                   "from them on the cached training documents (--distill-epochs), then tuned with the head; step "
                   "sizes are set on validation for every step count 1..L-k, so `erpack eval/predict --steps S` "
                   "runs the stack in S block evaluations. ALBERT (already shared) skips the distillation. Mode upper")
    p.add_argument("--distill-epochs", type=int, default=2, help="--shared-block: epochs of distillation before the "
                   "task fine-tuning (default: 2; 0: none)")
    p.add_argument("--block-init", choices=["mean", "layer"], default="mean", help="--shared-block: the block starts "
                   "as the mean of layers k..L-1's weights (default) or as layer k")
    p.add_argument("--random-steps", action="store_true", help="--shared-block: fine-tune each batch at a random "
                   "number of steps S (1..L-k, drawn with --seed) of size (L-k)/S instead of always L-k unit steps, "
                   "so the block learns the larger steps that `erpack eval/predict --steps S` runs below L-k; the "
                   "draws are recorded in erpack_task.json's \"ode\" record. A batch runs (L-k+1)/2 block "
                   "evaluations on average instead of L-k; distillation still runs L-k unit steps (see "
                   "--random-distill)")
    p.add_argument("--random-distill", action="store_true", help="--random-steps: draw S per batch in the "
                   "distillation too; the states of the S steps that land on a teacher layer ((i+1)(L-k)/S whole) "
                   "are compared with the teacher's, the final state always (at S = 1 only the final state). "
                   "Recorded as the block's \"distill_random_steps\"; ALBERT, not distilled, ignores it")


def _add_run_options(p) -> None:
    """Missing documents, where the encoder is, the device and the JSON summary."""
    p.add_argument("--skip-missing", action="store_true", help="train on the labelled documents the cache holds, "
                   "instead of stopping at the first labelled id it lacks")
    p.add_argument("--model", default=None, help="where to load the encoder from when the name the cache recorded "
                   "is not found here (its weights must match the cache's sha256)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (CUDA when present; default)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON document on the last line")


def _line(name: str, r, metric: str) -> str:
    """One run (a RunResult) in a line: test and validation score, epochs, time, trainable share, lr."""
    test = r.test or {}
    val = r.best_validation or {}
    return (f"{name:<9} {metric} test {test.get(metric, float('nan')):.4f}  validation {val.get(metric, float('nan')):.4f}"
            f" (epoch {r.best_epoch}/{len(r.epochs)}{', stopped early' if r.stopped_early else ''})  "
            f"{r.train_seconds_per_epoch:.1f} s/epoch  trainable {r.trainable_params / 1e6:.2f}M of "
            f"{r.total_params / 1e6:.2f}M  lr {r.lr:g}")


def _print_summary(s, mode: str, metric: str) -> None:
    """The human card of a TrainSummary: the cache, the documents, each run, the comparison, where it went."""
    from erpack.train.metrics import token_metric_lines

    docs = s.documents
    print(f"cache      {s.cache}: {s.model} layer {s.layer}, codec {s.codec}")
    print(f"documents  train {docs.get('train', 0)}, validation {docs.get('validation', 0)}, test {docs.get('test', 0)}"
          + (f" ({s.skipped_missing} labelled ids not in the cache, skipped)" if s.skipped_missing else ""))
    r = s.recycled
    wait = sum(e["wait_seconds"] for e in r.epochs)
    print(_line(mode, r, metric) + f"  waited on the cache {wait:.1f} s")
    if s.task == "token-classification" and r.test:
        print("\n".join("           " + line for line in token_metric_lines(r.test)))
    if s.baseline:
        print(_line("baseline", s.baseline, metric))
        c = s.comparison
        delta = c.test_delta_points
        print(f"recycled - baseline: {delta:+.2f} points of test {metric}; epoch time x{c.epoch_time_ratio:.2f}"
              if delta is not None else f"epoch time x{c.epoch_time_ratio:.2f} of the baseline's")
    exit_note = r.notes.get("early_exit")
    if exit_note:
        val, test = exit_note.get("validation") or {}, r.test or {}
        key = val.get("metric", "accuracy")  # regression: pearson
        mixed = (f", the mixture {val[key + '_mixture']:.4f}" if val.get(key + "_mixture") is not None else "")
        every = exit_note.get("test_all_layers")
        print(f"early exit {exit_note['rule']} threshold {exit_note['threshold']:g}, exits' lr {exit_note['lr']:g}"
              + (f" (validation {key}: {val[key]:.4f} against the head's {val[key + '_all_layers']:.4f}{mixed}, "
                 f"{val['mean_layers']:.2f} of {val['layers']} layers)" if val else "")
              + (f"; test {test.get('mean_layers', float('nan')):.2f} layers a document, every layer (the head) "
                 f"{every[metric]:.4f}" if every else ""))
        if exit_note.get("note"):
            print(f"note: {exit_note['note']}")
    for note in s.cleaned or []:
        print(f"note: {note}")
    print(f"saved      {s.output} ({s.seconds:.0f} s in all)"
          + (f"; baseline in {s.baseline_output}" if s.baseline_output else ""))


def run(args) -> int:
    import transformers
    from tqdm import tqdm

    from erpack.train import AdapterSpec, TrainConfig
    from erpack.train.metrics import primary_metric
    from erpack.train.trainer import train_from_cache

    transformers.logging.set_verbosity_error()  # the new head's "newly initialised" report is expected
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, baseline_lr=args.baseline_lr,
                      patience=args.patience, seed=args.seed, train_limit=args.train_limit, device=args.device)
    early_exit = _exit_spec(args)
    adapter = (AdapterSpec(args.adapter, r=args.rank, alpha=args.alpha, norms=args.adapter_norms, dora=args.dora)
               if args.mode == "adapter" else None)
    shared = None
    if (args.random_steps or args.random_distill) and not args.shared_block:
        flag = "--random-steps" if args.random_steps else "--random-distill"
        raise InputError(f"{flag} trains a shared block at random step counts; add --shared-block (the "
                         "layers of a plain task model differ, so they cannot be run as fewer steps)")
    if args.shared_block:
        from erpack.depth.distill import ShareSpec

        shared = ShareSpec(distill_epochs=args.distill_epochs, init=args.block_init, random_steps=args.random_steps,
                           random_distill=args.random_distill)
    s = train_from_cache(cache_where(args.cache, args), args.labels, task=args.task, mode=args.mode, adapter=adapter, output=args.output,
                         config=cfg, baseline=args.baseline, model_override=args.model, skip_missing=args.skip_missing,
                         progress=lambda **kw: tqdm(leave=False, **kw), overwrite=args.overwrite,
                         shard_cache=args.shard_cache, subwords=args.subwords, early_exit=early_exit,
                         shared_block=shared, init=args.init)
    _print_summary(s, args.mode, primary_metric(s.task))
    if args.json:
        print(json.dumps(s.as_dict()))
    return 0


def _exit_spec(args):
    """The ExitSpec the flags ask for (None without --early-exit; exit-option flags without it are refused)."""
    if args.early_exit is None:
        given = [f for f, v in (("--ponder", args.ponder), ("--exit-threshold", args.exit_threshold),
                                ("--exit-lr", args.exit_lr)) if v is not None]
        if given:
            raise InputError(f"{' and '.join(given)} set the early exit; add --early-exit dact|patience|entropy")
        return None
    from erpack.depth.training import ExitSpec

    return ExitSpec(args.early_exit, budget=args.exit_budget, ponder=args.ponder, threshold=args.exit_threshold,
                    lr=args.exit_lr)
