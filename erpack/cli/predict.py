"""`erpack predict`: predictions from an exported graph over cached documents (and new texts), or from a
bundle (erpack.deploy) for texts given on the command line, on stdin or in a file, without torch."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from erpack.cli import CLIError
from erpack.cli.storage import add_shard_cache, add_storage_options, cache_where, storage_options
from erpack.cluster.score import score_on_ray
from erpack.deploy.bundle import VARIANTS, Bundle, is_bundle
from erpack.deploy.runtime import predict_bundle
from erpack.depth.ort import is_exit_graphs
from erpack.predict import open_upper, predict, read_ids_file
from erpack.tasks import per_token


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "predict",
        help="predict with a bundle (texts or cached ids) or an exported upper-stack graph over a cache: one JSON "
             "line per document",
        description=(
            "Run MODEL.onnx (from `erpack export`) over documents of CACHE with onnxruntime: records are read and "
            "decoded in a background thread into length-grouped padded batches while the previous batch runs. "
            "CUDA is used when onnxruntime offers it (onnxruntime-gpu on a GPU host), else the CPU; the provider "
            "actually used is printed. The graph must have been exported for this cache (same encoder weights, "
            "layer and codec): another is refused. Documents not in the cache but given in --texts run through "
            "the lower stack first (--lower graph, or PyTorch) and, with --add-to-cache, are appended to it. A "
            "requested id found nowhere gets a line with an `error` in the output, is listed in the summary, and "
            "makes the command exit 1. Given a BUNDLE folder (erpack export --bundle) instead of a graph, no cache "
            "and no torch are needed: --text TEXT (repeatable; `-` reads one text a line from stdin, as does no "
            "input at all when stdin is not a terminal) and --texts FILE (its documents, or those of --ids) run "
            "through the bundle's tokenizer, lower graph, the cache's codec and upper graph; a CACHE adds cached "
            "ids. Without -o the lines go to stdout and the summary to stderr. A token-classification graph "
            "(erpack train --task token-classification) predicts a label per word: each document's words come "
            "from --labels (a word label file or built-in token task: its `words`) or --texts (text split at "
            "whitespace), and each line holds id, source, words, predicted (a label per word; null for a word past "
            "max_length) and truncated_words; with --labels, labels (the true ones) and the score per word (micro F1 over "
            "the tagged labels, macro F1, per-label F1, word accuracy). With --engine ray a token graph needs --labels "
            "(the words travel to the actors with the ids); the parts hold the same lines and the summary the "
            "same scores. A token-classification bundle predicts cached ids given their words: --labels (a word "
            "label file or built-in token task; --split picks its documents) gives them and the true labels, and "
            "the lines and scores are those of its upper graph with --labels."
        ),
        epilog=("Examples: erpack predict bundles/rt --text \"a fine film\" --text \"dull\"\n"
                "          cat reviews.txt | erpack predict bundles/rt --variant int8 -o p.jsonl\n"
                "          erpack predict bundles/rt caches/rt --ids d1,d2\n"
                "          erpack predict bundles/truecase caches/truecase --labels bbc-truecase --split test\n"
                "          erpack predict rt.int8-dynamic.onnx caches/rt -o predictions.jsonl\n"
                "          erpack predict rt.onnx caches/rt --ids-file ids.txt --texts new.jsonl --add-to-cache -o p.jsonl\n"
                "          erpack predict rt.onnx caches/rt --labels rotten_tomatoes --split test -o p.jsonl\n"
                "          erpack predict truecase.onnx caches/truecase --labels bbc-truecase --split test -o words.jsonl\n"
                "          erpack predict truecase.onnx caches/truecase --labels bbc-truecase --engine ray --out parts/"),
    )
    p.add_argument("graph", help="bundle folder (erpack export --bundle), upper-stack .onnx file written by "
                   "`erpack export`, or the exit-graph folder it writes beside it for a task model with exits "
                   "(NAME.exits, NAME.exits-int8: documents stop early; each output line gives `layers`)")
    p.add_argument("cache", nargs="?", default=None, help="cache folder or URL (s3://bucket/prefix, ...) written by "
                   "`erpack encode`; required with a graph, optional with a bundle")
    p.add_argument("ids", nargs="?", default=None, help="`all` (default): every cached document, or with "
                   "--texts every document of that file")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--ids", dest="id_list", default=None, help="comma-separated document ids")
    g.add_argument("--ids-file", default=None, help="file of ids, one per line (or JSONL objects with `id`)")
    p.add_argument("--texts", default=None, help="corpus (.jsonl/.csv or built-in name, as for `erpack encode`) whose "
                   "documents are predicted (those of the ids when ids are given). With a graph, a document whose id "
                   "the cache holds is read from the cache; with a bundle, from the file")
    p.add_argument("--text", action="append", default=None, metavar="TEXT", help="with a bundle: a text to predict "
                   "(repeatable; ids text-0, text-1, ...); `-` reads one text a line from stdin")
    p.add_argument("--variant", choices=VARIANTS, default="fp32", help="with a bundle: its fp32 upper graph (default) "
                   "or the int8 one")
    p.add_argument("--add-to-cache", action="store_true", help="append documents encoded from --texts (with a bundle: "
                   "from --text too) to the cache")
    p.add_argument("--lower", default=None, help="lower-stack graph (erpack export --part lower) for --texts; default: "
                   "PyTorch with the encoder the cache names")
    p.add_argument("--model", default=None, help="where to load the encoder for --texts when the cache's recorded "
                   "name is not found here (its weights must match the cache's sha256)")
    p.add_argument("--labels", default=None, help="label source (as for `erpack eval`): scores the predictions; for a "
                   "token-classification graph or bundle, the word label file (id, words, labels) or built-in token "
                   "task that also gives each cached document's words (a document bundle takes none)")
    p.add_argument("--split", choices=["train", "validation", "test"], default=None,
                   help="with --labels and no ids: predict the documents of this split (with --engine ray: a "
                   "token-classification graph's; with a bundle: a token-classification one's)")
    p.add_argument("-o", "--output", default=None, help="predictions JSONL (a file or URL): id, source, predicted, "
                   "probabilities (or score), label when --labels; or id, error. Required without --engine ray")
    p.add_argument("--batch-size", type=int, default=32, help="documents per batch (default: 32)")
    p.add_argument("--device", default="auto", help="auto (CUDA when onnxruntime offers it; default), cuda, or cpu")
    p.add_argument("--allow-other-codec", action="store_true", help="serve a cache whose codec differs from the "
                   "one the graph was exported for (decoded records are the same representation, up to "
                   "quantization error)")
    ray = p.add_argument_group("distributed scoring (--engine ray)")
    ray.add_argument("--engine", choices=["single", "ray"], default="single", help="single: this process (default); "
                     "ray: Ray Data actors, each opening the graph and the cache once, write the predictions as parts "
                     "to --out (cached documents only: no --texts; --labels only for a token-classification graph, "
                     "which needs it: the driver reads each document's words from it and hands them to the "
                     "actors with the ids; the rows and the scores of a run without --engine ray)")
    ray.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS, a running local "
                     "instance, or a new one on this machine)")
    ray.add_argument("--workers", type=int, default=2, help="scoring actors (default: 2)")
    ray.add_argument("--gpus-per-worker", type=float, default=0, help="GPUs per actor (default: 0; onnxruntime uses "
                     "CUDA where it offers it)")
    ray.add_argument("--out", default=None, help="folder or URL for the parts (part-NNNNNN.parquet or .jsonl) and "
                     "_parts.json, which lists each part's rows and sha256 and is written last")
    ray.add_argument("--format", choices=["parquet", "jsonl"], default="parquet", help="part format (default: parquet)")
    ray.add_argument("--part-docs", type=int, default=1000, help="documents per part (default: 1000)")
    add_storage_options(p)
    add_shard_cache(p)
    p.add_argument("--no-early-exit", action="store_true", help="with an exit-graph folder (NAME.exits from erpack "
                   "export of a task model trained with --early-exit), or a bundle of one: run every upper layer for "
                   "every document")
    p.add_argument("--exit-threshold", type=float, default=None, help="with an exit-graph folder or a bundle with exits: "
                   "stop documents with this threshold instead of the recorded one")
    p.add_argument("--steps", type=int, default=None, help="an ODE-step graph (`erpack export --steps S`): the step count "
                   "it must run, checked against its metadata (each prediction line gives it as `layers`)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON document on the last line")
    p.set_defaults(run=run)


def run(args) -> int:
    if args.ids not in (None, "all"):
        raise CLIError(f"unknown positional {args.ids!r}: use --ids id1,id2, --ids-file FILE, or `all`")
    ids = None
    if args.id_list is not None:
        ids = [i.strip() for i in args.id_list.split(",") if i.strip()]
    elif args.ids_file is not None:
        ids = read_ids_file(args.ids_file)
    if not is_exit_graphs(args.graph) and (is_bundle(args.graph) or Path(args.graph).is_dir()):  # a bundle, or told why not
        if args.steps is not None:
            raise CLIError(f"--steps checks an ODE-step graph file (erpack export --steps S); {args.graph} is a folder")
        return run_bundle(args, ids)
    if args.text is not None or args.variant != "fp32":
        raise CLIError(f"--text and --variant need a bundle folder (erpack export --bundle); {args.graph} is not one")
    if args.cache is None:
        raise CLIError(f"predicting with the graph {args.graph} needs a CACHE (or give a bundle folder, which runs "
                       "texts without one)")
    if args.add_to_cache and not args.texts:
        raise CLIError("--add-to-cache adds documents encoded from --texts: give --texts")
    cache = cache_where(args.cache, args)
    from tqdm import tqdm

    if args.engine == "ray":
        return run_ray(args, cache, ids)
    if args.output is None:
        raise CLIError("give -o FILE for the predictions (or --engine ray --out FOLDER)")
    if args.out is not None:
        raise CLIError("--out is the parts folder of --engine ray; without it, give -o FILE")
    s = predict(args.graph, cache, progress=lambda **kw: tqdm(leave=False, **kw), ids=ids, texts=args.texts,
                add_to_cache=args.add_to_cache, output=args.output, batch_size=args.batch_size, device=args.device,
                lower_graph=args.lower, model=args.model, allow_other_codec=args.allow_other_codec,
                labels=args.labels, split=args.split, storage_options=storage_options(args),
                shard_cache=args.shard_cache, early_exit=not args.no_early_exit,
                exit_threshold=args.exit_threshold, steps=args.steps).as_dict()
    t = s["from_text"]
    print(f"predicted    {s['predicted']} of {s['requested']} documents in {s['seconds']:.2f} s "
          f"({s['from_cache']} from the cache, {t['documents']} from text"
          + (f" via {t['lower']}, {t['added_to_cache']} added to the cache" if t["documents"] else "") + ")")
    print(f"provider     {s['provider']} (onnxruntime providers: {', '.join(s['providers'])}); inference "
          f"{s['inference_seconds']:.2f} s, waited on the reader {s['waited_on_reader_seconds']:.2f} s")
    if s.get("steps") is not None:
        print(f"steps        {s['steps']} ODE steps (block evaluations per document)")
    _print_outcome(s, s["output"], "not in the cache and not in --texts", " (each has an `error` line in the output)")
    if args.json:
        print(json.dumps(s))
    return 1 if s["missing"] else 0


def _print_outcome(s: dict, output: str, missing_where: str, missing_hint: str = "") -> None:
    """The end of a summary: the per-word scores (a token graph with true labels), notes, the output, and
    the requested ids that were not found (on stderr)."""
    if "metrics" in s:
        _print_metrics(s["metrics"])
    for note in s["notes"]:
        print(f"note: {note}")
    print(f"output       {output}")
    if s["missing"]:
        shown = ", ".join(s["missing"][:10]) + (", ..." if len(s["missing"]) > 10 else "")
        print(f"missing      {len(s['missing'])} id(s) {missing_where}: {shown}{missing_hint}", file=sys.stderr)


def _print_metrics(m: dict, file=None) -> None:
    print("score        " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in m.items()
                                      if not isinstance(v, dict)), file=file)
    if m.get("per_label"):  # a token task's, per word
        print("per label    " + ", ".join(f"{name} F1 {x['f1']:.4f} ({x['support']} words)"
                                          for name, x in m["per_label"].items()), file=file)


def _stdin_texts() -> list[str]:
    texts = [line.strip() for line in sys.stdin.read().splitlines()]
    return [t for t in texts if t]


def run_bundle(args, ids) -> int:
    """A bundle: texts (--text, stdin, --texts) and cached ids, without torch (a token bundle's cached ids take
    their words from --labels, whose reading imports torch); summary on stderr without -o."""
    words = (args.labels or args.split) and _token_bundle(args.graph)
    unsupported = [flag for flag, value in [("--lower", args.lower), ("--model", args.model),
                                            ("--labels", not words and args.labels),
                                            ("--split", not words and args.split),
                                            ("--out", args.out)] if value] + (["--engine ray"] if args.engine == "ray" else [])
    if unsupported:
        raise CLIError(f"{', '.join(unsupported)} apply to a graph, not to a bundle (which carries its lower graph "
                       "and tokenizer; --labels and --split only give a token-classification bundle the words of "
                       "cached ids): drop them")
    if words and args.cache is None:
        raise CLIError(f"--labels gives the words of cached documents: give the CACHE after the bundle {args.graph}")
    if args.add_to_cache and args.cache is None:
        raise CLIError("--add-to-cache appends the texts to a cache: give CACHE after the bundle")
    texts = []
    for t in args.text or []:
        texts += _stdin_texts() if t == "-" else [t]
    if args.text is None and args.texts is None and args.cache is None:
        if sys.stdin.isatty():
            raise CLIError("nothing to predict: give --text TEXT, --texts FILE, a CACHE, or texts on stdin")
        texts = _stdin_texts()
    if args.text is not None or (args.texts is None and args.cache is None):
        if not texts:
            raise CLIError("no text given: --text needs a non-empty text (stdin held none)")
    result, rt = predict_bundle(args.graph, cache_where(args.cache, args), texts, args.texts, ids, args.variant,
                                args.device, args.batch_size, args.output, args.allow_other_codec,
                                storage_options(args), args.add_to_cache, early_exit=not args.no_early_exit,
                                exit_threshold=args.exit_threshold, labels=args.labels, split=args.split)
    report = sys.stderr if args.output is None else sys.stdout
    if args.output is None:
        for row in result.rows:
            print(json.dumps(row))
    print(f"predicted    {len(result.rows) - len(result.missing)} of {len(result.rows)} documents with bundle "
          f"{args.graph} ({args.variant}; {result.from_text} from text, {result.from_cache} from the cache) on "
          f"{rt.provider}", file=report)
    if args.add_to_cache:
        print(f"added        {result.added_to_cache} of {result.from_text} text(s) to the cache {args.cache} (ids it "
              "held already were left as they were)", file=report)
    if result.truncated:
        print(f"truncated    {len(result.truncated)} text(s) cut at {rt.bundle.max_length} tokens, as the cache "
              "cuts them", file=report)
    if result.metrics is not None:
        _print_metrics(result.metrics, report)
    for note in result.notes + rt.notes:
        print(f"note: {note}", file=report)
    if args.output is not None:
        print(f"output       {args.output}", file=report)
    if result.missing:
        shown = ", ".join(result.missing[:10]) + (", ..." if len(result.missing) > 10 else "")
        print(f"missing      {len(result.missing)} id(s) found nowhere: {shown} (each has an `error` line)",
              file=sys.stderr)
    if args.json:
        print(json.dumps({"bundle": str(args.graph), "variant": args.variant, "provider": rt.provider,
                          "documents": len(result.rows), "from_text": result.from_text,
                          "from_cache": result.from_cache, "truncated": result.truncated, "missing": result.missing,
                          "added_to_cache": result.added_to_cache,
                          "notes": result.notes + rt.notes, "output": args.output}
                         | ({"metrics": result.metrics} if result.metrics is not None else {})), file=report)
    return 1 if result.missing else 0


def run_ray(args, cache, ids) -> int:
    """`--engine ray`: parts of predictions written by Ray actors (erpack.cluster.score). A token graph's
    words come from --labels (and --split selects its documents); a document graph takes neither."""
    words = (args.labels or args.split) and _per_token(args.graph)
    unsupported = [flag for flag, value in [("--texts", args.texts), ("--labels", not words and args.labels),
                                            ("--lower", args.lower), ("--split", not words and args.split),
                                            ("-o", args.output)] if value]
    if unsupported:
        raise CLIError(f"--engine ray scores cached documents into --out parts: drop {', '.join(unsupported)} "
                       "(or run without --engine ray)")
    if args.out is None:
        raise CLIError("--engine ray writes parts to a folder or URL: give --out")
    if args.workers < 1 or args.part_docs < 1:
        raise CLIError(f"--workers and --part-docs must be at least 1, got {args.workers} and {args.part_docs}")
    s = score_on_ray(args.graph, cache, args.out, ids=ids, fmt=args.format, workers=args.workers,
                     address=args.address, part_docs=args.part_docs, batch_size=args.batch_size, device=args.device,
                     gpus_per_worker=args.gpus_per_worker, storage_options=storage_options(args),
                     allow_other_codec=args.allow_other_codec, shard_cache=args.shard_cache,
                     labels=args.labels, split=args.split, model=args.model).as_dict()
    print(f"predicted    {s['predicted']} of {s['requested']} documents in {s['seconds']:.2f} s on Ray "
          f"({s['workers']} workers, onnxruntime {s['provider'] or 'n/a'})")
    _print_outcome(s, f"{s['output']}: {len(s['parts'])} {s['format']} part(s), listed in _parts.json", "not in the cache")
    if args.json:
        print(json.dumps(s))
    return 1 if s["missing"] else 0


def _token_bundle(folder) -> bool:
    """Is the bundle `folder` a token-classification one (by its manifest; files not checked here)?"""
    return per_token({"task": Bundle.load(folder, check_files=False).task})


def _per_token(graph) -> bool:
    """Is `graph` a token-classification graph (by its metadata)?"""
    return per_token(open_upper(graph, "cpu")[1])
