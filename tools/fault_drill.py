"""The fault drill: kill erpack mid-write, flip bytes of a cache, feed it crafted records, and count
what was lost, what was read wrong, and how many tracebacks a user saw.

    python tools/fault_drill.py                     # the full drill (about 10-15 min on 2 CPU cores)
    python tools/fault_drill.py --quick             # a few of each (about 2 min), for a smoke run
    python tools/fault_drill.py --write-results     # also rewrite docs/results/fault-drill.{json,md}

Everything runs on the real MiniLM (k=3) and real Rotten Tomatoes reviews, through the `erpack`
command (kills, crafted records) or the library (byte flips, thousands of them). The drill passes
when: no kill lost or mixed anything, every flip was detected by `verify` and no reader returned
wrong activations, every crafted record was refused under a memory cap, and no traceback appeared.
It exits 0 then, 1 otherwise. docs/reliability.md explains what each part protects.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
ENV = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
CODEC = "int8c+zstd:3"


@dataclass
class Part:
    """One row of the fault table: what was tried, how often, and what happened."""

    name: str
    tried: str
    count: int = 0
    detected: int = 0
    lost_or_mixed: int = 0
    wrong_reads: int = 0
    tracebacks: int = 0
    notes: list[str] = field(default_factory=list)
    must_detect_all: bool = True  # every fault of this part must be detected (count == detected)

    @property
    def ok(self) -> bool:
        missed = self.must_detect_all and self.detected != self.count
        return not missed and self.lost_or_mixed == 0 and self.wrong_reads == 0 and self.tracebacks == 0

    def as_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def erpack(*args: str) -> list[str]:
    return [sys.executable, "-m", "erpack", *args]


def run(cmd: list[str], part: Part | None = None, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, env=ENV, capture_output=True, text=True, cwd=ROOT)
    if part is not None and "Traceback" in out.stderr:
        part.tracebacks += 1
        part.notes.append(f"traceback from {' '.join(cmd[3:5])}: {out.stderr.strip().splitlines()[-1]}")
    if check and out.returncode != 0:
        raise SystemExit(f"fault drill: {' '.join(cmd)} failed ({out.returncode}):\n{out.stderr}")
    return out


def kill_at(cmd: list[str], seconds: float, part: Part) -> bool:
    """Start cmd, SIGKILL it after `seconds`; True when the kill landed (the process was still running)."""
    proc = subprocess.Popen(cmd, env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(seconds)
    landed = proc.poll() is None
    if landed:
        proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    if "Traceback" in (err or ""):
        part.tracebacks += 1
    return landed


def timed(cmd: list[str], part: Part) -> float:
    t0 = time.perf_counter()
    run(cmd, part)
    return time.perf_counter() - t0


def folder_digest(folder: Path) -> str:
    """sha256 over every file's relative name and bytes: equal digests mean equal folders."""
    sha = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        sha.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return sha.hexdigest()


# ---- the material ----------------------------------------------------------------------------
def make_corpus(work: Path, n: int) -> tuple[Path, Path]:
    from erpack.assets import load_dataset

    records = load_dataset("rotten_tomatoes", limit=n)
    corpus, labels = work / "corpus.jsonl", work / "labels.jsonl"
    corpus.write_text("".join(json.dumps({"id": r.id, "text": r.text}) + "\n" for r in records))
    labels.write_text("".join(json.dumps({"id": r.id, "label": r.label, "split": r.split}) + "\n" for r in records))
    return corpus, labels


def encode_cmd(corpus: Path, out: Path) -> list[str]:
    return erpack("encode", str(corpus), "-o", str(out), "--model", "minilm", "--layer", "3", "--codec", CODEC,
                  "--shard-size", "8", "--batch-size", "4")


def same_records(cache: Path, reference: Path) -> bool:
    """Every record the cache serves is byte-for-byte the reference's record of that id."""
    from erpack.store import CacheReader

    with CacheReader(cache) as got, CacheReader(reference) as want:
        for doc_id in got.ids():
            (a, sa), (b, sb) = got.get_encoded(doc_id), want.get_encoded(doc_id)
            if sa != sb or bytes(a) != bytes(b):
                return False
    return True


def verified(folder: Path, part: Part) -> bool:
    return run(erpack("verify", str(folder)), part, check=False).returncode == 0


