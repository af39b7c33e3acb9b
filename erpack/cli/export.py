"""`erpack export`: a task model's upper (or lower) stack to a checked ONNX graph, and int8/optimized variants;
or, with --bundle, the whole deployment folder (erpack.deploy.build)."""

from __future__ import annotations

import json
from pathlib import Path

from erpack.cli import CLIError
from erpack.cli.storage import add_storage_options, cache_where
from erpack.store import CacheReader


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a task model's upper stack (or the lower stack) to ONNX, checked against PyTorch",
        description=(
            "Write the task model's layers k..L-1 and head as an ONNX graph taking hidden_states (batch, tokens, "
            "hidden) float32 and attention_mask (batch, tokens) int64, with dynamic batch and token axes, and "
            "returning logits (batch, classes), or (batch, tokens, classes) for a token-classification model, "
            "whose graph also records its labels and subwords rule for `erpack predict`. Adapters are merged first. The graph records the cache it expects (encoder weights "
            "sha256, layer, codec, max_length) in its metadata; `erpack predict` refuses any other cache. After "
            "export, onnxruntime runs the graph on batches of varied shapes (batch 1, padded batches; cached "
            "records too with --calibration-cache) and the logits are compared with PyTorch: the largest "
            "difference is printed, and past --tolerance the command fails and leaves no file. --optimize and "
            "--quantize write variants beside the output (NAME.optimized.onnx, NAME.int8-dynamic.onnx, "
            "NAME.int8-static.onnx), each reported with its size, batch-32 latency against the fp32 graph "
            "(median of interleaved runs) and agreement with it. --part lower writes the embeddings and layers "
            "0..k-1 instead: (input_ids, attention_mask[, token_type_ids]) -> hidden states, for new documents. "
            "--bundle DIR writes everything a deployment needs into one folder instead: the upper graph (fp32 "
            "and int8), the lower graph, the encoder's tokenizer files, the labels, the identity of the cache it "
            "serves, and bundle.json with the sha256 of every file (sealed, written last; the folder appears "
            "whole or not at all). `erpack predict DIR --text ...` runs it without torch; `erpack verify DIR` "
            "checks it. A token-classification model's bundle answers texts with a label per word; a model "
            "trained with --early-exit adds its per-layer exit graphs (each row then says the layers it ran); "
            "--steps S bundles a shared-block model's upper graph unrolled for S ODE steps."
        ),
        epilog=("Example: erpack export models/rt -o rt.onnx --optimize --quantize dynamic --calibration-cache caches/rt\n"
                "         erpack export models/rt -o rt-lower.onnx --part lower\n"
                "         erpack export models/rt --bundle bundles/rt --calibration-cache caches/rt"),
    )
    p.add_argument("task_model", help="task model folder written by `erpack train`")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("-o", "--output", help="the .onnx file to write (variants go beside it)")
    out.add_argument("--bundle", metavar="DIR", help="write a deployment bundle folder (see above) instead of one graph")
    p.add_argument("--no-int8", action="store_true", help="--bundle: leave out the int8 upper graph")
    p.add_argument("--model", default=None, help="--bundle: where to find the encoder's tokenizer when the folder or "
                   "name the cache recorded is not found here")
    p.add_argument("--part", choices=["upper", "lower", "full"], default=None,
                   help="upper: layers k..L-1 + head, from cached hidden states (default); lower: embeddings + "
                   "layers 0..k-1, from token ids; full: the whole model, token ids -> logits (the default, and "
                   "the only part, for a model that computes from text: the baseline of `erpack train --baseline`)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files (each is written "
                   "beside its place and renamed in when checked; without this flag an existing one is refused)")
    p.add_argument("--optimize", action="store_true", help="also write NAME.optimized.onnx: onnxruntime's "
                   "transformer fusions (attention, LayerNorm, GELU where the pattern matches; the fused "
                   "operators are listed), checked against PyTorch like the fp32 graph")
    p.add_argument("--quantize", choices=["dynamic", "static"], default=None,
                   help="also write an int8 graph: dynamic (int8 weights, activations quantized at run time; "
                   "no data needed) or static (QDQ, activation ranges calibrated on --calibration-cache)")
    p.add_argument("--int8-exclude", choices=["auto", "none"], default="auto",
                   help="--quantize dynamic with --calibration-cache: auto (default) ranks the weight MatMuls by "
                   "the outlier ratio (max|x| / std) of their input on cached records and leaves the fewest of them "
                   "in float that bring argmax agreement with the fp32 graph to 99%% on those records (a weight "
                   "used at several ODE steps is float at all or none); a model with exits applies it to each "
                   "per-layer graph, on its exit's argmax; none quantizes all. Weights are 7-bit either way "
                   "(reduce_range: no int16 saturation on AVX2 CPUs)")
    p.add_argument("--calibration-cache", default=None, help="a cache (folder or URL) of the task's corpus: its records calibrate "
                   "--quantize static, and serve as realistic inputs for the parity and agreement checks")
    p.add_argument("--calibration-docs", type=int, default=256, help="records used to calibrate (default: 256)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="largest |ONNX - PyTorch| allowed on the outputs "
                   "(default: 1e-4)")
    p.add_argument("--exporter", choices=["legacy", "dynamo"], default="legacy",
                   help="torch.onnx exporter: legacy (TorchScript; fast, and the graphs onnxruntime's optimizer "
                   "fuses; default) or dynamo (torch.export)")
    p.add_argument("--allow-other-codec", action="store_true", help="accept a --calibration-cache whose codec "
                   "differs from the training cache's")
    p.add_argument("--steps", type=int, default=None, help="a task model with a shared upper block (`erpack train "
                   "--shared-block`, or ALBERT): export its upper stack as S ODE steps, unrolled into the graph (one "
                   "graph per S; `erpack predict --steps S` checks it; with --bundle, the bundle serves that graph)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON document on the last line")
    add_storage_options(p)
    p.set_defaults(run=run)


