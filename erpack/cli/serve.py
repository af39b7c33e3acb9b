"""`erpack serve`: bundles as an HTTP JSON service (erpack.deploy.service), without torch."""

from __future__ import annotations

from erpack.cli import CLIError
from erpack.cli.storage import add_storage_options, cache_where, storage_options
from erpack.deploy.bundle import VARIANTS
from erpack.deploy.engine import Engine, bundle_names


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve bundles over HTTP: POST /v1/predict (texts or cached ids), /healthz, /readyz, /metrics",
        description=(
            "An HTTP JSON service (FastAPI under uvicorn; the serve extra) over one or several bundles. POST "
            "/v1/predict takes {\"texts\": [...]} (tokenizer, lower graph, the cache's codec, upper graph) or "
            "{\"ids\": [...]} (records of --cache), with \"model\" or \"models\" naming bundles (default: all). "
            "Bundles served together must serve the same cache: each record is decoded once (and each text run once "
            "through the lower graph) and every named model's head runs on it. Requests are micro-batched: one "
            "worker thread runs up to --max-batch items gathered within --max-wait-ms; past --max-queue waiting "
            "requests the service answers 429 with Retry-After. Bad requests get a 4xx JSON {\"error\": ...}. "
            "GET /healthz, /readyz, /metrics (Prometheus), /docs (OpenAPI). SIGTERM or Ctrl-C stops accepting, "
            "finishes the requests in flight, and exits. CUDA is used when onnxruntime offers it."
        ),
        epilog=("Examples: erpack serve bundles/rt --port 8000\n"
                "          erpack serve sentiment=bundles/rt topic=bundles/topic --cache caches/rt\n"
                "          curl -s localhost:8000/v1/predict -H 'content-type: application/json' "
                "-d '{\"texts\": [\"a fine film\"]}'"),
    )
    p.add_argument("bundles", nargs="+", metavar="BUNDLE", help="bundle folder (erpack export --bundle), or "
                   "NAME=FOLDER; a model is named by its folder's last part unless named")
    p.add_argument("--cache", default=None, help="cache folder or URL the bundles serve: requests with `ids` read it, "
                   "and `add_to_cache` appends texts to it")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument("--variant", choices=VARIANTS, default="fp32", help="upper graph: fp32 (default) or int8")
    p.add_argument("--device", default="auto", help="auto (CUDA when onnxruntime offers it; default), cuda, or cpu")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads (default: its own)")
    p.add_argument("--exit-threshold", type=float, default=None, help="bundles with exits (a task model trained with "
                   "--early-exit): stop documents at this threshold of their rule instead of the saved one")
    p.add_argument("--no-early-exit", action="store_true", help="bundles with exits: run every upper layer (the "
                   "plain upper graph; rows without `layers`)")
    b = p.add_argument_group("batching and load shedding")
    b.add_argument("--max-batch", type=int, default=64, help="texts or ids run together at most (default: 64)")
    b.add_argument("--max-wait-ms", type=float, default=5.0, help="how long the first request of a batch waits "
                   "for others (default: 5)")
    b.add_argument("--max-queue", type=int, default=64, help="requests waiting at most; more are answered 429 with "
                   "Retry-After (default: 64)")
    b.add_argument("--max-connections", type=int, default=1024, help="connections and requests open at once; more "
                   "are answered 503 by uvicorn (default: 1024)")
    b.add_argument("--keep-alive", type=float, default=75.0, help="seconds an idle connection is kept open "
                   "(default: 75; longer than a client pool's idle time, so a reused connection is not closed under it)")
    b.add_argument("--timeout", type=float, default=30.0, help="seconds a request may wait for its answer before a "
                   "503 (default: 30)")
    lim = p.add_argument_group("request limits (4xx beyond them)")
    lim.add_argument("--max-request-bytes", type=int, default=1 << 20, help="request body (default: 1048576)")
    lim.add_argument("--max-items", type=int, default=64, help="texts or ids per request (default: 64)")
    lim.add_argument("--max-text-chars", type=int, default=10000, help="characters per text (default: 10000)")
    p.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn's log level (default: warning)")
    add_storage_options(p)
    p.set_defaults(run=run)


def run(args) -> int:
    # fastapi and uvicorn: the serve extra (a missing one is named with its extra by erpack.cli)
    from erpack.deploy.service import Batching, Limits, create_app, server

    for flag in ("max_batch", "max_queue", "max_items", "max_text_chars", "max_request_bytes", "max_connections"):
        if getattr(args, flag) < 1:
            raise CLIError(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}")
    if args.max_wait_ms < 0 or args.timeout <= 0:
        raise CLIError("--max-wait-ms must be at least 0 and --timeout above 0")
    engine = Engine(bundle_names(args.bundles), cache_where(args.cache, args), args.variant, args.device,
                    args.threads, storage_options(args), early_exit=not args.no_early_exit,
                    exit_threshold=args.exit_threshold)
    app = create_app(engine, Limits(args.max_request_bytes, args.max_items, args.max_text_chars, args.timeout),
                     Batching(args.max_batch, args.max_wait_ms, args.max_queue))
    srv = server(app, args.host, args.port, args.max_connections, log_level=args.log_level, keep_alive_s=args.keep_alive)
    print(f"serving      {', '.join(f'{n} ({rt.bundle.folder}, {args.variant})' for n, rt in engine.runtimes.items())}"
          f" on {engine.provider}" + (f" over the cache {args.cache}" if args.cache else ""))
    for note in engine.notes + engine.lead.notes:
        print(f"note: {note}")
    print(f"listening    http://{args.host}:{args.port} (POST /v1/predict; /docs, /healthz, /readyz, /metrics); "
          "Ctrl-C or SIGTERM stops it", flush=True)
    srv.run()  # uvicorn handles SIGINT/SIGTERM: stops accepting, finishes the requests in flight
    m = app.state.metrics
    done = {s.labels["status"]: int(s.value) for metric in m.requests.collect() for s in metric.samples
            if s.name.endswith("_total") and s.labels.get("path") == "/v1/predict"}
    print(f"stopped      by {srv.signal or 'request'}; /v1/predict answered {sum(done.values())} request(s): "
          + (", ".join(f"{n} with {k}" for k, n in sorted(done.items())) or "none"))
    return 0
