"""`erpack prune`: cut a task model's upper stack down for its task, then recover it with LoRA from the cache."""

from __future__ import annotations

import json

from erpack.cli import CLIError
from erpack.cli.storage import add_shard_cache, add_storage_options, cache_where


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "prune",
        help="prune a task model's upper layers (heads, feed-forward neurons, whole layers) and recover with LoRA",
        description=(
            "Score every attention head and feed-forward neuron of layers k..L-1 of TASK_MODEL by |dLoss/dgate| on a "
            "few hundred cached training documents (normalised per layer), remove the least important ones from the "
            "weight matrices (the result is smaller and faster, not masked; a layer that loses every head and most "
            "neurons is dropped), then train LoRA adapters on the pruned layers from CACHE (larger ranks on the most "
            "important layers; optionally distilling the unpruned model's logits) and merge them. The output is a "
            "task model like any other: `erpack eval` and the ONNX export read it. Supported: bert-family "
            "(MiniLM, RoBERTa, ELECTRA) and MPNet. See docs/pruning.md."
        ),
        epilog=(
            "Examples: erpack prune models/rt caches/rt --labels rotten_tomatoes --heads 0.4 --ffn 0.4 -o models/rt-p40\n"
            "          erpack prune models/rt caches/rt --labels rotten_tomatoes --latency-budget 0.6 --distill -o m/rt-fast"
        ),
    )
    p.add_argument("task_model", help="folder written by `erpack train` (or an earlier `erpack prune`)")
    p.add_argument("cache", help="the cache (folder or URL) the task model was trained on (same encoder and layer)")
    p.add_argument("--labels", required=True, help="label source, as for `erpack train`")
    p.add_argument("-o", "--output", required=True, help="folder for the pruned task model")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output folder (atomically; "
                   "without this flag an existing folder is refused)")
    g = p.add_argument_group("target (fractions, or one budget)")
    g.add_argument("--heads", type=float, default=None, help="fraction of the upper stack's attention heads to remove")
    g.add_argument("--ffn", type=float, default=None, help="fraction of the upper stack's feed-forward neurons to remove")
    g.add_argument("--params-budget", type=float, default=None, help="keep at most this fraction of the upper stack's "
                   "parameters (the same fraction of heads and neurons goes; the smallest that fits)")
    g.add_argument("--latency-budget", type=float, default=None, help="run in at most this fraction of the unpruned "
                   "upper stack's latency (batch 32, measured here, interleaved with the unpruned stack)")
    p.add_argument("--drop-ffn", type=float, default=0.5, help="a layer that loses every head is dropped whole when at "
                   "least this fraction of its neurons goes too (default: 0.5); else it keeps its best head")
    p.add_argument("--samples", type=int, default=512, help="training documents to score importance on (default: 512)")
    r = p.add_argument_group("recovery")
    r.add_argument("--epochs", type=int, default=2, help="LoRA recovery epochs; 0 prunes without recovery (default: 2)")
    r.add_argument("--rank", type=int, default=8, help="LoRA rank (alpha = 2r); the most important third of the "
                   "layers get --rank-factor times it (default: 8)")
    r.add_argument("--rank-factor", type=int, default=2, help="rank multiplier on the most important layers (default: 2)")
    r.add_argument("--lora-targets", choices=["all", "attention"], default="all", help="LoRA on every linear of the "
                   "upper layers, or on q/k/v only (default: all)")
    r.add_argument("--lr", type=float, default=1e-3, help="recovery learning rate (default: 1e-3)")
    r.add_argument("--distill", action="store_true", help="train towards a mix of the label and the unpruned model's "
                   "softened logits")
    r.add_argument("--alpha", type=float, default=0.5, help="weight of the teacher in the distillation target (default: 0.5)")
    r.add_argument("--temperature", type=float, default=2.0, help="distillation temperature (default: 2)")
    p.add_argument("--batch-size", type=int, default=32, help="documents per training batch (default: 32)")
    p.add_argument("--seed", type=int, default=0, help="seed of the importance sample, LoRA init and shuffle (default: 0)")
    p.add_argument("--train-limit", type=int, default=None, metavar="N", help="use N training documents only: the N "
                   "with the smallest sha256 of SEED:id (--seed), kept in their order, as erpack train does")
    p.add_argument("--skip-missing", action="store_true", help="use the labelled documents the cache holds")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (default)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON document on the last line")
    add_storage_options(p)
    add_shard_cache(p)
    p.set_defaults(run=run)


