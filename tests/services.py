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

import pytest

from erpack.cluster.s3local import S3Server, free_port, patched_env, start_server

__all__ = ["S3Server", "free_port", "s3_server", "s3_bucket", "ray_local"]


@pytest.fixture(scope="session")
def s3_server():
    pytest.importorskip("moto.server", reason="the `test` extra installs moto[server]")
    server = start_server()  # erpack.cluster.s3local: moto's server on a free loopback port, requests counted
    try:
        with patched_env(server.env):
            yield server
    finally:
        server.stop()


_buckets = itertools.count()


@pytest.fixture
def s3_bucket(s3_server) -> str:
    """A fresh, empty bucket on the session's S3 server, as an s3:// URL."""
    return s3_server.create_bucket(f"erpack-{os.getpid()}-{next(_buckets)}")


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
