"""`erpack compress`: measure codec pipelines on activations, and re-encode a cache with them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from erpack.calibrate import DEFAULT_FIT_DOCS, fit_pipeline, sample_ids
from erpack.cli import CLIError
from erpack.cli.storage import add_storage_options, cache_where, output_where
from erpack.codecs import Pipeline
from erpack.compress import CodecMeasurement, load_source, measure, recode_cache, spec_slug
from erpack.store.location import is_remote

COLUMNS = [  # (header, key, format)
    ("spec", "spec", "{}"),
    ("bits/value", "bits_per_value", "{:.3f}"),
    ("+state", "bits_per_value_with_state", "{:.3f}"),
    ("x fp32", "ratio_vs_fp32", "{:.2f}"),
    ("SQNR dB", "sqnr_db", "{:.2f}"),
    ("token cos", "mean_token_cosine", "{:.5f}"),
    ("enc MB/s", "encode_MBps", "{:.0f}"),
    ("dec MB/s", "decode_MBps", "{:.0f}"),
    ("batch dec MB/s", "batch_decode_MBps", "{:.0f}"),
]


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "compress",
        help="measure codec pipelines (size, SQNR, speed) on activations; optionally re-encode a cache",
        description=(
            "Encode and decode every document of SOURCE with each --codec pipeline and print a table: bits "
            "per stored value (every byte counted: headers, scales), compression against fp32, SQNR in dB "
            "over the whole set, mean token cosine, and encode / decode MB of fp32 per second on one thread "
            "(CPU time of that thread, best of --repeat passes; decode record by record, and batch decode "
            "into padded length-grouped batches of 32 as training and prediction read). SOURCE is a cache folder, or raw activations: a .npy float array "
            "(tokens, hidden) with a .npy of document offsets (--offsets, or NAME.offsets.npy beside it), or "
            "a .safetensors file with tensors 'activations' and 'offsets'. With --out, write each pipeline's "
            "re-encoded cache (cache SOURCE only). For a cache SOURCE the reference is what the cache holds, "
            "already decoded by its own codec (measure on an fp32 cache or raw activations to compare against "
            "the model's output). Every document is held in memory: use --limit on large sources. "
            "A codec with fitted state (e.g. tc) is first fitted on a sample of SOURCE: --fit-docs documents "
            "(all when fewer) chosen by a hash of their id and --seed, each with its token ids (a cache written "
            "by `erpack encode` stores them; raw activations have none). The table then measures it on every "
            "document, the sample included: 'bits/value' counts the records, '+state' adds the fitted state "
            "shared by the measured values (the same state amortized over a larger cache costs less); with "
            "--out the new cache holds that state beside its shards. Codecs and spec grammar: `erpack codecs`."
        ),
        epilog="Examples: erpack compress caches/rt --codec int4z --codec int8z   |   "
               "erpack compress caches/rt --codec tc:snr=19 --fit-docs 2000 --out caches/rt-tc19",
    )
    p.add_argument("source", metavar="SOURCE", help="cache folder or URL, or .npy / .safetensors raw activations")
    p.add_argument("--codec", action="append", required=True, metavar="SPEC",
                   help="pipeline spec, e.g. int8c+zstd:3 or a preset (int8z); repeat to compare several")
    p.add_argument("--offsets", metavar="FILE", help="document offsets .npy for a .npy SOURCE (N_docs + 1 ints)")
    p.add_argument("--limit", type=int, metavar="N", help="use only the first N documents")
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="time N passes and report the fastest (default: 1); sizes and SQNR come from the first")
    p.add_argument("--out", metavar="DIR",
                   help="write the re-encoded cache to DIR (a folder or URL; one --codec), or DIR/<spec> for each of several")
    p.add_argument("--fit-docs", type=int, default=DEFAULT_FIT_DOCS, metavar="N",
                   help=f"a fitted codec is fitted on N documents of SOURCE (all when fewer; default: {DEFAULT_FIT_DOCS}); "
                   "codecs that fit nothing ignore it")
    p.add_argument("--seed", type=int, default=0,
                   help="chooses the fit sample (a hash of seed and document id) and seeds the fit (default: 0): "
                   "the same SOURCE, N and seed give the same fitted state")
    p.add_argument("--json", action="store_true", help="also print the table as one JSON document on the last line "
                   "(each row: bits_per_value without the fitted state, bits_per_value_with_state, state_bytes)")
    add_storage_options(p)
    p.set_defaults(run=run)


def table(rows: list[CodecMeasurement]) -> list[str]:
    cells = [[h for h, _, _ in COLUMNS]]
    for r in rows:
        cells.append([("exact" if getattr(r, k) is None else f.format(getattr(r, k))) for _, k, f in COLUMNS])
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    return ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in cells]


def progress_bar(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="doc", file=sys.stderr, leave=False, disable=None)


def _subfolder(out, name: str):
    return out.child(name) if is_remote(out) else Path(out) / name


def fit(pipe: Pipeline, records: list, tokens: dict, meta: dict | None, args) -> Pipeline:
    """`pipe` fitted on --fit-docs of the loaded records (chosen by sample_ids with --seed); said on a line."""
    if not pipe.fitted:
        return pipe
    chosen = set(sample_ids([d for d, _ in records], args.fit_docs, args.seed))
    sample = [(x, tokens.get(d)) for d, x in records if d in chosen]
    fitted = fit_pipeline(pipe, sample, meta, seed=args.seed)
    size = len(fitted.state.to_bytes())
    print(f"fitted   {pipe.spec} on {len(sample)} of {len(records)} documents (seed {args.seed}): state {size} bytes, "
          f"sha256 {fitted.state.sha256[:16]}...")
    return fitted


def run(args) -> int:
    if args.limit is not None and args.limit < 1:
        raise CLIError(f"--limit must be at least 1, got {args.limit}")
    if args.repeat < 1:
        raise CLIError(f"--repeat must be at least 1, got {args.repeat}")
    if args.fit_docs < 1:
        raise CLIError(f"--fit-docs must be at least 1, got {args.fit_docs}")
    pipes = [Pipeline.from_spec(spec) for spec in args.codec]  # bad specs fail before any work
    source = cache_where(args.source, args) if is_remote(args.source) else Path(args.source)
    if args.out and not (is_remote(source) or source.is_dir()):
        raise CLIError("--out re-encodes a cache: SOURCE must be a cache folder, not raw activations")
    records, info = load_source(source, offsets=args.offsets, limit=args.limit)
    n_tokens = sum(a.shape[0] for _, a in records)
    where = f"cache written with {info.codec}" if info.kind == "cache" else "raw activations"
    print(f"source   {source} ({where}): {len(records)} documents, {n_tokens} tokens, hidden {records[0][1].shape[1]}")
    ids_tokens = info.tokens or {}
    tokens = [ids_tokens.get(d) for d, _ in records]
    pipes = [fit(pipe, records, ids_tokens, info.meta, args) for pipe in pipes]
    rows = []
    for pipe in pipes:
        with progress_bar(len(records) * args.repeat, pipe.spec) as bar:
            rows.append(measure(pipe, records, progress=bar.update, repeat=args.repeat,
                                tokens=tokens if pipe.needs_tokens else None))
    print("\n".join(table(rows)))
    json_rows = [r.as_dict() for r in rows]
    for pipe, row in zip(pipes, json_rows):
        if pipe.state is not None:  # what it was fitted on
            row["fit"] = {"documents": min(args.fit_docs, len(records)), "seed": args.seed,
                          "sha256": pipe.state.sha256}
    if args.out:
        out = output_where(args.out, args)
        for pipe, row in zip(pipes, json_rows):
            dest = out if len(pipes) == 1 else _subfolder(out, spec_slug(pipe.spec))
            with progress_bar(len(records), f"write {dest}") as bar:
                written = recode_cache(source, dest, pipe, limit=args.limit, progress=bar.update)
            row["out"] = written.as_dict()
            state = f" + fitted state {written.state_bytes} bytes" if written.state_bytes else ""
            print(f"wrote    {dest}: {written.documents} documents, {written.bytes} bytes{state} ({pipe.spec})")
    if args.json:
        print(json.dumps({"source": str(source), "kind": info.kind, "documents": len(records), "tokens": n_tokens,
                          "rows": json_rows}))
    return 0
