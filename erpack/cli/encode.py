"""`erpack encode`: a corpus through layers 0..k-1 into a compressed activation cache."""

from __future__ import annotations

import json

from erpack.calibrate import DEFAULT_FIT_DOCS
from erpack.cli.storage import add_storage_options, storage_options
from erpack.cluster.encode import RayOptions, encode_on_ray
from erpack.corpus import Columns
from erpack.encode import DEFAULT_CODEC, encode_corpus
from erpack.errors import InputError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "encode",
        help="run the lower stack over a corpus into a compressed, checksummed activation cache",
        description=(
            "Run a pretrained encoder's embeddings and layers 0..k-1 over every document of a corpus once, "
            "and store the hidden states entering layer k (non-padding tokens only) in a cache folder, "
            "encoded by a codec pipeline (see `erpack codecs`). Documents are grouped by length so little "
            "compute goes to padding; CUDA is used when present. The corpus is checked whole before any "
            "work: a malformed line, bytes that are not UTF-8, an empty text or a repeated id stops it with the "
            "file and line named. Running the same command again after an interruption resumes where it "
            "stopped; running it on an existing cache with another corpus appends (same model, layer and codec "
            "required). Each record keeps a hash of its token ids, so a document whose id is cached is compared: "
            "unchanged ones are skipped, changed ones are handled as --on-duplicate says."
        ),
        epilog="Example: erpack encode rotten_tomatoes -o caches/rt-minilm-k3 --layer 3 --codec int8c+zstd:3",
    )
    p.add_argument("corpus", help="a .jsonl file (one object per line: id, text, optional text_pair), a .csv file "
                   "with a header (id, text, optional text_pair), a .parquet file, a folder or a glob of files of "
                   "one of those formats, local or at a URL (e.g. s3://bucket/corpus/), or a built-in "
                   "data set: rotten_tomatoes, bbc, or the texts of a built-in token task: bbc-truecase, bbc-punctuation "
                   "(optionally with a split, e.g. bbc:test)")
    p.add_argument("--id-column", default=None, metavar="NAME",
                   help="the field or column holding document ids (default: id). A CSV without an id "
                   "column gets ids made of the file name and row number (reviews:0, reviews:1, ...), with a warning")
    p.add_argument("--text-column", default=None, metavar="NAME",
                   help="the field or column holding the texts (default: text)")
    p.add_argument("--text-pair-column", default=None, metavar="NAME",
                   help="the field or column holding second texts of pairs (default: text_pair, when present)")
    p.add_argument("-o", "--output", required=True, help="cache folder or URL (s3://bucket/prefix, gs://..., "
                   "memory://...) to create, resume or append to")
    p.add_argument("--model", default="minilm",
                   help="built-in name (minilm, mpnet), a local model folder, or a hub id (default: minilm)")
    p.add_argument("--layer", type=int, default=None, help="split layer k, 0..L: the cache holds the hidden "
                   "states entering layer k (default: the middle, L // 2)")
    p.add_argument("--codec", default=None, help="codec pipeline spec, e.g. fp16+zstd:3, int8c+zstd:3, int4:g=32+zstd:3 "
                   "(default: int8c+zstd:3; list them with `erpack codecs`)")
    p.add_argument("--fit-docs", type=int, default=DEFAULT_FIT_DOCS, metavar="N",
                   help="a codec with fitted state (e.g. tc:snr=19) is fitted on the first N documents of the corpus "
                   f"(default: {DEFAULT_FIT_DOCS}; all when fewer): they are run through the model and held in memory "
                   "(whole shards of them), the codec is fitted, then they are written and the rest streamed. The "
                   "state is stored in the cache: a rerun or an append codes with it and fits nothing; a cache "
                   "that holds documents without a state is refused. With --engine ray this process fits, on "
                   "its CPU, and sends the state to every worker. Codecs that fit nothing ignore it")
    p.add_argument("--seed", type=int, default=0, help="seed of a fitted codec's fit (default: 0); the same "
                   "documents and seed give the same state")
    p.add_argument("--max-length", type=int, default=None, help="truncate longer documents to this many tokens; "
                   "truncated documents are counted and flagged (default: the model's limit, at most 512)")
    p.add_argument("--batch-size", type=int, default=32, help="documents per batch (default: 32)")
    p.add_argument("--max-tokens", type=int, default=16384,
                   help="cap on batch size x longest document, bounding memory on long texts (default: 16384)")
    p.add_argument("--shard-size", type=int, default=1024,
                   help="documents per shard; a shard is the unit of commit and of resume (default: 1024)")
    p.add_argument("--on-duplicate", choices=["error", "skip", "replace"], default="error",
                   help="a document whose id is already in the cache: its tokens are compared with the cached "
                   "record's; unchanged ones are skipped and a changed one is: error (default): stop with an error "
                   "naming it, before its shard is written; skip: keep the cached record (stale; counted and warned); "
                   "replace: encode every cached document of the corpus again. Cached records without a token hash "
                   "(written by erpack before shard version 2) cannot be compared: they are kept, with a warning, "
                   "except with replace")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (CUDA when present; default)")
    g = p.add_argument_group("distributed encode (the scale extra)")
    g.add_argument("--engine", choices=["single", "ray"], default="single",
                   help="single: this process (default). ray: an actor pool on Ray Data reads the corpus, each "
                   "worker loads the lower stack once and writes its own shards, this process commits them; a "
                   "rerun after a crash resumes. Cached documents are compared by token hash as on one "
                   "process: unchanged ones are skipped, a changed one stops the run (only --on-duplicate error)")
    g.add_argument("--address", default=None, help="a running Ray cluster (host:port, ray://host:10001 or auto; "
                   "default: start a local Ray instance)")
    g.add_argument("--workers", type=int, default=1, help="actors encoding at once (default: 1)")
    g.add_argument("--gpus-per-worker", type=float, default=0, help="GPUs per actor (default: 0, CPU)")
    g.add_argument("--threads-per-worker", type=int, default=None,
                   help="torch threads per actor (default: a local instance shares the CPUs among the workers)")
    add_storage_options(p)
    p.add_argument("--json", action="store_true", help="print the summary as one JSON document on the last line")
    p.set_defaults(run=run)


