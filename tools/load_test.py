"""Load test of `erpack serve`: N concurrent clients on loopback for T seconds, each sending one request
after another (a closed loop); throughput, latency percentiles, errors and shed requests (429/503),
the server's memory before, at its peak and after, and whether it answers once the load stops.

    python tools/load_test.py --bundle BUNDLE --cache CACHE --texts CORPUS --clients 32 --seconds 60
    python tools/load_test.py --url http://127.0.0.1:8000 --server-pid PID --clients 256 --seconds 30
    ... --results NAME      # also keep the run in docs/results/deploy-serve.json as NAME and re-render
                            # the service section of docs/results/deploy.md from every kept run

Without --url it starts `erpack serve BUNDLE --cache CACHE` itself on a free loopback port (with
--serve-arg options passed through) and stops it with SIGTERM at the end. Requests: `texts` (new text,
the lower graph and the upper graph) drawn from --texts, or `ids` (cached records) drawn from the
cache's ids; --items per request. Bounded: at most 1,024 clients and 600 s, and each request has a
timeout. A client that is shed waits --backoff seconds before its next request. Prints a card, then one
JSON document as its last line.

Each client is one keep-alive HTTP/1.1 connection written with asyncio streams (a few lines below), not
an HTTP library: measured here, httpx's connection pool shared by 256 coroutines managed 84 requests/s
against /healthz where these connections manage 3,850, so with it the test measured the client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from erpack.runtime.timing import _cpu_model  # noqa: E402

RESULTS_JSON = ROOT / "docs" / "results" / "deploy-serve.json"
RESULTS_MD = ROOT / "docs" / "results" / "deploy.md"
BEGIN, END = "<!-- serve:begin -->", "<!-- serve:end -->"
MAX_CLIENTS, MAX_SECONDS = 1024, 600


def rss_mb(pid: int | None) -> float | None:
    """Resident memory of a process in MB (Linux /proc), None when unknown."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


def start_server(args) -> tuple[subprocess.Popen, str]:
    from erpack.cluster.s3local import free_port

    port = free_port()
    cmd = [sys.executable, "-m", "erpack", "serve", args.bundle, "--port", str(port)]
    cmd += ["--cache", args.cache] if args.cache else []
    for extra in args.serve_arg:
        cmd += extra.split()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    return proc, f"http://127.0.0.1:{port}"


class Conn:
    """One keep-alive HTTP/1.1 connection: request(method, path, body) -> (status, headers, body)."""

    def __init__(self, host: str, port: int):
        self.host, self.port, self.reader, self.writer = host, port, None, None

    async def request(self, method: str, path: str, body: dict | None = None, timeout: float = 60):
        return await asyncio.wait_for(self._request(method, path, body), timeout)

    async def _request(self, method, path, body):
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        data = json.dumps(body).encode() if body is not None else b""
        head = (f"{method} {path} HTTP/1.1\r\nhost: {self.host}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(data)}\r\n\r\n").encode()
        try:
            self.writer.write(head + data)
            await self.writer.drain()
            raw = await self.reader.readuntil(b"\r\n\r\n")
            lines = raw.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
            payload = await self.reader.readexactly(int(headers.get("content-length", 0)))
        except BaseException:
            self.close()
            raise
        if headers.get("connection", "").lower() == "close":
            self.close()
        return int(lines[0].split()[1]), headers, payload

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def wait_ready(conn: Conn, proc, limit: float = 180) -> None:
    deadline = time.time() + limit
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"erpack serve exited with {proc.returncode}:\n{proc.stdout.read()}")
        try:
            if (await conn.request("GET", "/readyz", timeout=5))[0] == 200:
                return
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            conn.close()
        await asyncio.sleep(0.2)
    raise SystemExit(f"{conn.host}:{conn.port} did not become ready within {limit:.0f} s")


def request_maker(args, ids: list[str], texts: list[str]):
    rng = random.Random(args.seed)

    def make() -> dict:
        if args.kind == "ids":
            return {"ids": rng.sample(ids, args.items)}
        return {"texts": rng.sample(texts, args.items)}
    return make


