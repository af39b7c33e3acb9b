"""`erpack bench`: time every inference path end to end (documents to predictions) on the same documents."""

from __future__ import annotations

import json
import shlex
import sys

from erpack.bench.card import card
from erpack.bench.pathnames import PATHS
from erpack.cli import CLIError
from erpack.cli.storage import add_storage_options, cache_where, storage_options


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "bench",
        help="time the full model and the erpack paths end to end, with a breakdown per stage",
        description=(
            "Run the same documents through each inference path in one process and time it end to end, "
            "documents to predictions: the full model in PyTorch and as ONNX int8, and erpack's paths (the "
            "cache read from disk, decompressed, dequantized, padded, the upper stack in PyTorch, ONNX fp32, "
            "ONNX int8, pruned ONNX int8, early-exit ONNX int8) for each cache. Caches for each --codec are encoded into --work the "
            "first time. Passes are interleaved across paths and summarized by medians; the table gives "
            "documents/s, tokens/s, speedup against the full PyTorch model and the full int8 ONNX graph, and against "
            "the full model in the same runtime beside the compute bound L/(L-k) that comparison has, "
            "bytes per token on disk, and accuracy (with --task-model) or agreement with the full model, on the "
            "test split by default (--split). "
            "Docs: docs/benchmarks.md."
        ),
    )
    p.add_argument("corpus", metavar="CORPUS", help="JSONL/CSV corpus or built-in data set (rotten_tomatoes:test, bbc)")
    p.add_argument("--model", default="minilm", help="encoder (built-in name or folder) when no --task-model")
    p.add_argument("--layer", type=int, help="cached layer k (default: the task model's, else L // 2)")
    p.add_argument("--codec", action="append", default=[], metavar="SPEC",
                   help="cache codec to encode and benchmark (repeatable), e.g. int8+zstd:3")
    p.add_argument("--cache", action="append", default=[], metavar="DIR",
                   help="an existing cache (folder or URL) holding the corpus's documents (repeatable)")
    p.add_argument("--task-model", metavar="DIR", help="a trained task model (erpack train): gives accuracy")
    p.add_argument("--pruned-model", metavar="DIR", help="a pruned task model (erpack prune) for erpack-pruned-int8")
    p.add_argument("--exit-model", metavar="DIR", help="a task model trained with --early-exit for erpack-exit-int8 "
                   "(default: --task-model when it has exits)")
    p.add_argument("--ode-model", metavar="DIR", help="a shared-block task model (erpack train --shared-block) for "
                   "erpack-ode-int8: its upper stack run --ode-steps ODE steps, as ONNX int8")
    p.add_argument("--ode-steps", type=int, default=None, metavar="S", help="ODE steps of erpack-ode-int8 (default: "
                   "half of L-k, at least 1)")
    p.add_argument("--prune", metavar="HEADS,FFN",
                   help="prune here (no recovery) with these fractions, e.g. 0.4,0.5, for erpack-pruned-int8")
    p.add_argument("--full-onnx-int8", metavar="FILE",
                   help="a full-model int8 ONNX graph made elsewhere (e.g. optimum) instead of the by-hand export")
    p.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated subset of: {', '.join(PATHS)}")
    p.add_argument("--split", choices=["train", "validation", "test", "all"],
                   help="which documents to score: a built-in data set's split, a JSONL `split` field, or for labelled "
                        "rows without one the split of the id's hash (as erpack train splits them); default: test "
                        "when the corpus has splits, else all")
    p.add_argument("--limit", type=int, default=256, help="first N documents of the split (default 256)")
    p.add_argument("--batch-size", type=int, default=32, help="documents per batch, grouped by length (default 32)")
    p.add_argument("--max-tokens", type=int, default=16384, help="cap on batch size x longest document")
    p.add_argument("--repeats", type=int, default=5, help="timed passes per path (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed passes per path first (default 1)")
    p.add_argument("--cold", action="store_true", help="evict the cache files from the page cache before each pass")
    p.add_argument("--train", type=int, metavar="N",
                   help="also time one training epoch from the cache against full fine-tuning on N training documents")
    p.add_argument("--device", default="cpu",
                   help="cpu (default), cuda or auto: PyTorch paths run there, ONNX sessions ask for CUDA on cuda")
    p.add_argument("--threads", type=int, help="torch and onnxruntime intra-op threads")
    p.add_argument("--work", default="runs/bench", help="folder for caches and graphs (default runs/bench)")
    p.add_argument("--output", "-o", metavar="FILE", help="also write the JSON result to FILE")
    p.add_argument("--json", action="store_true", help="also print the JSON result (about 10 KB) as the last line")
    add_storage_options(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from tqdm import tqdm  # a dependency of transformers, loaded with it

    from erpack.bench.runner import BenchConfig, run_bench

    prune = None
    if args.prune:
        try:
            heads, ffn = (float(x) for x in args.prune.split(","))
        except ValueError:
            raise CLIError(f"--prune takes two fractions HEADS,FFN such as 0.4,0.5, got {args.prune!r}") from None
        prune = (heads, ffn)
    if args.limit is not None and args.limit < 1:
        raise CLIError(f"--limit must be at least 1, got {args.limit}")
    for cache in args.cache:  # a bad URL fails here, naming it, before the models load
        cache_where(cache, args)
    cfg = BenchConfig(corpus=args.corpus, model=args.model, layer=args.layer, codecs=args.codec, caches=args.cache,
                      task_model=args.task_model, pruned_model=args.pruned_model, prune=prune,
                      exit_model=args.exit_model,
                      ode_model=args.ode_model, ode_steps=args.ode_steps,
                      full_onnx_int8=args.full_onnx_int8, paths=[p for p in args.paths.split(",") if p],
                      limit=args.limit, split=args.split, batch_size=args.batch_size, max_tokens=args.max_tokens,
                      repeats=args.repeats, warmup=args.warmup, cold=args.cold, threads=args.threads, work=args.work,
                      train=args.train, device=args.device, storage_options=storage_options(args),
                      command="erpack bench " + " ".join(shlex.quote(a) for a in sys.argv[2:]))
    result = run_bench(cfg, progress=lambda **kw: tqdm(leave=False, disable=None, **kw),
                       log=lambda msg: tqdm.write(msg, file=sys.stderr)).as_dict()
    print("\n".join(card(result)))
    text = json.dumps(result)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")
    if args.json:
        print(text)
    return 0
