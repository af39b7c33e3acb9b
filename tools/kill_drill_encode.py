"""The distributed-encode kill drill: SIGKILL `erpack encode --engine ray` at random moments, rerun,
and check that nothing was lost, duplicated or changed.

    python tools/kill_drill_encode.py                          # 10 kills, real MiniLM k=3, 2000 reviews
    python tools/kill_drill_encode.py --kills 3 --documents 600 --output results.json

An uninterrupted run makes the reference cache. Then, round after round, a run into a fresh folder
is killed (SIGKILL of the driver, which takes its local Ray instance and workers with it) at a
random moment after it has committed at least one more shard, and started again, until it finishes
on its own; each finished cache must pass `erpack verify`, hold every id of the corpus once, and
equal the reference within one quantization step per record. Prints a human card and one JSON
document as the last line; exits 0 when every round passed and at least --kills kills happened.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1",
           PYTHONPATH=os.pathsep.join(p for p in [str(ROOT), os.environ.get("PYTHONPATH", "")] if p))
CODEC = "int8c+zstd:3"


def encode_cmd(args, corpus: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "erpack", "encode", str(corpus), "-o", str(out), "--model", args.model,
            "--layer", str(args.layer), "--codec", CODEC, "--shard-size", str(args.shard_size), "--engine", "ray",
            "--workers", str(args.workers), "--json"]


def committed_shards(out: Path) -> int:
    try:
        return len(json.loads((out / "manifest.json").read_text())["shards"])
    except (OSError, ValueError, KeyError):
        return 0


def attempt(cmd: list[str], out: Path, rng: random.Random, max_wait: float | None) -> dict:
    """One run: SIGKILLed at a random moment (0 to max_wait s) after it commits a shard more than the
    cache held, or left to finish (max_wait None: never killed). {"killed", ..., "seconds"}."""
    before = committed_shards(out)
    start = time.monotonic()
    log = out.parent / f"{out.name}.log"  # a file, not a pipe: a pipe nobody reads would stall the run
    with open(log, "w") as sink:
        proc = subprocess.Popen(cmd, env=ENV, stdout=sink, stderr=subprocess.STDOUT, text=True)
    while max_wait is not None and proc.poll() is None and committed_shards(out) <= before:
        time.sleep(0.05)
    if max_wait is not None:
        time.sleep(rng.uniform(0.0, max_wait))
    if max_wait is not None and proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return {"killed": True, "shards_at_kill": committed_shards(out), "seconds": time.monotonic() - start}
    proc.wait()
    output = log.read_text()
    if proc.returncode != 0:
        raise SystemExit(f"an encode run failed ({proc.returncode}):\n{output[-3000:]}")
    summary = json.loads([line for line in output.splitlines() if line.startswith("{")][-1])
    return {"killed": False, "shards": committed_shards(out), "seconds": time.monotonic() - start,
            "encoded": summary["encoded"], "already_in_cache": summary["already_in_cache"],
            "removed_leftovers": len(summary["removed_leftovers"])}


def check(out: Path, reference: Path, documents: int) -> dict:
    from erpack.cluster.parity import compare_caches

    verify = subprocess.run([sys.executable, "-m", "erpack", "verify", str(out)], env=ENV, capture_output=True,
                            text=True)
    parity = compare_caches(reference, out)
    manifest = json.loads((out / "manifest.json").read_text())
    leftovers = sorted({p.name for p in out.glob("shard-*")} - {s["name"] for s in manifest["shards"]})
    return {"verify_ok": verify.returncode == 0, "documents": parity.documents,
            "all_documents": parity.documents == documents, **parity.as_dict(),
            "within_one_step": parity.within_step(1.0), "unlisted_shards": leftovers}


def make_corpus(path: Path, n: int) -> Path:
    from erpack.assets import load_dataset

    rows = load_dataset("rotten_tomatoes", limit=n)
    path.write_text("".join(json.dumps({"id": r.id, "text": r.text}) + "\n" for r in rows))
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--documents", type=int, default=2000)
    p.add_argument("--model", default="minilm")
    p.add_argument("--layer", type=int, default=3)
    p.add_argument("--shard-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--max-wait", type=float, default=4.0, help="longest wait after a commit before the kill (s)")
    p.add_argument("--seed", type=int, default=19)
    p.add_argument("--work", type=Path, default=None, help="work folder (default: a temp folder)")
    p.add_argument("--output", type=Path, default=None, help="also write the JSON summary here")
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    work = args.work or Path(tempfile.mkdtemp(prefix="erpack-kill-drill-"))
    work.mkdir(parents=True, exist_ok=True)
    corpus = make_corpus(work / "corpus.jsonl", args.documents)
    started = time.monotonic()
    reference = work / "reference"
    whole = attempt(encode_cmd(args, corpus, reference), reference, rng, max_wait=None)
    rounds, kills = [], 0
    while kills < args.kills:
        out = work / f"round-{len(rounds)}"
        runs = []
        while True:
            run = attempt(encode_cmd(args, corpus, out), out, rng, args.max_wait)
            runs.append(run)
            kills += run["killed"]
            if not run["killed"]:
                break
        result = check(out, reference, args.documents)
        rounds.append({"kills": sum(r["killed"] for r in runs), "runs": runs, **result})
        print(f"round {len(rounds) - 1}: {rounds[-1]['kills']} kill(s), verify {'ok' if result['verify_ok'] else 'FAILED'}"
              f", {result['documents']} documents, max diff {result['max_abs_diff']:.3g} "
              f"({result['max_diff_in_steps']} steps), unlisted shards {len(result['unlisted_shards'])}", flush=True)
    passed = all(r["verify_ok"] and r["all_documents"] and r["within_one_step"] and not r["unlisted_shards"]
                 for r in rounds) and kills >= args.kills
    summary = {
        "command": " ".join([Path(sys.executable).name, "tools/kill_drill_encode.py", *(argv or sys.argv[1:])]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
        "documents": args.documents, "model": args.model, "layer": args.layer, "codec": CODEC,
        "shard_size": args.shard_size, "workers": args.workers, "kills": kills, "rounds": len(rounds),
        "lost": sum(args.documents - r["documents"] for r in rounds),
        "duplicated": sum(len(r["listed_twice"]) for r in rounds),
        "max_abs_diff": max(r["max_abs_diff"] for r in rounds),
        "max_diff_in_steps": max((r["max_diff_in_steps"] or 0.0) for r in rounds),
        "uninterrupted_seconds": whole["seconds"], "seconds": time.monotonic() - started,
        "passed": passed, "round_details": rounds,
    }
    print(f"kill drill: {kills} kills in {len(rounds)} rounds, lost {summary['lost']}, duplicated "
          f"{summary['duplicated']}, max diff {summary['max_abs_diff']:.3g} ({summary['max_diff_in_steps']:.3g} "
          f"steps): {'PASSED' if passed else 'FAILED'}")
    if args.output:
        args.output.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