async def client_loop(host: str, port: int, deadline: float, make, stats: dict, args) -> None:
    conn = Conn(host, port)
    while time.perf_counter() < deadline and stats["sent"] < args.max_requests:
        stats["sent"] += 1
        t0 = time.perf_counter()
        body = b""
        try:
            code, _, body = await conn.request("POST", "/v1/predict", make(), args.timeout)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError) as exc:
            code = type(exc).__name__
        dt = time.perf_counter() - t0
        stats["codes"][str(code)] = stats["codes"].get(str(code), 0) + 1
        if code == 200:
            stats["ok"].append(dt)
        elif code in (429, 503):
            stats["shed"].append(dt)
            await asyncio.sleep(args.backoff)
        else:
            stats["errors"] += 1
            if len(stats["error_samples"]) < 5:
                stats["error_samples"].append(f"{code}: {body[:200].decode('utf-8', 'replace')}")
    conn.close()


async def sample_rss(pid, stop: asyncio.Event, peak: list[float]) -> None:
    while not stop.is_set():
        v = rss_mb(pid)
        if v is not None:
            peak.append(v)
        try:
            await asyncio.wait_for(stop.wait(), 0.5)
        except TimeoutError:
            pass


def histogram_quantiles(text: str, name: str, label: str = "", qs=(50, 99)) -> dict:
    """Quantiles of a Prometheus histogram as its buckets' upper bounds (ms): the server's own view."""
    buckets = []
    for line in text.splitlines():
        if line.startswith(name + "_bucket{") and label in line:
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(le), float(line.rsplit(" ", 1)[1])))
    if not buckets or buckets[-1][1] == 0:
        return {}
    total = buckets[-1][1]
    return {f"p{q}": next((round(le * 1000, 1) if le != float("inf") else "inf") for le, n in buckets
                          if n >= q / 100 * total) for q in qs}


def metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


async def run(args) -> dict:
    from urllib.parse import urlsplit

    proc, url = (None, args.url.rstrip("/")) if args.url else start_server(args)
    host, port = urlsplit(url).hostname, urlsplit(url).port
    pid = args.server_pid if args.url else proc.pid
    texts = [json.loads(line)["text"] for line in Path(args.texts).read_text().splitlines()] if args.texts else []
    conn = Conn(host, port)
    try:
        await wait_ready(conn, proc)
        ready = json.loads((await conn.request("GET", "/readyz"))[2])
        ids = []
        if args.kind == "ids":
            from erpack.store import CacheReader

            with CacheReader(args.cache) as r:
                ids = r.ids()
        elif not texts:
            raise SystemExit("--kind texts needs --texts CORPUS (JSONL with `text`)")
        make = request_maker(args, ids, texts)
        for _ in range(3):  # warm-up: the first batches' setup is not measured
            await conn.request("POST", "/v1/predict", make(), args.timeout)
        rss_before = rss_mb(pid)
        load_before = os.getloadavg()
        stats = {"sent": 0, "codes": {}, "ok": [], "shed": [], "errors": 0, "error_samples": []}
        stop, peak = asyncio.Event(), []
        sampler = asyncio.create_task(sample_rss(pid, stop, peak))
        t0 = time.perf_counter()
        deadline = t0 + args.seconds
        await asyncio.gather(*(client_loop(host, port, deadline, make, stats, args) for _ in range(args.clients)))
        elapsed = time.perf_counter() - t0
        stop.set()
        await sampler
        load_after = os.getloadavg()
        # recovery: once the load stops, the service answers a request and says it is ready
        await asyncio.sleep(1.0)
        t1 = time.perf_counter()
        conn = Conn(host, port)
        after = await conn.request("POST", "/v1/predict", make(), args.timeout)
        recovery = {"status": after[0], "seconds": round(time.perf_counter() - t1, 4),
                    "ready": (await conn.request("GET", "/readyz"))[0] == 200}
        rss_after = rss_mb(pid)
        text = (await conn.request("GET", "/metrics"))[2].decode()
        conn.close()
    finally:
        server_out = None
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                server_out = proc.communicate(timeout=60)[0]
            except subprocess.TimeoutExpired:
                proc.kill()
                server_out = proc.communicate()[0]
    ok = stats["ok"]
    batches = metric(text, "erpack_batch_items_count") or 0
    return {
        "time": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{_cpu_model()} ({os.cpu_count()} cores), Python {platform.python_version()}",
        "load_average_before": [round(x, 2) for x in load_before], "load_average_after": [round(x, 2) for x in load_after],
        "server": {"url": url, "self_started": proc is not None, "serve_args": args.serve_arg, "models": ready.get("models"),
                   "provider": ready.get("provider"), "exit_status": proc.returncode if proc is not None else None,
                   "last_lines": (server_out or "").strip().splitlines()[-2:]},
        "clients": args.clients, "seconds": round(elapsed, 2), "kind": args.kind, "items_per_request": args.items,
        "requests": stats["sent"], "ok": len(ok), "throughput_rps": round(len(ok) / elapsed, 2),
        "items_per_second": round(len(ok) * args.items / elapsed, 2),
        "latency_ms": {f"p{q}": round(percentile(ok, q) * 1000, 1) if ok else None for q in (50, 95, 99)}
        | {"max": round(max(ok) * 1000, 1) if ok else None},
        "shed": len(stats["shed"]), "shed_latency_ms_p99": round(percentile(stats["shed"], 99) * 1000, 1)
        if stats["shed"] else None,
        "errors": stats["errors"], "error_samples": stats["error_samples"], "status_codes": stats["codes"],
        "rss_mb": {"before": round(rss_before, 1) if rss_before else None,
                   "peak": round(max(peak), 1) if peak else None,
                   "after": round(rss_after, 1) if rss_after else None},
        "recovery": recovery,
        "server_metrics": {"batches": int(batches),
                           "mean_batch_items": round((metric(text, "erpack_batch_items_sum") or 0) / batches, 2)
                           if batches else None,
                           "mean_batch_requests": round((metric(text, "erpack_batch_requests_sum") or 0) / batches, 2)
                           if batches else None,
                           "shed_total": metric(text, "erpack_shed_total"),
                           "request_ms_at_most": histogram_quantiles(text, "erpack_request_seconds",
                                                                     'path="/v1/predict"'),
                           "queue_wait_ms_at_most": histogram_quantiles(text, "erpack_queue_wait_seconds"),
                           "batch_ms_at_most": histogram_quantiles(text, "erpack_batch_seconds")},
    }