def _variant_line(v) -> str:
    """A Variant in a line (and, for int8-dynamic, the MatMuls left in float on the next)."""
    line = f"{v.variant:<13} {v.path}  {v.bytes / 1e6:.2f} MB"
    if v.size_ratio is not None:
        line += f" ({v.size_ratio:.2f}x smaller)"
    if v.timing is not None:
        t = v.timing
        line += (f"  batch {t['batch'][0]}x{t['batch'][1]}: {t['variant_ms']:.1f} ms vs fp32 {t['fp32_ms']:.1f} ms "
                 f"({t['speedup']:.2f}x)")
    if v.agreement is not None:
        a = v.agreement
        line += f"  vs fp32: max |diff| {a['max_diff']:.2e}"
        if a["argmax_agreement"] is not None:
            line += f", argmax agrees {100 * a['argmax_agreement']:.1f}% of {a['rows']}" + (" tokens" if a.get("tokens") else "")
        elif a.get("pearson") is not None:  # a regression score: agreement as the correlation of the scores
            line += f", scores' Pearson r {a['pearson']:.4f} over {a['rows']}"
    excluded = v.details.get("excluded")
    if excluded is not None and v.variant == "int8-dynamic":
        line += f"\n             left in float: {len(excluded)} MatMul(s)"
        if excluded:
            line += f" ({', '.join(excluded[:4])}{', ...' if len(excluded) > 4 else ''})"
    return line


def run(args) -> int:
    import sys

    import transformers
    from tqdm import tqdm

    from erpack.export import export_task_model

    transformers.logging.set_verbosity_error()
    if args.bundle is not None:
        return run_bundle(args)
    if args.no_int8 or args.model:
        raise CLIError("--no-int8 and --model apply to --bundle")
    s = export_task_model(args.task_model, args.output, part=args.part, optimize=args.optimize,
                          quantize=args.quantize, calibration_cache=cache_where(args.calibration_cache, args),
                          tolerance=args.tolerance, exporter=args.exporter, allow_other_codec=args.allow_other_codec,
                          calibration_docs=args.calibration_docs, int8_exclude=args.int8_exclude,
                          overwrite=args.overwrite, ode_steps=args.steps,
                          progress=lambda **kw: tqdm(leave=False, file=sys.stderr, disable=None, **kw))
    par = s.parity
    print(f"exported     {s.output} ({s.part} stack of {s.model}, layer {s.layer}, {s.bytes / 1e6:.2f} MB, "
          f"exporter {s.exporter})")
    print(f"parity       largest |ONNX - PyTorch| {par['max_diff']:.2e} (mean {par['mean_diff']:.2e}) over "
          f"{len(par['cases'])} batches incl. batch 1 and padded; tolerance {par['tolerance']:.0e}: pass")
    for v in s.variants:
        print(_variant_line(v))
        if v.variant == "optimized":
            fused = ", ".join(f"{op} {n}" for op, n in sorted(v.details["fused"].items())) or "nothing"
            print(f"             fused: {fused}" + ("" if v.details["attention_fused"] else " (attention not fused)"))
            print(f"             parity {v.parity['max_diff']:.2e}: pass")
    exits = _export_exits(args, s)
    for note in s.notes:
        print(f"note: {note}")
    if args.json:
        print(json.dumps(dict(s.as_dict(), **({"exit_graphs": exits} if exits else {}))))  # only a model with exits
    return 0