def _encode(args, progress):
    options = storage_options(args)  # CLIError (exit 2) for JSON that is not an object
    if args.engine == "single":
        return encode_corpus(args.corpus, args.output, model=args.model, layer=args.layer,
                             codec=args.codec or DEFAULT_CODEC, max_length=args.max_length, batch_size=args.batch_size,
                             max_tokens=args.max_tokens, shard_size=args.shard_size, on_duplicate=args.on_duplicate,
                             device=args.device, progress=progress, id_column=args.id_column,
                             text_column=args.text_column, text_pair_column=args.text_pair_column,
                             storage_options=options, fit_docs=args.fit_docs, seed=args.seed)
    if args.on_duplicate != "error":
        raise InputError("--engine ray skips unchanged cached documents, stops at a changed one, and accepts only "
                         "--on-duplicate error; "
                         "use the single-process engine to skip or replace changed documents")
    ray_options = RayOptions(address=args.address, workers=args.workers, gpus_per_worker=args.gpus_per_worker,
                         threads_per_worker=args.threads_per_worker)
    return encode_on_ray(args.corpus, args.output, model=args.model, layer=args.layer, codec=args.codec or DEFAULT_CODEC,
                         max_length=args.max_length, batch_size=args.batch_size, max_tokens=args.max_tokens,
                         shard_size=args.shard_size, device=None if args.device == "auto" else args.device,
                         progress=progress, columns=Columns.of(args.id_column, args.text_column, args.text_pair_column),
                         ray_options=ray_options, storage_options=options, fit_docs=args.fit_docs, seed=args.seed)


def run(args) -> int:
    from tqdm import tqdm

    s = _encode(args, lambda **kw: tqdm(**kw))
    d = s.as_dict()
    if s.removed_leftovers:
        print(f"removed {len(s.removed_leftovers)} leftover file(s) of an interrupted run: "
              + ", ".join(s.removed_leftovers[:5]))
    print(f"encoded      {s.encoded} documents, {s.tokens} tokens in {s.seconds:.1f} s on {s.device}"
          + (f" ({d['documents_per_second']:.1f} doc/s, {d['tokens_per_second']:.0f} tok/s)" if s.seconds else ""))
    if s.appended:
        print(f"appended     {s.encoded} documents to an existing cache of {s.existing_documents}")
    for label, count, what in (("unchanged", s.unchanged, "documents already in the cache with the same tokens (skipped)"),
                               ("unverified", s.unverified, "documents already in the cache without a token hash (kept)"),
                               ("kept stale", s.kept_changed, "changed documents (--on-duplicate skip)"),
                               ("replaced", s.replaced, "documents already in the cache (encoded again)")):
        if count:
            print(f"{label:<12} {count} {what}")
    if s.truncated:
        print(f"truncated    {s.truncated} documents longer than max length (first: {', '.join(d['truncated_ids'][:5])})")
    print(f"cache        {s.output}: {s.cache_documents} documents, {s.cache_tokens} tokens, "
          f"{s.cache_bytes / 1e6:.2f} MB" + (f", {d['bytes_per_token']:.1f} bytes/token" if s.cache_tokens else ""))
    print(f"             {s.model} layer {s.layer}, codec {s.codec}")
    if s.codec_state and s.fitted_on:
        print(f"fitted       {s.codec} on the first {s.fitted_on} documents: state {s.codec_state['name']} "
              f"({s.codec_state['bytes']} bytes), stored in the cache")
    elif s.codec_state:
        print(f"fitted       coded with the cache's fitted state {s.codec_state['name']} (nothing fitted again)")
    for warning in s.warnings:
        print(f"warning      {warning}")
    if args.json:
        print(json.dumps(d))
    return 0