def card(r: dict) -> str:
    lat = r["latency_ms"]
    return "\n".join([
        f"load test    {r['clients']} clients x {r['seconds']} s on {r['server']['url']} ({r['kind']}, "
        f"{r['items_per_request']} per request; {r['server']['provider']})",
        f"answered     {r['ok']} of {r['requests']} requests: {r['throughput_rps']} req/s; latency p50 {lat['p50']} ms, "
        f"p95 {lat['p95']} ms, p99 {lat['p99']} ms, max {lat['max']} ms",
        f"shed         {r['shed']} (429/503); errors {r['errors']}; status codes {r['status_codes']}",
        f"server RSS   {r['rss_mb']['before']} MB before, {r['rss_mb']['peak']} MB peak, {r['rss_mb']['after']} MB after",
        f"recovery     a request after the load: {r['recovery']['status']} in {r['recovery']['seconds']} s; ready "
        f"{r['recovery']['ready']}",
        f"batches      {r['server_metrics']['batches']}, mean {r['server_metrics']['mean_batch_items']} items "
        f"({r['server_metrics']['mean_batch_requests']} requests)",
        f"server view  request {r['server_metrics']['request_ms_at_most']} ms, queue wait "
        f"{r['server_metrics']['queue_wait_ms_at_most']} ms, batch {r['server_metrics']['batch_ms_at_most']} ms "
        "(bucket bounds)",
        f"machine      {r['machine']}; load average {r['load_average_before']} before, {r['load_average_after']} after",
    ])