def target_from_args(args):
    from erpack.prune import Fractions, LatencyBudget, ParamsBudget

    fractions = args.heads is not None or args.ffn is not None
    budgets = [b for b in (args.params_budget, args.latency_budget) if b is not None]
    if fractions + len(budgets) != 1:
        raise CLIError("give one target: --heads/--ffn fractions, or --params-budget, or --latency-budget")
    if fractions:
        return Fractions(args.heads or 0.0, args.ffn or 0.0)
    if args.params_budget is not None:
        return ParamsBudget(args.params_budget)
    return LatencyBudget(args.latency_budget)


def run(args) -> int:
    import transformers
    from tqdm import tqdm

    from erpack.prune import RecoveryConfig, prune_task_model
    from erpack.train import TrainConfig
    transformers.logging.set_verbosity_error()
    target = target_from_args(args)
    recovery = RecoveryConfig(rank=args.rank, important_factor=args.rank_factor, targets=args.lora_targets,
                              epochs=args.epochs, lr=args.lr, distill=args.distill, alpha=args.alpha,
                              temperature=args.temperature)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                      train_limit=args.train_limit, device=args.device)
    _, s = prune_task_model(args.task_model, cache_where(args.cache, args), args.labels, target, output=args.output,
                            recovery=recovery if args.epochs > 0 else None, samples=args.samples,
                            drop_ffn=args.drop_ffn, train_cfg=cfg, skip_missing=args.skip_missing,
                            progress=lambda **kw: tqdm(leave=False, **kw), overwrite=args.overwrite,
                            shard_cache=args.shard_cache)
    _print_summary(s, args)
    if args.json:
        print(json.dumps(s.as_dict()))
    return 0


def _print_summary(s, args) -> None:
    """The human card of a PruneSummary: what was kept, parameters, the target, recovery, test scores."""
    from erpack.train.metrics import primary_metric

    plan = s.plan.counts()
    print(f"pruned     {args.task_model} (layers {s.layer}.. of the upper stack): heads {plan['heads_kept']}/"
          f"{plan['heads_total']} kept, neurons {plan['neurons_kept']}/{plan['neurons_total']} kept"
          + (f", layers dropped {plan['layers_dropped']}" if plan["layers_dropped"] else ""))
    print(f"parameters {s.params_before / 1e6:.2f}M -> {s.params_after / 1e6:.2f}M in the upper stack "
          f"(x{s.params_after / s.params_before:.2f})")
    if s.target.get("fraction_chosen") is not None:
        print(f"target     {s.target['kind']} {s.target['budget']:g}: fraction {s.target['fraction_chosen']:.2f}"
              + (f", measured latency x{s.target['measured_ratio']:.2f}" if "measured_ratio" in s.target else ""))
    if s.recovery:
        r = s.recovery
        print(f"recovery   LoRA r={args.rank} (x{args.rank_factor} on the most important layers), "
              f"{len(r.epochs)} epoch(s), {r.train_seconds_per_epoch:.1f} s/epoch, trainable "
              f"{r.trainable_params / 1e6:.2f}M" + (", distilled" if args.distill else ""))
    if s.test:
        metric = primary_metric(s.task)
        unpruned = s.test_unpruned
        print(f"test       {metric} {s.test[metric]:.4f}"
              + (f" (unpruned {unpruned[metric]:.4f}, {s.test[metric] - unpruned[metric]:+.4f})" if unpruned else ""))
    print(f"saved      {s.output} ({s.seconds:.0f} s in all)")
