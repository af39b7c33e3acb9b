"""Real services for the tests, started in-process on loopback: an S3-compatible server (moto's
ThreadedMotoServer) and a local Ray instance. No mocks: s3fs, boto3 and Ray Data talk to them as
they would to AWS and a cluster.

    def test_x(s3_bucket):         # "s3://erpack-<n>", a fresh empty bucket; AWS_* env set
    def test_y(s3_server):         # S3Server(endpoint, requests()) to count requests
    def test_z(ray_local):         # ray.init(num_cpus=2) once per session
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import socket
from dataclasses import dataclass

import pytest

_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "erpack-test",
    "AWS_SECRET_ACCESS_KEY": "erpack-test",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RequestLog:
    """WSGI middleware around moto's app: records (method, path, Range header) of every request."""

    def __init__(self, app):
        self.app = app
        self.entries: list[tuple[str, str, str]] = []

    def __call__(self, environ, start_response):
        self.entries.append((environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", ""),
                             environ.get("HTTP_RANGE", "")))
        return self.app(environ, start_response)


def _counting_server(ip_address: str, port: int):
    """moto's ThreadedMotoServer, its WSGI app wrapped in a RequestLog (the server stays real)."""
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    class CountingMotoServer(ThreadedMotoServer):
        log = RequestLog(DomainDispatcherApplication(create_backend_app))

        def _server_entry(self) -> None:
            self._server = make_server(self._ip_address, self._port, self.log, True,
                                       request_handler=MotoRequestHandler)
            self._server_ready_event.set()
            self._server.serve_forever()

    return CountingMotoServer(ip_address=ip_address, port=port, verbose=False)


@dataclass
class S3Server:
    endpoint: str
    server: object

    @property
    def env(self) -> dict[str, str]:
        """The environment a subprocess needs to reach this server."""
        return {"AWS_ENDPOINT_URL": self.endpoint, **_CREDENTIALS}

    @property
    def log(self) -> list[tuple[str, str, str]]:
        """(method, path, Range header) of every request served so far, in order."""
        return self.server.log.entries

    def requests(self) -> int:
        """How many requests the server has served so far (every S3 API call counts one)."""
        return len(self.log)


@pytest.fixture(scope="session")
def s3_server():
    pytest.importorskip("moto.server", reason="the `test` extra installs moto[server]")
    port = free_port()
    server = _counting_server("127.0.0.1", port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in ["AWS_ENDPOINT_URL", *_CREDENTIALS]}
    os.environ.update({"AWS_ENDPOINT_URL": endpoint, **_CREDENTIALS})
    try:
        yield S3Server(endpoint, server)
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


_buckets = itertools.count()


@pytest.fixture
def s3_bucket(s3_server) -> str:
    """A fresh, empty bucket on the session's S3 server, as an s3:// URL."""
    import boto3

    name = f"erpack-{os.getpid()}-{next(_buckets)}"
    boto3.client("s3", endpoint_url=s3_server.endpoint).create_bucket(Bucket=name)
    return f"s3://{name}"


@pytest.fixture(scope="session")
def ray_local(request):
    """A local Ray instance with 2 CPUs, shared by the session's tests. Its workers get the S3 server's
    endpoint and credentials (the server is started first when moto is installed), so every Ray task,
    Ray Data's file listing too, reaches it whichever fixture a test names first."""
    ray = pytest.importorskip("ray", reason="the `scale` extra installs Ray")
    env = {k: v for k, v in os.environ.items() if k.startswith(("AWS_", "HF_", "TRANSFORMERS_"))}
    if importlib.util.find_spec("moto") is not None:
        env.update(request.getfixturevalue("s3_server").env)
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
    yield ray
    ray.shutdown()