def markdown(runs: dict) -> str:
    rows = ["| run | clients x seconds | requests | answered/s | p50 / p95 / p99 ms | shed (429/503) | errors | "
            "server's own p50 / p99 ms (bucket bound) | mean batch | server RSS before / peak / after MB | after the load | "
            "load average |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    commands = []
    for name, r in runs.items():
        lat, sv = r["latency_ms"], r["server_metrics"].get("request_ms_at_most", {})
        rows.append(f"| {name} | {r['clients']} x {r['seconds']:.0f} | {r['requests']:,} | {r['throughput_rps']} | "
                    f"{lat['p50']} / {lat['p95']} / {lat['p99']} | {r['shed']:,} | {r['errors']} | "
                    f"≤ {sv.get('p50')} / ≤ {sv.get('p99')} | {r['server_metrics']['mean_batch_items']} | "
                    f"{r['rss_mb']['before']} / {r['rss_mb']['peak']} / {r['rss_mb']['after']} | "
                    f"{r['recovery']['status']} in {r['recovery']['seconds']} s | {r['load_average_before'][0]} |")
        commands.append(f"    # {name}: {r['time']}, {r['machine']}\n    {r['command']}")
    return (f"{BEGIN}\n## The service under load: `erpack serve`\n\n"
            "`tools/load_test.py` starts `erpack serve BUNDLE --cache CACHE` on loopback and runs closed-loop clients "
            "(each sends its next request when the last is answered; a shed one waits 0.1 s) on the same machine: "
            "the clients, the server and, during these runs, other jobs shared its cores (the load average column "
            "is the machine's before the run; 2 means both cores busy), so a rerun minutes later can differ by a "
            "factor of two with the other jobs' load. Each request is one text of the corpus "
            "(tokenizer, lower graph, codec round trip, upper graph):\n\n"
            + "\n".join(commands) + "\n\n" + "\n".join(rows)
            + "\n\nLatency is over answered requests (200), from sending to the whole answer. Shed requests are "
              "answered at once with 429 and Retry-After when more than --max-queue requests wait for a batch, or "
              "503 past --max-connections open connections; `errors` are any other answer or a failed connection. "
              "`after the load` is a request sent one second after the clients stop. The server's own latency is "
              "the bucket bound of its /metrics histogram of /v1/predict at that quantile (shed answers, which take "
              "milliseconds, included). Each client is one keep-alive connection (see the tool's docstring for "
              "why not an HTTP library's pool). With 256 clients the 64-request queue is full all the time: "
              "the answered requests wait about 64 / throughput seconds, the rest are shed at once.\n" + f"{END}\n")


def write_results(name: str, result: dict) -> None:
    runs = json.loads(RESULTS_JSON.read_text())["runs"] if RESULTS_JSON.exists() else {}
    runs[name] = result
    RESULTS_JSON.write_text(json.dumps({"runs": runs}, indent=1) + "\n")
    text = RESULTS_MD.read_text()
    section = markdown(runs)
    if BEGIN in text:
        text = text[:text.index(BEGIN)] + section + text[text.index(END) + len(END) + 1:]
    else:
        text = text.rstrip("\n") + "\n" + section
    RESULTS_MD.write_text(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = ap.add_mutually_exclusive_group(required="--render" not in sys.argv)
    where.add_argument("--url", help="a running `erpack serve` (e.g. http://127.0.0.1:8000)")
    where.add_argument("--bundle", help="start `erpack serve BUNDLE` on a free loopback port (stopped at the end)")
    ap.add_argument("--cache", default=None, help="the cache the bundle serves (--cache of erpack serve; ids come from it)")
    ap.add_argument("--server-pid", type=int, default=None, help="with --url: the server's pid, to read its memory")
    ap.add_argument("--serve-arg", action="append", default=[], help="options passed to erpack serve (repeatable), "
                    "e.g. --serve-arg '--max-queue 64'")
    ap.add_argument("--texts", default=None, help="corpus JSONL with `text`: where texts are drawn from")
    ap.add_argument("--kind", choices=["texts", "ids"], default="texts")
    ap.add_argument("--items", type=int, default=1, help="texts or ids per request (default: 1)")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--max-requests", type=int, default=10_000_000, help="stop after this many requests")
    ap.add_argument("--timeout", type=float, default=60, help="seconds per request before it counts as an error")
    ap.add_argument("--backoff", type=float, default=0.1, help="seconds a shed client waits (default: 0.1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--output", default=None, help="write the JSON result here too")
    ap.add_argument("--render", action="store_true", help="only re-render the section of docs/results/deploy.md "
                    "from docs/results/deploy-serve.json")
    ap.add_argument("--results", default=None, metavar="NAME", help="keep the run as NAME in "
                    "docs/results/deploy-serve.json and re-render the service section of docs/results/deploy.md")
    args = ap.parse_args()
    if args.render:
        runs = json.loads(RESULTS_JSON.read_text())["runs"]
        text = RESULTS_MD.read_text()
        RESULTS_MD.write_text(text[:text.index(BEGIN)] + markdown(runs) + text[text.index(END) + len(END) + 1:])
        return 0
    if not 1 <= args.clients <= MAX_CLIENTS or not 0 < args.seconds <= MAX_SECONDS:
        ap.error(f"--clients must be 1..{MAX_CLIENTS} and --seconds 0..{MAX_SECONDS}")
    result = asyncio.run(run(args))
    names = {args.bundle: "BUNDLE", args.cache: "CACHE", args.texts: "CORPUS"}  # as the parity section names them
    result["command"] = "python tools/load_test.py " + " ".join(
        names.get(a) or (a if " " not in a else repr(a)) for a in sys.argv[1:] if a)
    print(card(result))
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=1) + "\n")
    if args.results:
        write_results(args.results, result)
    print(json.dumps(result))
    return 0 if result["errors"] == 0 and result["recovery"]["status"] == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