def _export_exits(args, s) -> list[str]:
    """A task model trained with --early-exit: its per-layer graphs with their exits, beside the output
    (NAME.exits/, and NAME.exits-int8/ with --quantize dynamic): erpack.depth.onnx."""
    from erpack.train import TaskModel
    from erpack.train.taskfolder import read_task_file

    if s.part != "upper" or not isinstance(read_task_file(Path(args.task_model)).get("early_exit"), dict):
        return []
    tm = TaskModel.load(args.task_model)
    from erpack.depth.onnx import exits_folder_for, export_exit_graphs

    calibration = None
    if args.quantize == "dynamic" and args.int8_exclude == "auto" and args.calibration_cache:
        from erpack.export.build import exclusion_batches

        with CacheReader(cache_where(args.calibration_cache, args)) as reader:
            calibration = exclusion_batches(reader, args.calibration_docs)
    written = []
    for int8 in (False, True) if args.quantize == "dynamic" else (False,):
        folder = exits_folder_for(s.output, int8)
        record = export_exit_graphs(tm, folder, int8=int8, overwrite=args.overwrite, source=args.task_model,
                                    calibration=calibration if int8 else None, int8_exclude=args.int8_exclude)
        floats = "" if not int8 else ", float: " + (", ".join(
            f"{name} {len(g['excluded'])}" for name, g in record["quantization"]["graphs"].items())
            if record["quantization"]["rule"] == "auto" else "none (no --calibration-cache or --int8-exclude none)")
        print(f"exit graphs  {folder} ({record['layers']} per-layer graphs, {record['variant']}{floats}, rule "
              f"{record['early_exit']['rule']} threshold {record['early_exit']['threshold']:g}): erpack predict "
              f"{folder} CACHE")
        written.append(str(folder))
    return written


def run_bundle(args) -> int:
    """--bundle DIR: the deployment folder (erpack.deploy.build.write_bundle)."""
    import sys

    from tqdm import tqdm

    from erpack.deploy.build import write_bundle

    refused = [flag for flag, value in [("--part", args.part), ("--optimize", args.optimize),
                                        ("--quantize", args.quantize)] if value]
    if refused:
        raise CLIError(f"{', '.join(refused)}: a bundle holds the upper graph (fp32 and int8 dynamic, or fp32 alone "
                       "with --no-int8) and the lower graph; drop them")
    s = write_bundle(args.task_model, args.bundle, model=args.model,
                     calibration_cache=cache_where(args.calibration_cache, args), quantize=not args.no_int8,
                     overwrite=args.overwrite, ode_steps=args.steps,
                     progress=lambda **kw: tqdm(leave=False, file=sys.stderr, disable=None, **kw))
    print(f"bundle       {s.bundle} ({s.task} task model of {s.model}, layer {s.layer}; {len(s.files) + 1} files, "
          f"{s.bytes / 1e6:.2f} MB)")
    print(f"parity       upper |ONNX - PyTorch| {s.upper_parity['max_diff']:.2e}, lower {s.lower_parity['max_diff']:.2e}")
    if s.int8 is not None and s.int8.get("agreement"):
        a = s.int8["agreement"]
        agree = "" if a.get("argmax_agreement") is None else f", argmax agrees {100 * a['argmax_agreement']:.1f}%"
        print(f"int8         {s.int8['size_ratio']:.2f}x smaller than fp32, max |diff| {a['max_diff']:.2e}{agree}")
    t = s.text_parity
    print(f"text         the bundle's runtime vs PyTorch on {t['texts']} probe texts: max |logit diff| "
          f"{t['max_diff']:.2e}")
    if t.get("exits"):
        print(f"exits        upper layers run per probe text with early exit: {t['exits']['layers']}")
    for note in s.notes:
        print(f"note: {note}")
    print(f"check        erpack verify {s.bundle}; erpack predict {s.bundle} --text \"...\"")
    if args.json:
        print(json.dumps(s.as_dict()))
    return 0
