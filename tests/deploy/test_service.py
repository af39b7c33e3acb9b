"""`erpack serve` under uvicorn on loopback (a real server in a thread, a real HTTP client): predictions
equal the bundle runtime's, bad requests get a 4xx naming the problem and the service keeps serving, a
burst past a tiny queue is shed with 429 and the service recovers, metrics and readiness."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

httpx = pytest.importorskip("httpx", reason="the `test` extra installs httpx")
pytest.importorskip("fastapi", reason="the `serve` extra installs fastapi and uvicorn")

from erpack.cluster.s3local import free_port  # noqa: E402
from erpack.deploy import BundleRuntime  # noqa: E402
from erpack.deploy.engine import Engine, bundle_names  # noqa: E402
from erpack.deploy.service import Batching, Limits, create_app, server  # noqa: E402


class Running:
    """An app served by uvicorn in a thread on a free loopback port; stop() shuts it down as SIGTERM does."""

    def __init__(self, app):
        self.app = app
        self.port = free_port()
        self.server = server(app, "127.0.0.1", self.port, graceful_s=10)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 60
        while not self.server.started:
            assert self.thread.is_alive() and time.time() < deadline, "the server did not start"
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.server.should_exit = True
        self.thread.join(30)
        assert not self.thread.is_alive()


def _close(a: dict, b: dict, tol: float = 1e-5) -> bool:
    """Rows equal but for probabilities within tol (a batch shared with other requests pads differently)."""
    if set(a) != set(b) or any(a[k] != b[k] for k in a if k != "probabilities"):
        return False
    return all(abs(a["probabilities"][k] - b["probabilities"][k]) <= tol for k in a["probabilities"])


@pytest.fixture(scope="module")
def other(tiny, tmp_path_factory):
    """A second task model over the same cache (another random head), as a bundle."""
    from erpack.deploy.build import write_bundle
    from tests.export.conftest import make_task_model

    root = tmp_path_factory.mktemp("other")
    make_task_model(tiny["folder"], tiny["cache"], seed=2).save(root / "task")
    write_bundle(root / "task", root / "bundle", model=str(tiny["folder"]), quantize=False)
    return root / "bundle"


@pytest.fixture(scope="module")
def service(bundle, other, tiny):
    engine = Engine({"rt": str(bundle[0]), "twin": str(other)}, cache=str(tiny["cache"]), device="cpu")
    running = Running(create_app(engine, Limits(max_request_bytes=20000, max_items=8, max_text_chars=200),
                                 Batching(max_batch=16, max_wait_ms=2, max_queue=32)))
    with httpx.Client(base_url=running.url, timeout=30) as client:
        yield running, client
    running.stop()


def test_predictions_equal_the_runtime(service, bundle, other, tiny):
    _, client = service
    rt = BundleRuntime(bundle[0], device="cpu")
    ids = [r["id"] for r in tiny["rows"][:6]]
    got = client.post("/v1/predict", json={"ids": ids, "model": "rt"})
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["models"] == ["rt"]
    want = rt.predict_ids(tiny["cache"], ids).rows
    assert all(_close(a, b) for a, b in zip(body["predictions"]["rt"], want, strict=True))
    texts = [r["text"] for r in tiny["rows"][:5]] + [" ".join(["w3"] * 60)]
    got = client.post("/v1/predict", json={"texts": texts, "text_ids": [f"t{i}" for i in range(6)]}).json()
    want = rt.predict_texts(texts, ids=[f"t{i}" for i in range(6)])
    assert got["models"] == ["rt", "twin"] and got["truncated"] == want.truncated == ["t5"]
    assert all(_close(a, b) for a, b in zip(got["predictions"]["rt"], want.rows, strict=True))
    want = BundleRuntime(other, device="cpu").predict_texts(texts, ids=[f"t{i}" for i in range(6)]).rows
    assert all(_close(a, b) for a, b in zip(got["predictions"]["twin"], want, strict=True))
    assert got["predictions"]["twin"] != got["predictions"]["rt"]  # another head, its own predictions


def test_several_models_decode_each_record_once(service, bundle, other, tiny):
    running, client = service
    engine = running.app.state.engine
    ids = [r["id"] for r in tiny["rows"][6:10]]
    before = engine.cache_reads
    got = client.post("/v1/predict", json={"ids": ids + ids[:1], "models": ["rt", "twin"]}).json()
    assert engine.cache_reads - before == len(ids)  # 4 records decoded for 2 models and a repeated id
    for name, folder in (("rt", bundle[0]), ("twin", other)):
        want = BundleRuntime(folder, device="cpu").predict_ids(tiny["cache"], ids).rows
        assert all(_close(a, b) for a, b in zip(got["predictions"][name], want + want[:1], strict=True))


@pytest.mark.parametrize("body, status, says", [
    (b"{not json", 400, "malformed JSON"),
    (b'{"ids": ["d000", "zz-missing"]}', 404, "zz-missing"),
    (b'{"ids": ["d000"], "model": "nope"}', 404, "unknown model 'nope'"),
    (b'{"texts": ["w1", "  "]}', 400, "text 1 is empty"),
    (b'{"texts": ["' + b"w1 " * 100 + b'"]}', 413, "text 0 is 300 characters long, at most 200"),
    (b'{"texts": [' + b",".join([b'"w1"'] * 9) + b"]}", 413, "too many items: 9 texts, at most 8"),
    (b'{"texts": [3]}', 400, "texts.0: Input should be a valid string"),
    (b'{"texts": ["w1"], "ids": ["d000"]}', 400, "exactly one of"),
    (b'{"texts": []}', 400, "`texts` is empty"),
    (b'{"texts": ["w1"], "add_to_cache": true}', 400, "needs `text_ids`"),
    (b'{"texts": ["' + b"w" * 30000 + b'"]}', 413, "at most 20000"),
])
def test_a_bad_request_gets_a_4xx_naming_it_and_the_service_keeps_serving(service, body, status, says):
    _, client = service
    got = client.post("/v1/predict", content=body, headers={"content-type": "application/json"})
    assert got.status_code == status, got.text
    assert says in got.json()["error"] and got.json()["status"] == status
    assert client.post("/v1/predict", json={"texts": ["w1 w2"]}).status_code == 200


def test_unknown_paths_and_methods_answer_json(service):
    _, client = service
    assert client.get("/v2/nothing").json()["status"] == 404
    assert client.get("/v1/predict").status_code == 405


def test_health_readiness_metrics_and_openapi(service):
    _, client = service
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["models"] == ["rt", "twin"] and ready["provider"]
    client.post("/v1/predict", json={"ids": ["d001"]})
    text = client.get("/metrics").text
    for line in ('erpack_requests_total{path="/v1/predict",status="200"}', "erpack_request_seconds_bucket",
                 "erpack_batch_items_bucket", "erpack_batch_requests_count", "erpack_cache_reads_total",
                 "erpack_queue_depth", "erpack_shed_total", 'erpack_predictions_total{model="rt",source="ids"}'):
        assert line in text, line
    spec = client.get("/openapi.json").json()
    assert "/v1/predict" in spec["paths"] and client.get("/docs").status_code == 200


def test_texts_added_to_the_cache_are_then_served_by_id(bundle, tiny, tmp_path):
    import shutil

    cache = tmp_path / "cache"
    shutil.copytree(tiny["cache"], cache)
    running = Running(create_app(Engine({"rt": str(bundle[0])}, cache=str(cache), device="cpu")))
    try:
        with httpx.Client(base_url=running.url, timeout=30) as client:
            assert client.post("/v1/predict", json={"ids": ["new1"]}).status_code == 404
            got = client.post("/v1/predict", json={"texts": ["w1 w2 w3"], "text_ids": ["new1"],
                                                   "add_to_cache": True}).json()
            assert got["added_to_cache"] == 1
            again = client.post("/v1/predict", json={"ids": ["new1"]}).json()
            assert _close({**again["predictions"]["rt"][0], "source": "text"}, got["predictions"]["rt"][0])
    finally:
        running.stop()


def test_a_burst_past_a_tiny_queue_is_shed_and_the_service_recovers(bundle):
    engine = Engine({"rt": str(bundle[0])}, device="cpu")
    running = Running(create_app(engine, Limits(max_items=64),
                                 Batching(max_batch=64, max_wait_ms=0, max_queue=1)))
    texts = [" ".join(f"w{(i * 7 + j) % 100}" for j in range(30)) for i in range(64)]
    try:
        with httpx.Client(base_url=running.url, timeout=60, limits=httpx.Limits(max_connections=64)) as client:
            with ThreadPoolExecutor(48) as pool:
                answers = list(pool.map(lambda _: client.post("/v1/predict", json={"texts": texts}), range(96)))
            codes = [a.status_code for a in answers]
            assert set(codes) <= {200, 429}, codes
            assert codes.count(429) > 0 and codes.count(200) > 0, codes
            shed = next(a for a in answers if a.status_code == 429)
            assert shed.headers["retry-after"] == "1" and "overloaded" in shed.json()["error"]
            assert client.post("/v1/predict", json={"texts": ["w1 w2"]}).status_code == 200  # recovered
            assert client.get("/readyz").status_code == 200
            metrics = client.get("/metrics").text
            assert f"erpack_shed_total {float(codes.count(429))}" in metrics
    finally:
        running.stop()


def test_stopping_finishes_the_requests_in_flight(bundle):
    running = Running(create_app(Engine({"rt": str(bundle[0])}, device="cpu"),
                                 batching=Batching(max_batch=1, max_wait_ms=0, max_queue=64)))
    texts = [" ".join(f"w{(i + j) % 100}" for j in range(30)) for i in range(64)]
    with httpx.Client(base_url=running.url, timeout=60) as client, ThreadPoolExecutor(8) as pool:
        pending = [pool.submit(client.post, "/v1/predict", json={"texts": texts}) for _ in range(8)]
        time.sleep(0.05)  # the requests are in flight (one batch at a time)
        running.stop()  # what SIGTERM does under uvicorn
        codes = [p.result().status_code for p in pending]
    assert codes == [200] * 8, codes


def test_erpack_serve_runs_and_stops_on_sigterm(bundle, tiny):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "erpack", "serve", f"rt={bundle[0]}", "--cache", str(tiny["cache"]),
                             "--port", str(port), "--device", "cpu"], cwd=root, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=str(root)))
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.time() + 120
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.time() < deadline, "erpack serve did not become ready"
            time.sleep(0.1)
        assert httpx.post(f"{url}/v1/predict", json={"ids": ["d003"]}, timeout=30).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "listening    http://127.0.0.1" in out and "answered 1 request(s): 1 with 200" in out, out


def test_erpack_serve_refuses_a_folder_that_is_not_a_bundle(tmp_path, capsys):
    from erpack.cli import main

    assert main(["serve", str(tmp_path), "--port", str(free_port())]) == 2
    assert "not a bundle" in capsys.readouterr().err


def test_bundles_of_different_caches_are_not_served_together(bundle, tiny, tmp_path):
    from erpack.deploy.build import write_bundle
    from erpack.errors import ErpackError
    from tests.export.conftest import make_task_model, write_cache

    cache = write_cache(tmp_path / "cache1", tiny["folder"], tiny["rows"][:4], layer=1)
    make_task_model(tiny["folder"], cache).save(tmp_path / "task1")
    write_bundle(tmp_path / "task1", tmp_path / "bundle1", model=str(tiny["folder"]), quantize=False)
    with pytest.raises(ErpackError, match="serves another cache"):
        Engine({"rt": str(bundle[0]), "k1": str(tmp_path / "bundle1")}, device="cpu")
    with pytest.raises(ErpackError, match="two bundles are named 'bundle'"):
        bundle_names([str(bundle[0]), str(tmp_path / "x" / "bundle")])


def test_ids_without_a_cache_are_refused(bundle):
    running = Running(create_app(Engine({"rt": str(bundle[0])}, device="cpu")))
    try:
        got = httpx.post(f"{running.url}/v1/predict", json={"ids": ["d000"]}, timeout=30)
        assert got.status_code == 400 and "no cache" in got.json()["error"]
    finally:
        running.stop()