# ---- 1. kills --------------------------------------------------------------------------------
def drill_encode_kills(work: Path, corpus: Path, reference: Path, kills: int, rng: random.Random) -> Part:
    part = Part("SIGKILL during `erpack encode`", "kill at a random moment, check the cache, rerun to resume")
    full = timed(encode_cmd(corpus, work / "encode-timing"), part)
    target = work / "encode-killed"
    while part.count < kills:
        if kill_at(encode_cmd(corpus, target), rng.uniform(0.3, 1.0) * full, part):
            part.count += 1
            if (target / "manifest.json").exists():
                if not verified(target, part) or not same_records(target, reference):
                    part.lost_or_mixed += 1
                    part.notes.append(f"kill {part.count}: the cache left behind does not verify or differs")
        else:  # the run finished first: it must equal the reference; start over for more kills
            if not (verified(target, part) and same_records(target, reference)):
                part.lost_or_mixed += 1
            shutil.rmtree(target)
    run(encode_cmd(corpus, target), part)  # resume to the end
    from erpack.store import CacheReader

    with CacheReader(target) as a, CacheReader(reference) as b:
        if a.ids() != b.ids() or not same_records(target, reference) or not verified(target, part):
            part.lost_or_mixed += 1
            part.notes.append("the resumed cache differs from an uninterrupted run")
    part.detected = part.count
    return part


def drill_compress_kills(work: Path, reference: Path, kills: int, rng: random.Random) -> Part:
    part = Part("SIGKILL during `erpack compress --out`", "kill while re-encoding a cache, check what is left, rerun")

    def cmd(out: Path) -> list[str]:
        return erpack("compress", str(reference), "--codec", "int4z", "--out", str(out))

    whole = work / "compress-whole"
    full = timed(cmd(whole), part)
    target = work / "compress-killed"
    while part.count < kills:
        if kill_at(cmd(target), rng.uniform(0.3, 1.0) * full, part):
            part.count += 1
            if (target / "manifest.json").exists() and not verified(target, part):
                part.lost_or_mixed += 1
                part.notes.append(f"kill {part.count}: the output left behind does not verify")
        if target.exists():
            shutil.rmtree(target)
    out = run(cmd(target), part, check=False)
    if out.returncode != 0 or not (verified(target, part) and same_records(target, whole)):
        part.lost_or_mixed += 1
        part.notes.append("a rerun after the kills did not give the uninterrupted output")
    part.detected = part.count
    return part


def model_state(folder: Path, old: Path, new: Path, part: Part) -> str | None:
    """"old" (byte for byte the old model), "new" (loads with every checksum verified, and holds the
    weights and seed of the new run: its record also names its own output folder and timings), or None."""
    if not folder.is_dir():
        return None
    if folder_digest(folder) == folder_digest(old):
        return "old"
    if run(erpack("inspect", str(folder)), part, check=False).returncode != 0:
        return None
    weights = (folder / "model.safetensors").read_bytes() == (new / "model.safetensors").read_bytes()
    seed = json.loads((folder / "erpack_task.json").read_text())["training"]["config"]["seed"]
    return "new" if weights and seed == 1 else None


def drill_train_kills(work: Path, reference: Path, labels: Path, kills: int, rng: random.Random) -> Part:
    part = Part("SIGKILL during `erpack train -o EXISTING --overwrite`",
                "kill while a new model replaces an old one; the folder must be the old or the new model")

    def cmd(out: Path, seed: int, *extra: str) -> list[str]:
        return erpack("train", str(reference), "--labels", str(labels), "--mode", "head", "--epochs", "1",
                      "--seed", str(seed), "-o", str(out), *extra)

    old, new = work / "model-old", work / "model-new"
    run(cmd(old, 0), part)
    full = timed(cmd(new, 1), part)
    target = work / "model-killed"
    shutil.copytree(old, target)
    while part.count < kills:
        if kill_at(cmd(target, 1, "--overwrite"), rng.uniform(0.3, 1.0) * full, part):
            part.count += 1
        state = model_state(target, old, new, part)
        if state is None:
            part.lost_or_mixed += 1
            part.notes.append(f"kill {part.count}: the folder is neither the old model nor the new one")
        if state != "old":
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(old, target)
    part.detected = part.count
    return part


# ---- 2. byte flips ---------------------------------------------------------------------------
def read_everything(cache: Path) -> dict[str, bytes]:
    """Every document decoded, as bytes; raises what a reader raises."""
    from erpack.store import CacheReader

    with CacheReader(cache) as reader:
        out = {d: reader.get(d).tobytes() for d in reader.ids()}
        ids = reader.ids()
        for i in range(0, len(ids), 8):
            hidden, mask = reader.get_batch(ids[i : i + 8])
            for j, d in enumerate(ids[i : i + 8]):
                if hidden[j, : int(mask[j].sum())].tobytes() != out[d]:
                    raise AssertionError(f"get_batch and get disagree on {d}")
    return out


