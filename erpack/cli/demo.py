"""`erpack demo`: the whole pipeline on the built-in real model and data, in a few minutes on a CPU."""

from __future__ import annotations

import json
import sys

from erpack.cli import CLIError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="the whole pipeline on the real MiniLM and Rotten Tomatoes: encode, compress, train, prune, "
        "export, predict, report",
        description=(
            "Run every erpack step on the built-in all-MiniLM-L6-v2 (installed offline by tools/setup.sh) and "
            "real Rotten Tomatoes reviews, with the library calls the commands use, in a few minutes on a CPU: "
            "(1) split the model at layer k and check upper(lower(x)) equals the full model on real batches; "
            "(2) encode --documents reviews, taken evenly over the data set with its own train/validation/test "
            "split, through layers 0..k-1 into a lossless cache (resumed when OUT holds it already) and verify "
            "it; (3) measure the int8z, int4z, bf16z and lossless codecs on a sample of it (bits per value, "
            "SQNR) and write the int8z cache; (4) train LoRA adapters in layers k..L-1 and a classifier head "
            "from the int8z cache; (5) prune 40%% of the upper stack's heads and feed-forward neurons and "
            "recover with LoRA; (6) export the pruned model to ONNX, fp32 and int8 dynamic, checked against "
            "PyTorch; (7) predict the test reviews from the cache with onnxruntime; (8) write the storage-cost "
            "report (size per codec, projected size and cost, break-even reuse count). Each step prints one "
            "line of results and its wall time; everything lands in OUT."
        ),
        epilog="Examples: erpack demo --out erpack-demo --documents 2000; erpack demo --scale --quick",
    )
    p.add_argument("--out", default=None, help="folder for the subset, caches, task models, graphs, "
                   "predictions and report; a cache already there is reused (default: erpack-demo; "
                   "erpack-demo-scale with --scale)")
    p.add_argument("--model", default="minilm",
                   help="built-in name (minilm, mpnet), a local model folder, or a hub id (default: minilm)")
    p.add_argument("--dataset", default="rotten_tomatoes",
                   help="built-in data set: rotten_tomatoes (short reviews) or bbc (long articles)")
    p.add_argument("--layer", type=int, default=None,
                   help="split layer k, 0..L-1 (default: the middle, L // 2: 3 for MiniLM)")
    p.add_argument("--documents", type=int, default=None,
                   help="documents of the data set to run, taken evenly over it (default: 2000; 160 with --quick)")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs of adapter training, and of LoRA recovery after pruning (default: 2; 1 with --quick)")
    p.add_argument("--prune", type=float, default=0.4,
                   help="fraction of the upper stack's attention heads and feed-forward neurons to remove (default: 0.4)")
    p.add_argument("--batch-size", type=int, default=32, help="documents per batch (default: 32)")
    p.add_argument("--max-length", type=int, default=128, help="truncate documents to this many tokens (default: 128)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (CUDA when present; default)")
    p.add_argument("--quick", action="store_true", help="the tiniest real run (160 documents, one epoch, small "
                   "samples): checks the pipeline end to end in well under a minute")
    p.add_argument("--json", action="store_true", help="print one JSON document with every step's figures as the "
                   "last line (also written to OUT/demo.json, or OUT/demo-scale.json with --scale)")
    scale = p.add_argument_group(
        "corpus scale (--scale; needs the scale extra)",
        "--scale runs the corpus-scale parts instead (docs/scale.md): start an S3-compatible server on "
        "127.0.0.1 (moto, in memory) or use --storage; start a local Ray instance or join --address; encode "
        "the documents (default 2000; 160 with --quick) on Ray with --workers actors into the int8z cache "
        "STORAGE/cache; verify it from storage; train LoRA adapters + head from it (--epochs, default 1; "
        "range reads, prefetched); export to ONNX; score every test document on Ray into Parquet parts at "
        "STORAGE/predictions and read them back for the test accuracy. Each step prints its figures, wall "
        "time and the S3 requests it made.")
    scale.add_argument("--scale", action="store_true", help="run the corpus-scale demo (Ray + object storage)")
    scale.add_argument("--storage", default=None, help="s3://bucket/prefix (or any fsspec URL the Ray workers can "
                       "reach) to use instead of the local server; credentials and endpoint from the AWS_* "
                       "environment or ~/.aws; a cache already at STORAGE/cache is resumed")
    scale.add_argument("--address", default=None, help="a running Ray cluster (host:port, ray://..., auto); "
                       "default: a local instance, shut down at the end")
    scale.add_argument("--workers", type=int, default=2, help="Ray actors encoding and scoring (default: 2)")
    p.set_defaults(run=run)


