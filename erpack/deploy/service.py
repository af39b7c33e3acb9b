"""`erpack serve`: bundles as an HTTP JSON service (FastAPI under uvicorn), without torch.

    app = create_app(Engine({"rt": "bundles/rt"}, cache="caches/rt"), Limits(), Batching())
    serve(app, host="127.0.0.1", port=8000)       # uvicorn; SIGTERM/SIGINT: finish requests in flight, stop

Endpoints: POST /v1/predict ({"texts": [...]}, {"words": [[...], ...]} or {"ids": [...]}, "model" or
"models", "text_ids", "add_to_cache"; the rows are PREDICT_DOC), GET /healthz (the process answers), /readyz (models loaded, worker running, not
shutting down), /metrics (Prometheus), /docs and /openapi.json (FastAPI's). Requests go through the
micro-batcher (erpack.deploy.batcher): a full queue answers 429 with Retry-After. Every error is JSON
{"error": message, "status": code} with a 4xx or 5xx status; a bad request never stops the service.
See docs/deploy.md.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from erpack import __version__
from erpack.corpus import Document
from erpack.deploy.batcher import Batcher, Closed, Job, Overloaded
from erpack.deploy.engine import Engine, UnknownIds, split_lowered
from erpack.errors import ErpackError, InputError
from erpack.words import check_words

PREDICT_DOC = """The answer: {"models": [...], "predictions": {MODEL: [row, ...]}, "truncated": [ids cut at the
cache's max_length] (texts), "added_to_cache": n (with add_to_cache)}, one row per text or id in request order.

- A classification row: {"id", "source": "text"|"cache", "predicted": LABEL, "probabilities": {LABEL: p}};
  a regression row has "score" instead.
- A bundle with exits (a task model trained with --early-exit) adds "layers": the upper layers the
  document ran before its exit stopped it (batch compaction; the threshold saved with the model).
- An ODE-step bundle (erpack export --steps S) adds "layers": S, the block evaluations its graph runs.
- A token-classification row: {"id", "source": "text", "words": [w, ...], "predicted": [a label per
  word; null for a word cut off at max_length], "truncated_words": n}. Send `texts` (split at
  whitespace into words) or `words`; `ids` are refused (a cached record holds no words: `erpack predict
  BUNDLE CACHE --labels WORD_LABELS` predicts cached ids given their words).
"""
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0, 30.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass
class Limits:
    """What one request may hold; beyond it a 4xx naming the limit."""

    max_request_bytes: int = 1 << 20
    max_items: int = 64  # texts or ids per request
    max_text_chars: int = 10000
    timeout_s: float = 30.0  # a request not answered by then gets 503


@dataclass
class Batching:
    max_batch: int = 64  # items (texts or ids) per batch
    max_wait_ms: float = 5.0
    max_queue: int = 64  # requests waiting; more are shed with 429
    retry_after_s: int = 1


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


class PredictRequest(BaseModel):
    """One of `texts`, `words` or `ids`; `model` or `models` (default: every model served)."""

    texts: list[str] | None = Field(None, description="texts to predict (tokenizer, lower graph, the cache's "
                                    "codec, then each model's upper graph); a token-classification model reads "
                                    "each text as its words, the text split at whitespace")
    words: list[list[str]] | None = Field(None, description="documents given as their words (each a list of "
                                          "whitespace-free strings; the text is the words joined by one space): "
                                          "what a token-classification model labels, one label per word")
    ids: list[str] | None = Field(None, description="ids of cached documents (the service's --cache)")
    text_ids: list[str] | None = Field(None, description="ids of the texts (default text-0, text-1, ...); needed "
                                       "to add them to the cache")
    model: str | None = Field(None, description="the task model (bundle name) to run")
    models: list[str] | None = Field(None, description="several task models: each record is decoded once and "
                                     "every model's head runs on it")
    add_to_cache: bool = Field(False, description="append the texts to the cache (ids it holds are left as they are)")


@dataclass
class Work:
    kind: str  # "ids" or "texts"
    items: list  # ids, or Documents
    models: list[str]
    add_to_cache: bool = False


class Metrics:
    def __init__(self, engine: Engine, batcher_depth):
        r = self.registry = CollectorRegistry()
        self.requests = Counter("erpack_requests", "HTTP requests answered, by path and status", ["path", "status"],
                                registry=r)
        self.latency = Histogram("erpack_request_seconds", "time from request to response, by path", ["path"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.batch_items = Histogram("erpack_batch_items", "texts or ids per batch run", buckets=SIZE_BUCKETS,
                                     registry=r)
        self.batch_requests = Histogram("erpack_batch_requests", "requests merged into one batch",
                                        buckets=SIZE_BUCKETS, registry=r)
        self.batch_seconds = Histogram("erpack_batch_seconds", "time to run one batch", buckets=LATENCY_BUCKETS,
                                       registry=r)
        self.queue_wait = Histogram("erpack_queue_wait_seconds", "time a request waited for its batch",
                                    buckets=LATENCY_BUCKETS, registry=r)
        self.shed = Counter("erpack_shed", "requests refused because the queue was full", registry=r)
        self.predictions = Counter("erpack_predictions", "prediction rows, by model and source",
                                   ["model", "source"], registry=r)
        r.register(_Live(engine, batcher_depth))
        Gauge("erpack_models", "task models served", registry=r).set(len(engine.names))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Live:
    """Figures read when /metrics is scraped: cache records decoded (a counter the engine keeps), queue depth."""

    def __init__(self, engine: Engine, depth):
        self.engine, self.depth = engine, depth

    def collect(self):
        yield CounterMetricFamily("erpack_cache_reads", "cache records read and decoded", value=self.engine.cache_reads)
        yield GaugeMetricFamily("erpack_queue_depth", "requests waiting for a batch", value=self.depth())


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> tuple[int, str]:
    errs = exc.errors()
    for e in errs:
        if e.get("type") == "json_invalid":
            return 400, f"malformed JSON: {e.get('ctx', {}).get('error', e.get('msg'))}"
    parts = []
    for e in errs[:5]:
        where = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
        parts.append(f"{where}: {e.get('msg')}")
    return 400, "invalid request: " + "; ".join(parts)


def _word_texts(words: list[list[str]]) -> list[str]:
    """The texts of documents given as words, each word checked (erpack.words.check_words)."""
    out = []
    for i, ws in enumerate(words):
        try:
            check_words(ws, None, None, f"words[{i}]")
        except InputError as exc:
            raise ApiError(400, str(exc)) from None
        out.append(" ".join(ws))
    return out


def check_request(req: PredictRequest, engine: Engine, limits: Limits) -> Work:
    """The request's work, or an ApiError naming what is wrong with it."""
    if sum(x is not None for x in (req.texts, req.words, req.ids)) != 1:
        raise ApiError(400, "give exactly one of `texts` (new text), `words` (new text as its words) or `ids` "
                       "(cached documents)")
    if req.words is not None:
        req = req.model_copy(update={"texts": _word_texts(req.words) if req.words else [], "words": None})
    if req.model is not None and req.models is not None:
        raise ApiError(400, "give `model` or `models`, not both")
    models = [req.model] if req.model is not None else list(req.models or engine.names)
    unknown = [m for m in models if m not in engine.runtimes]
    if unknown or not models:
        raise ApiError(404, f"unknown model {', '.join(map(repr, unknown)) or '(none named)'}; this service "
                       f"serves {', '.join(engine.names)}")
    models = list(dict.fromkeys(models))
    items = req.texts if req.texts is not None else req.ids
    what = "texts" if req.texts is not None else "ids"
    if not items:
        raise ApiError(400, f"`{what}` is empty: give at least one")
    if len(items) > limits.max_items:
        raise ApiError(413, f"too many items: {len(items)} {what}, at most {limits.max_items} per request")
    if req.ids is not None:
        if req.add_to_cache or req.text_ids is not None:
            raise ApiError(400, "`add_to_cache` and `text_ids` go with `texts`, not `ids`")
        if engine.reader is None:
            raise ApiError(400, "this service has no cache (start it with --cache URL): send `texts`, not `ids`")
        token = [m for m in models if engine.runtimes[m].token]
        if token:
            raise ApiError(400, f"{', '.join(token)}: a token-classification model labels words, and a cached "
                           "record holds no words; send `texts` or `words` instead of `ids` (or predict the cached "
                           "ids offline, given their words: `erpack predict BUNDLE CACHE --labels WORD_LABELS`)")
        return Work("ids", [str(i) for i in req.ids], models)
    for i, t in enumerate(req.texts):
        if not t.strip():
            raise ApiError(400, f"text {i} is empty: give non-empty text")
        if len(t) > limits.max_text_chars:
            raise ApiError(413, f"text {i} is {len(t)} characters long, at most {limits.max_text_chars}")
    ids = req.text_ids
    if ids is not None and (len(ids) != len(req.texts) or len(set(ids)) != len(ids)):
        raise ApiError(400, f"`text_ids` must give each of the {len(req.texts)} texts its own id")
    if req.add_to_cache and engine.cache is None:
        raise ApiError(400, "add_to_cache needs a cache: start the service with --cache URL")
    if req.add_to_cache and ids is None:
        raise ApiError(400, "add_to_cache needs `text_ids`: the ids the texts get in the cache")
    docs = [Document(ids[i] if ids else f"text-{i}", t) for i, t in enumerate(req.texts)]
    return Work("texts", docs, models, req.add_to_cache)


def run_batch(engine: Engine, metrics: Metrics, jobs: list[Job]) -> None:
    """What the batcher's worker runs: the id jobs merged (each record decoded once), the text jobs merged
    (one lower-graph pass); each job then gets its own rows."""
    now = time.perf_counter()
    for job in jobs:
        metrics.queue_wait.observe(now - job.queued_at)
    metrics.batch_items.observe(sum(j.size for j in jobs))
    metrics.batch_requests.observe(len(jobs))
    id_jobs = []
    for job in (j for j in jobs if j.payload.kind == "ids"):
        missing = engine.missing(job.payload.items)
        if missing:
            job.fail(UnknownIds(missing, engine.cache))
        else:
            id_jobs.append(job)
    if id_jobs:
        models = list(dict.fromkeys(m for j in id_jobs for m in j.payload.models))
        rows = engine.predict_ids([i for j in id_jobs for i in j.payload.items], models)
        start = 0
        for job in id_jobs:
            n = len(job.payload.items)
            _finish(job, metrics, {"predictions": {m: rows[m][start:start + n] for m in job.payload.models}})
            start += n
    text_jobs = [j for j in jobs if j.payload.kind == "texts"]
    if text_jobs:
        models = list(dict.fromkeys(m for j in text_jobs for m in j.payload.models))
        docs = [d for j in text_jobs for d in j.payload.items]
        out = engine.predict_texts(docs, models)
        lowered, start = out["lowered"], 0
        for job in text_jobs:
            n = len(job.payload.items)
            mine = lowered.cut[start:start + n]
            result = {"predictions": {m: out["predictions"][m][start:start + n] for m in job.payload.models},
                      "truncated": [d.id for d, c in zip(job.payload.items, mine) if c]}
            try:
                if job.payload.add_to_cache:
                    result["added_to_cache"] = engine.append(split_lowered(lowered, start, start + n,
                                                                           job.payload.items))
            except ErpackError as exc:
                job.fail(exc)
            else:
                _finish(job, metrics, result)
            start += n


def _finish(job: Job, metrics: Metrics, result: dict) -> None:
    for m in job.payload.models:
        metrics.predictions.labels(m, job.payload.kind).inc(len(job.payload.items))
    job.done(result)


class BodyLimit:
    """ASGI middleware: a request body past `limit` bytes is answered 413 before it is read whole, and
    every response is counted and timed (the metrics' requests and latency)."""

    def __init__(self, app, limit: int, metrics: Metrics, paths: set[str]):
        self.app, self.limit, self.metrics, self.paths = app, limit, metrics, paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        path = scope["path"] if scope["path"] in self.paths else "other"
        status = {"code": 500}

        async def counted_send(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            length = dict(scope.get("headers") or []).get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.limit:
                return await _error(413, f"request body of {int(length)} bytes, at most {self.limit}")(
                    scope, receive, counted_send)
            seen = 0

            async def limited_receive():
                nonlocal seen
                message = await receive()
                if message["type"] == "http.request":
                    seen += len(message.get("body", b""))
                    if seen > self.limit:
                        raise ApiError(413, f"request body past {self.limit} bytes")
                return message

            try:
                await self.app(scope, limited_receive, counted_send)
            except ApiError as exc:
                await _error(exc.status, exc.message)(scope, receive, counted_send)
        finally:
            self.metrics.requests.labels(path, str(status["code"])).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - t0)


def create_app(engine: Engine, limits: Limits | None = None, batching: Batching | None = None) -> FastAPI:
    """The ASGI app over a loaded Engine; its batcher starts with the app and stops (draining) with it."""
    limits, batching = limits or Limits(), batching or Batching()
    state = {"ready": False, "batcher": None}
    metrics = Metrics(engine, lambda: state["batcher"].depth if state["batcher"] else 0)

    @asynccontextmanager
    async def lifespan(app):
        engine.warm()
        b = Batcher(lambda jobs: run_batch(engine, metrics, jobs), batching.max_batch,
                    batching.max_wait_ms / 1000, batching.max_queue,
                    on_batch=lambda jobs, s: metrics.batch_seconds.observe(s))
        state["batcher"] = b.start()
        state["ready"] = True
        try:
            yield
        finally:
            state["ready"] = False
            await asyncio.get_running_loop().run_in_executor(None, b.close)
            engine.close()

    app = FastAPI(title="erpack serve", version=__version__, lifespan=lifespan,
                  description="Predictions of recycled task models (erpack bundles) from cached ids or new text.")
    app.state.engine, app.state.metrics, app.state.limits, app.state.batching = engine, metrics, limits, batching

    @app.exception_handler(ApiError)
    async def api_error(request, exc: ApiError):
        return _error(exc.status, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc: RequestValidationError):
        return _error(*_validation_message(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.post("/v1/predict", summary="predict texts or cached ids with one or several task models",
              description=PREDICT_DOC)
    async def predict(req: PredictRequest) -> dict:
        work = check_request(req, engine, limits)
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        def settle(setter, value):
            loop.call_soon_threadsafe(lambda: fut.done() or setter(value))

        job = Job(len(work.items), work, lambda r: settle(fut.set_result, r), lambda e: settle(fut.set_exception, e))
        batcher = state["batcher"]
        if batcher is None or not state["ready"]:
            raise ApiError(503, "the service is not ready", {"Retry-After": str(batching.retry_after_s)})
        try:
            batcher.submit(job)
        except Overloaded as exc:
            metrics.shed.inc()
            raise ApiError(429, f"overloaded: {exc}; retry later", {"Retry-After": str(batching.retry_after_s)}) from None
        except Closed as exc:
            raise ApiError(503, str(exc), {"Retry-After": str(batching.retry_after_s)}) from None
        try:
            result = await asyncio.wait_for(fut, limits.timeout_s)
        except TimeoutError:
            raise ApiError(503, f"no answer within {limits.timeout_s:g} s; retry later",
                           {"Retry-After": str(batching.retry_after_s)}) from None
        except UnknownIds as exc:
            raise ApiError(404, str(exc)) from None
        except InputError as exc:
            raise ApiError(400, str(exc)) from None
        except ErpackError as exc:
            raise ApiError(500, f"prediction failed: {exc}") from None
        return {"models": work.models, **result}

    @app.get("/healthz", summary="the process answers")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", summary="models loaded, the worker running, not shutting down")
    async def readyz():
        b = state["batcher"]
        if not (state["ready"] and b is not None and b.alive):
            return _error(503, "not ready")
        return {"status": "ready", "models": engine.names, "provider": engine.provider,
                "cache": str(engine.cache) if engine.cache is not None else None, "queue": b.depth}

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    paths = {"/v1/predict", "/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"}
    app.add_middleware(BodyLimit, limit=limits.max_request_bytes, metrics=metrics, paths=paths)
    return app


def server(app: FastAPI, host: str = "127.0.0.1", port: int = 8000, max_connections: int | None = 1024,
           graceful_s: float = 30, log_level: str = "warning", keep_alive_s: float = 75):
    """A uvicorn Server for the app: run() blocks until SIGINT/SIGTERM (in the main thread) or should_exit =
    True; it then stops accepting, finishes the requests in flight (up to graceful_s) and returns, where
    uvicorn's own Server would re-raise the signal and end the process before it could say what it did."""
    import uvicorn

    class Server(uvicorn.Server):
        signal = None  # the signal that stopped it

        @contextmanager
        def capture_signals(self):
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            old = {s: signal.signal(s, self.handle_exit) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for s, handler in old.items():
                    signal.signal(s, handler)

        def handle_exit(self, sig, frame):
            self.signal = signal.Signals(sig).name
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, limit_concurrency=max_connections,
                            timeout_graceful_shutdown=graceful_s, access_log=False,
                            timeout_keep_alive=keep_alive_s)
    return Server(config)