def flip_trials(part: Part, cache: Path, file: Path, positions, rng: random.Random, truth: dict) -> None:
    """Flip one byte of `file` at each position (a random non-zero XOR), try every reader and verify."""
    from erpack.errors import ErpackError
    from erpack.store import verify_cache

    original = file.read_bytes()
    for pos in positions:
        damaged = bytearray(original)
        damaged[pos] ^= rng.randrange(1, 256)
        file.write_bytes(bytes(damaged))
        part.count += 1
        try:
            refused = False
            try:
                got = read_everything(cache)
                if got != truth:
                    part.wrong_reads += 1
                    part.notes.append(f"{file.name} byte {pos}: a reader returned wrong activations")
            except ErpackError:
                refused = True
            try:
                report = verify_cache(cache)
                flagged = not report.ok
            except ErpackError:
                flagged = True
            if flagged:
                part.detected += 1
            elif not refused:
                part.notes.append(f"{file.name} byte {pos}: neither verify nor the readers noticed")
        except Exception as exc:  # noqa: BLE001 - a crash here is what the drill counts
            part.tracebacks += 1
            part.notes.append(f"{file.name} byte {pos}: {type(exc).__name__}: {exc}")
        finally:
            file.write_bytes(original)


def drill_manifest_flips(work: Path, reference: Path, rng: random.Random) -> Part:
    part = Part("every byte of manifest.json flipped", "one byte changed at a time; readers and verify run")
    cache = work / "flip-manifest"
    shutil.copytree(reference, cache)
    truth = read_everything(cache)
    manifest = cache / "manifest.json"
    flip_trials(part, cache, manifest, range(manifest.stat().st_size), rng, truth)
    return part


def drill_shard_flips(work: Path, reference: Path, flips: int, rng: random.Random) -> Part:
    part = Part("bytes of shard files flipped", "random bytes of random shards; readers and verify run")
    cache = work / "flip-shards"
    shutil.copytree(reference, cache)
    truth = read_everything(cache)
    shards = sorted(cache.glob("shard-*"))
    for k in range(flips):
        shard = shards[k % len(shards)]
        flip_trials(part, cache, shard, [rng.randrange(shard.stat().st_size)], rng, truth)
    return part


# ---- 3. crafted records ----------------------------------------------------------------------


CRAFT_CHILD = """
import resource, sys
cap = int(sys.argv[2]) << 20
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
from erpack.errors import ErpackError
from erpack.store import CacheReader, verify_cache
outcomes = []
try:
    with CacheReader(sys.argv[1]) as r:
        bomb = r.ids()[-1]
        for read in (lambda: r.get(bomb), lambda: r.get_batch(r.ids()), lambda: list(r)):
            try:
                read()
                outcomes.append("read")
            except ErpackError:
                outcomes.append("refused")
except ErpackError:
    outcomes.append("refused at open")
outcomes.append("verify flagged" if not verify_cache(sys.argv[1]).ok else "verify passed")
print(",".join(outcomes))
"""


def crafted_cases(reference: Path) -> dict[str, tuple[bytes, int, int]]:
    """name: (payload, claimed tokens, claimed hidden). Payloads are real records of the reference
    cache (or a zstd frame that states no size), so every checksum of the crafted cache is valid."""
    import zstandard

    from erpack.store import CacheReader

    with CacheReader(reference) as r:
        hidden, max_length = r.hidden_size, r.meta["max_length"]
        doc = r.ids()[0]
        payload, (tokens, _) = r.get_encoded(doc)
        payload = bytes(payload)
    no_size = zstandard.ZstdCompressor(write_content_size=False).compress(bytes(hidden * 500_000))
    return {
        "T = 2^31-1": (payload, 2**31 - 1, hidden),
        "T = 5,000,000": (payload, 5_000_000, hidden),
        "T = max_length + 1": (payload, max_length + 1, hidden),
        "H = 2^31-1": (payload, tokens, 2**31 - 1),
        "H = hidden - 1": (payload, tokens, hidden - 1),
        "T claimed from a real record, 2x its tokens": (payload, min(2 * tokens, max_length), hidden),
        "zstd frame without a size, 190 MB of zeros claimed as 500,000 tokens": (no_size, 500_000, hidden),
    }