def _size(nbytes: float) -> str:
    """Sizes in the report's binary units (KiB ... TiB), so the demo's figures match its report."""
    from erpack.report.units import human_size

    return human_size(nbytes, digits=1)


def _sqnr(v) -> str:
    return "exact" if v is None else f"{v:.1f} dB"


def _parity_lines(s: dict) -> list[str]:
    """Split parity and the upper stack's speed."""
    bound = f" (bound L/(L-k) {s['compute_bound']:.2f}x)" if s["compute_bound"] else ""
    speed = (f"; upper alone {s['speedup_upper_vs_full']:.2f}x faster than the full model{bound}"
             if s["speedup_upper_vs_full"] else "")
    return [f"{s['model']} ({s['num_layers']} layers) split at k={s['layer']}: max |upper(lower(x)) - model(x)| "
            f"{s['parity_max_abs_diff']:.1e} on {s['tokens']} tokens of {s['documents']} documents "
            f"({'OK' if s['ok'] else 'FAIL'}, tolerance {s['tolerance']:.0e}){speed}"]


def _encode_lines(s: dict) -> list[str]:
    """The lossless cache."""
    e, sp = s["encode"], s["splits"]
    how = (f"encoded {e['encoded']} in {e['seconds']:.1f} s on {e['device']}"
           + (f", {e['already_in_cache']} already cached" if e["already_in_cache"] else "")
           if e["encoded"] else f"all {e['already_in_cache']} already cached: reused")
    return [f"{s['documents']} documents (train {sp['train']}, validation {sp['validation']}, test {sp['test']}), "
            f"{e['cache_tokens']} tokens -> {s['cache']} ({e['codec']}, {e['bytes_per_token']:.0f} bytes/token); "
            f"{how}; verify {'OK' if s['verified'] else 'FAILED'}"]


def _compress_lines(s: dict) -> list[str]:
    """The codec table and the int8z cache."""
    c = s["cache"]
    lines = [f"codecs on {s['sample_documents']} documents ({s['sample_tokens']} tokens); wrote {c['path']} "
             f"({c['documents']} documents, {_size(c['bytes'])}), verify {'OK' if s['verified'] else 'FAILED'}"]
    for r in s["rows"]:
        lines.append(f"    {r['preset']:<9} {r['bits_per_value']:6.2f} bits/value  x{r['ratio_vs_fp32']:5.1f} vs fp32  "
                     f"SQNR {_sqnr(r['sqnr_db']):>9}  token cosine {r['mean_token_cosine']:.5f}")
    return lines


def _train_lines(s: dict) -> list[str]:
    """The LoRA task model."""
    d = s["documents"]
    return [f"LoRA adapters + head on {d['train']} train documents, {s['epochs']} epoch(s), "
            f"{s['trainable_params'] / 1e6:.2f}M of {s['total_params'] / 1e6:.2f}M parameters trained: "
            f"test accuracy {s['accuracy']:.4f} ({d['test']} documents), validation {s['validation_accuracy']:.4f}"]


def _prune_lines(s: dict) -> list[str]:
    """The pruned task model."""
    dropped = f", layers dropped {s['layers_dropped']}" if s["layers_dropped"] else ""
    return [f"{100 * s['heads']:.0f}% heads + {100 * s['ffn']:.0f}% FFN: heads {s['heads_kept']}/{s['heads_total']}, "
            f"neurons {s['neurons_kept']}/{s['neurons_total']}{dropped}; upper stack {s['params_before'] / 1e6:.2f}M "
            f"-> {s['params_after'] / 1e6:.2f}M parameters; after {s['recovery_epochs']} LoRA recovery epoch(s) "
            f"test accuracy {s['accuracy']:.4f}"]


def _export_lines(s: dict) -> list[str]:
    """The ONNX graphs."""
    lines = [f"{s['output']} ({_size(s['bytes'])}): largest |ONNX - PyTorch| {s['parity_max_diff']:.1e} "
             f"(tolerance {s['tolerance']:.0e}: pass)"]
    for v in s["variants"]:
        a, t = v["agreement"], v["timing"]
        lines.append(f"    {v['variant']}: {v['path']} ({_size(v['bytes'])}, {v['size_ratio']:.1f}x smaller), "
                     f"max |diff| vs fp32 {a['max_diff']:.1e}"
                     + (f", argmax agrees {100 * a['argmax_agreement']:.1f}%" if a["argmax_agreement"] is not None
                        else "")
                     + f", batch {t['batch'][0]}x{t['batch'][1]} {t['variant_ms']:.1f} ms vs {t['fp32_ms']:.1f} ms")
    lines += [f"    note: {n}" for n in s["notes"]]
    return lines


