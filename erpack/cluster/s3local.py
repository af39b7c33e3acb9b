"""A local S3-compatible server on loopback: moto's ThreadedMotoServer in this process, for
`erpack demo --scale` and the tests (tests/services.py). Real HTTP on 127.0.0.1, so s3fs, boto3 and
Ray workers in other processes talk to it as they would to AWS; every request is counted.

    with local_s3(bucket="erpack-demo") as s3:    # a free port, a bucket, AWS_* set (restored on exit)
        s3.url, s3.endpoint, s3.requests()         # "s3://erpack-demo", "http://127.0.0.1:PORT", 42

The server keeps its objects in memory: they are gone when it stops. Needs moto[server] (the
`scale` and `test` extras); without it `start_server` raises InputError naming the extra.
"""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass

from erpack.errors import InputError

# Any non-empty credentials do for moto; the region keeps botocore from asking for one.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "erpack-local",
    "AWS_SECRET_ACCESS_KEY": "erpack-local",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
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


def _counting_server(host: str, port: int):
    """moto's ThreadedMotoServer, its WSGI app wrapped in a RequestLog (the server stays real)."""
    try:
        from moto.moto_server.threaded_moto_server import ThreadedMotoServer
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server
    except ImportError as exc:
        raise InputError(f"a local S3 server needs moto[server] ({exc}): pip install 'erpack[scale]' "
                         f"(or pip install 'moto[server]'), or give a real bucket") from None

    class QuietHandler(MotoRequestHandler):
        def log_request(self, *args, **kwargs) -> None:  # werkzeug's line per request; the log counts them
            pass

    class CountingMotoServer(ThreadedMotoServer):
        log = RequestLog(DomainDispatcherApplication(create_backend_app))

        def _server_entry(self) -> None:
            self._server = make_server(self._ip_address, self._port, self.log, True, request_handler=QuietHandler)
            self._server_ready_event.set()
            self._server.serve_forever()

    return CountingMotoServer(ip_address=host, port=port, verbose=False)


@dataclass
class S3Server:
    """A running local server: `endpoint` (http://127.0.0.1:PORT), and the request log."""

    endpoint: str
    server: object
    url: str = ""  # s3://bucket, once local_s3 made it

    @property
    def env(self) -> dict[str, str]:
        """The environment a client (or a subprocess) needs to reach this server."""
        return {"AWS_ENDPOINT_URL": self.endpoint, **CREDENTIALS}

    @property
    def log(self) -> list[tuple[str, str, str]]:
        """(method, path, Range header) of every request served so far, in order."""
        return self.server.log.entries

    def requests(self) -> int:
        """How many requests the server has served so far (every S3 API call counts one)."""
        return len(self.log)

    def create_bucket(self, name: str) -> str:
        """Create bucket `name` (boto3, which moto requires); its s3:// URL."""
        import boto3

        boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                     aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                     region_name=CREDENTIALS["AWS_DEFAULT_REGION"]).create_bucket(Bucket=name)
        return f"s3://{name}"

    def stop(self) -> None:
        self.server.stop()


def start_server(host: str = "127.0.0.1", port: int | None = None) -> S3Server:
    """Start a counting moto server on host:port (default: a free port on loopback)."""
    port = port or free_port(host)
    server = _counting_server(host, port)
    server.start()
    return S3Server(f"http://{host}:{port}", server)


@contextlib.contextmanager
def patched_env(values: dict[str, str]):
    """os.environ with `values` set inside the block, restored after."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def local_s3(bucket: str = "erpack-demo"):
    """A local server with one bucket, AWS_ENDPOINT_URL and credentials set in os.environ (so s3fs here
    and Ray workers started inside the block reach it); stopped and the environment restored on exit.
    Yields the S3Server with `url` (s3://bucket) set."""
    s3 = start_server()
    try:
        with patched_env(s3.env):
            s3.url = s3.create_bucket(bucket)
            yield s3
    finally:
        s3.stop()