def drill_crafted_records(work: Path, reference: Path) -> Part:
    part = Part("crafted records with valid checksums",
                "a record claiming a huge or wrong T or H (every crc32, sha256 and the manifest checksum valid): "
                "get, get_batch, iteration and verify in a process capped at 2 GiB of address space")
    sys.path.insert(0, str(ROOT))
    from erpack.store import CacheReader
    from tests.store.crafted import write_cache  # the store's own ShardBuilder and manifest writer

    with CacheReader(reference) as r:
        meta, codec = r.meta, r.manifest["codec"]
        honest = [(d, bytes(r.get_encoded(d)[0]), *r.get_encoded(d)[1]) for d in r.ids()[:3]]
    for name, (payload, tokens, hidden) in crafted_cases(reference).items():
        folder = write_cache(work / f"crafted-{part.count}", meta, codec,
                             [*honest, ("crafted", payload, tokens, hidden)])
        out = subprocess.run([sys.executable, "-c", CRAFT_CHILD, str(folder), "2048"], env=ENV, cwd=ROOT,
                             capture_output=True, text=True)
        part.count += 1
        outcomes = out.stdout.strip().split(",") if out.returncode == 0 else []
        if "Traceback" in out.stderr or out.returncode != 0:
            part.tracebacks += 1
            part.notes.append(f"{name}: exit {out.returncode}, {out.stderr.strip().splitlines()[-1:]}")
        elif "read" in outcomes:
            part.wrong_reads += 1
            part.notes.append(f"{name}: a reader returned data ({outcomes})")
        elif outcomes[-1] == "verify flagged":
            part.detected += 1
        else:
            part.notes.append(f"{name}: {outcomes}")
    return part


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    flags = Path("/proc/cpuinfo").read_text()
    isa = "AVX-512" if "avx512f" in flags else ("AVX2" if "avx2" in flags else "no AVX2")
    return f"{cpu}, {isa}, {os.cpu_count()} cores, Python {platform.python_version()}"


def render(result: dict) -> str:
    """docs/results/fault-drill.md from the drill's JSON."""
    lines = [
        "# Fault drill",
        "",
        f"Generated by `{result['command']}` on {result['date']} at commit {result.get('commit')} ({result['machine']}); "
        f"{'passed' if result['ok'] else 'FAILED'}. Do not edit: rerun the command.",
        "",
        "| fault | what was done | times | detected | lost or mixed | wrong reads | tracebacks |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for p in result["parts"]:
        lines.append(f"| {p['name']} | {p['tried']} | {p['count']} | {p['detected']} | {p['lost_or_mixed']} | "
                     f"{p['wrong_reads']} | {p['tracebacks']} |")
    notes = [f"- {p['name']}: {n}" for p in result["parts"] for n in p["notes"][:10]]
    if notes:
        lines += ["", "## Notes", "", *notes]
    return "\n".join(lines) + "\n"


def drill(work: Path, quick: bool, seed: int, say) -> list[Part]:
    rng = random.Random(seed)
    kills = (2, 2, 2) if quick else (20, 15, 15)
    corpus, labels = make_corpus(work, 24 if quick else 64)
    reference = work / "reference"
    say("encoding the reference cache")
    run(encode_cmd(corpus, reference))
    steps = [
        ("kills during encode", lambda: drill_encode_kills(work, corpus, reference, kills[0], rng)),
        ("kills during compress", lambda: drill_compress_kills(work, reference, kills[1], rng)),
        ("kills during train", lambda: drill_train_kills(work, reference, labels, kills[2], rng)),
        ("manifest flips", lambda: drill_manifest_flips(work, reference, rng)),
        ("shard flips", lambda: drill_shard_flips(work, reference, 100 if quick else 2000, rng)),
        ("crafted records", lambda: drill_crafted_records(work, reference)),
    ]
    parts = []
    for label, step in steps:
        t0 = time.perf_counter()
        parts.append(step())
        p = parts[-1]
        say(f"{label}: {p.count} tried, {p.detected} detected, {p.lost_or_mixed} lost or mixed, "
            f"{p.wrong_reads} wrong reads, {p.tracebacks} tracebacks ({time.perf_counter() - t0:.0f} s)")
    return parts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--quick", action="store_true", help="a few of each fault (a smoke run, about 2 min)")
    ap.add_argument("--work", type=Path, help="work folder (default: a temporary one, removed after)")
    ap.add_argument("--seed", type=int, default=17, help="seed of the kill times and flip positions")
    ap.add_argument("--write-results", action="store_true", help="rewrite docs/results/fault-drill.{json,md}")
    ap.add_argument("--json", action="store_true", help="print the result as one JSON document on the last line")
    args = ap.parse_args(argv)

    def say(msg: str) -> None:
        print(f"fault drill: {msg}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="erpack-drill-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        parts = drill(work, args.quick, args.seed, say)
    command = "python tools/fault_drill.py" + (" --quick" if args.quick else "") + (
        f" --seed {args.seed}" if args.seed != 17 else "")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    result = {"command": command, "date": time.strftime("%Y-%m-%d"), "commit": commit or None, "machine": machine(),
              "ok": all(p.ok for p in parts), "parts": [p.as_dict() for p in parts]}
    if args.write_results:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "fault-drill.json").write_text(json.dumps(result, indent=2) + "\n")
        (RESULTS / "fault-drill.md").write_text(render(result))
    print(render(result))
    if args.json:
        print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