def _predict_lines(s: dict) -> list[str]:
    """Served predictions."""
    g = s["graphs"]
    others = ", ".join(f"{k} {v['accuracy']:.4f}" for k, v in g.items() if k != "fp32")
    return [f"{s['documents']} test documents from the cache on {s['provider']}: accuracy {s['accuracy']:.4f} "
            f"({'=' if s['matches_pytorch'] else '!='} PyTorch's)" + (f"; {others}" if others else "")
            + f" -> {s['output']}"]


def _report_lines(s: dict) -> list[str]:
    """The storage-cost report."""
    f = s["files"]
    lines = [f"projected to {s['projected_documents']:,.0f} documents of {s['profile_mean_tokens']:.1f} tokens "
             f"-> {f['html']} (+ .md, .json)"]
    for r in s["rows"]:
        be = r["break_even_runs"]
        where = "cache" if r["kind"] == "cache" else "sample"
        lines.append(f"    {r['preset'] or r['codec']:<9} {where:<6} {r['bytes_per_token']:7.1f} bytes/token  SQNR {_sqnr(r['sqnr_db']):>9}  "
                     f"{_size(r['projected_bytes']):>9}  ${r['monthly_cost']:,.2f}/month  break-even "
                     + ("-" if be is None else f"{be:.2f} runs"))
    lines += [f"    note: {n}" for n in s["notes"]]
    return lines


STEP_LINES = {"parity": _parity_lines, "encode": _encode_lines, "compress": _compress_lines, "train": _train_lines, "prune": _prune_lines, "export": _export_lines, "predict": _predict_lines, "report": _report_lines}


def step_lines(name: str, s: dict) -> list[str]:
    """The lines `erpack demo` prints for one finished step (the first carries its wall time)."""
    return STEP_LINES[name](s)


def _services_lines(s: dict) -> list[str]:
    """Storage and Ray."""
    where = (f"S3 server {s['endpoint']} (moto, in memory), bucket {s['storage']}" if s["local_server"]
             else f"storage {s['storage']}")
    return [f"{where}; Ray {s['ray_version']} {s['ray_address']} ({s['ray_cpus']:.0f} CPUs), {s['workers']} workers"]


def _requests(s: dict) -> str:
    return "" if s["requests"] is None else f"; {s['requests']} S3 requests"


def _scale_encode_lines(s: dict) -> list[str]:
    """The cache on storage, written by Ray workers."""
    e, sp = s["encode"], s["splits"]
    return [f"{s['documents']} documents (train {sp['train']}, validation {sp['validation']}, test {sp['test']}) from "
            f"{s['corpus']} -> {s['cache']} ({s['codec']}, {e['cache_tokens']} tokens, {_size(e['cache_bytes'])}, "
            f"<= {s['shard_size']} documents/shard): {e['encoded']} encoded in {e['seconds']:.1f} s, starting "
            f"the workers included"
            + (f", {e['already_in_cache']} already cached" if e["already_in_cache"] else "") + _requests(s)]


def _verify_lines(s: dict) -> list[str]:
    """The cache read back from storage."""
    return [f"{s['cache']}: {s['documents']} documents in {s['shards']} shards, every record decoded: "
            f"{'OK' if s['ok'] else 'FAILED'} ({s['failures']} failures){_requests(s)}"]


def _scale_train_lines(s: dict) -> list[str]:
    """The task model trained from storage."""
    d = s["documents"]
    return [f"LoRA adapters + head from {s['cache']} (range reads, prefetch {s['prefetch']} batches) on {d['train']} "
            f"train documents, {s['epochs']} epoch(s) of {s['train_seconds_per_epoch']:.1f} s, "
            f"{s['read_wait_seconds']:.1f} s of it waiting on reads: test accuracy {s['accuracy']:.4f} ({d['test']} documents), "
            f"validation {s['validation_accuracy']:.4f}{_requests(s)}"]


def _scale_export_lines(s: dict) -> list[str]:
    """The ONNX graph."""
    return [f"{s['output']} ({_size(s['bytes'])}): largest |ONNX - PyTorch| {s['parity_max_diff']:.1e} on records "
            f"read from storage (tolerance {s['tolerance']:.0e}: pass){_requests(s)}"]


