"""`erpack demo`: the main job on the built-in real model and data."""

from __future__ import annotations

import json


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="split the real MiniLM at its middle layer over real reviews: parity and per-layer time",
        description=(
            "Load the built-in all-MiniLM-L6-v2 (installed offline by tools/setup.sh), split it at layer k, "
            "run real Rotten Tomatoes reviews through lower then upper, and check the result equals the "
            "full model on every non-padding token. Times the lower stack, the upper stack and the full "
            "model (median of repeats, length-grouped batches) and prints the time per layer next to the "
            "compute bound L/(L-k) of recycling."
        ),
    )
    p.add_argument("--model", default="minilm",
                   help="built-in name (minilm, mpnet), a local model folder, or a hub id (default: minilm)")
    p.add_argument("--dataset", default="rotten_tomatoes",
                   help="built-in data set: rotten_tomatoes (short reviews) or bbc (long articles)")
    p.add_argument("--layer", type=int, default=None,
                   help="split layer k, 0..L (default: the middle, L // 2)")
    p.add_argument("--documents", type=int, default=256,
                   help="how many validation documents to run (default: 256)")
    p.add_argument("--batch-size", type=int, default=32, help="documents per batch (default: 32)")
    p.add_argument("--max-length", type=int, default=128, help="truncate documents to this many tokens (default: 128)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per batch; the median counts (default: 3)")
    p.add_argument("--json", action="store_true", help="print one JSON document as the last line")
    p.set_defaults(run=run)


def run(args) -> int:
    from tqdm import tqdm

    from erpack.demo import run_demo

    r = run_demo(model=args.model, dataset=args.dataset, layer=args.layer, documents=args.documents,
                 batch_size=args.batch_size, max_length=args.max_length, repeats=args.repeats,
                 progress=lambda it, desc: tqdm(it, desc=desc, unit="batch", leave=False))
    L, k, ms = r["num_layers"], r["layer"], r["ms_per_layer"]
    print(f"model        {r['model']} ({L} layers), weights sha256 {r['weights_sha256'][:16]}...")
    print(f"data         {r['dataset']} validation: {r['documents']} documents, {r['tokens']} tokens, "
          f"{r['batches']} batches")
    print(f"split        layer k={k}: lower = embeddings + layers 0..{k - 1}, upper = layers {k}..{L - 1}")
    ok = r["parity_max_abs_diff"] <= 1e-5
    print(f"parity       max |upper(lower(x)) - model(x)| = {r['parity_max_abs_diff']:.2e} on real tokens "
          f"({'OK' if ok else 'FAIL'}, tolerance 1e-5)")
    print(f"time         lower {r['seconds']['lower']:.3f} s, upper {r['seconds']['upper']:.3f} s, "
          f"full {r['seconds']['full']:.3f} s (median of {args.repeats} per batch)")
    print(f"per layer    lower {ms['lower']:.1f} ms, upper {ms['upper']:.1f} ms, full {ms['full']:.1f} ms")
    if r["compute_bound"]:
        print(f"upper vs full {r['speedup_upper_vs_full']:.2f}x faster (compute bound L/(L-k) = "
              f"{r['compute_bound']:.2f}x; no cache read yet: see `erpack encode`)")
    if args.json:
        print(json.dumps(r))
    return 0 if ok else 1