def _scale_predict_lines(s: dict) -> list[str]:
    """Predictions written by Ray workers, read back."""
    acc = "-" if s["accuracy"] is None else f"{s['accuracy']:.4f}"
    return [f"{s['predicted']} of {s['documents']} test documents scored by {s['workers']} Ray workers "
            f"({s['provider']}) -> {s['output']} ({s['parts']} Parquet parts); read back {s['read_back']}: accuracy "
            f"{acc} ({'=' if s['matches_pytorch'] else '!='} PyTorch's){_requests(s)}"]


SCALE_LINES = {"services": _services_lines, "encode": _scale_encode_lines, "verify": _verify_lines,
               "train": _scale_train_lines, "export": _scale_export_lines, "predict": _scale_predict_lines}


def _check_numbers(args) -> None:
    for name in ("documents", "epochs", "batch_size", "max_length", "workers"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise CLIError(f"--{name.replace('_', '-')} must be at least 1, got {v}")


def _printer(steps: tuple, lines: dict):
    """on_step: one line per finished step with its wall time, then its other lines."""
    def on_step(i: int, name: str, figures: dict) -> None:
        out = lines[name](figures)
        print(f"[{i}/{len(steps)}] {name:<8} {figures['seconds']:6.1f} s  {out[0]}")
        for line in out[1:]:
            print(line)
        sys.stdout.flush()

    return on_step


def _bars():
    from tqdm import tqdm

    return lambda *a, **kw: tqdm(*a, file=sys.stderr, disable=None, **kw)


def _scale_extra(local_server: bool) -> None:
    """CLIError naming the extra when a package --scale needs is missing."""
    import importlib.util

    needed = {"ray": "ray[data]", "s3fs": "s3fs", "pyarrow": "pyarrow"}
    if local_server:
        needed.update({"moto": "moto[server]", "werkzeug": "moto[server]"})
    missing = sorted({pkg for mod, pkg in needed.items() if importlib.util.find_spec(mod) is None})
    if missing:
        raise CLIError(f"--scale needs {', '.join(missing)} (not installed): pip install 'erpack[scale]'"
                       + (", or give --storage for a bucket of your own" if missing == ["moto[server]"] else ""))


def run_scale(args) -> int:
    """`erpack demo --scale`."""
    _scale_extra(local_server=not args.storage)
    from erpack.demo_scale import STEPS, ScaleConfig, run_scale_demo

    kw = dict(out=args.out, storage=args.storage, address=args.address, workers=args.workers, model=args.model,
              dataset=args.dataset, layer=args.layer, documents=args.documents, epochs=args.epochs,
              batch_size=args.batch_size, max_length=args.max_length, device=args.device)
    cfg = ScaleConfig.quick(**kw) if args.quick else ScaleConfig(**{k: v for k, v in kw.items() if v is not None})
    where = cfg.storage or "a local S3 server"
    print(f"erpack demo --scale: {cfg.model} on {cfg.dataset}, {cfg.documents} documents, {cfg.workers} Ray workers, "
          f"{where} -> {cfg.out}/", flush=True)
    r = run_scale_demo(cfg, progress=_bars(), on_step=_printer(STEPS, SCALE_LINES))
    print(f"done in {r['seconds']:.0f} s: {'OK' if r['ok'] else 'FAILED'}; local files in {r['out']}/, the cache and "
          f"predictions at {r['storage']} (demo-scale.json holds every figure)")
    if args.json:
        print(json.dumps(r, default=float))
    return 0 if r["ok"] else 1


def run(args) -> int:
    _check_numbers(args)
    if args.scale:
        return run_scale(args)
    if args.storage or args.address:
        raise CLIError("--storage and --address belong to --scale: add --scale (or drop them)")
    from erpack.demo import STEPS, DemoConfig, run_demo
    if not 0.0 <= args.prune < 1.0:
        raise CLIError(f"--prune must be in [0, 1), got {args.prune}")
    kw = dict(out=args.out, model=args.model, dataset=args.dataset, layer=args.layer, documents=args.documents,
              epochs=args.epochs, prune=args.prune, batch_size=args.batch_size, max_length=args.max_length,
              device=args.device)
    cfg = DemoConfig.quick(**kw) if args.quick else DemoConfig(**{k: v for k, v in kw.items() if v is not None})
    print(f"erpack demo: {cfg.model} on {cfg.dataset}, {cfg.documents} documents -> {cfg.out}/", flush=True)
    r = run_demo(cfg, progress=_bars(), on_step=_printer(STEPS, STEP_LINES))
    print(f"done in {r['seconds']:.0f} s: {'OK' if r['ok'] else 'FAILED'}; every file is in {r['out']}/ "
          "(demo.json holds every figure)")
    if args.json:
        print(json.dumps(r, default=float))
    return 0 if r["ok"] else 1
