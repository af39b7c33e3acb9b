"""Connecting to Ray: an existing cluster (`--address`) or a local instance started for the run.

    ray = connect(address=None, workers=2)   # local: ray.init(num_cpus=...), or reuse an initialised one
    ray = connect(address="10.0.0.5:6379")   # a running cluster; unreachable -> InputError (exit 2)

Workers must import the same erpack and reach the same storage as the driver: `worker_env()` is the
environment they get (PYTHONPATH, AWS_*, HF_*, ...), passed as the runtime_env of each actor.
Ray itself retries an unreachable address for minutes; `connect` tries the address's TCP port first
and says at once when nothing listens there.
"""

from __future__ import annotations

import logging
import os
import socket

import erpack
from erpack.errors import InputError

ENV_PREFIXES = ("AWS_", "HF_", "TRANSFORMERS_", "ERPACK_", "PYTHONPATH", "OMP_", "MKL_", "CUDA_VISIBLE")
CONNECT_TIMEOUT = 5.0


def import_ray():
    """The ray module (with ray.data), or an InputError naming the extra that installs it."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise InputError(f"--engine ray needs Ray Data ({exc}): pip install 'erpack[scale]' "
                         f"(or pip install 'ray[data]')") from None
    ray.data.DataContext.get_current().enable_progress_bars = False  # erpack's commands show their own
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    return ray


def worker_env() -> dict[str, str]:
    """The driver's environment variables that workers need: where erpack is (PYTHONPATH), storage
    credentials and endpoints (AWS_*), model and asset caches (HF_*, ERPACK_HOME), thread counts."""
    env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES)}
    root = os.path.dirname(os.path.dirname(os.path.abspath(erpack.__file__)))
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in paths:  # the erpack this driver runs, first, so workers run the same code
        env["PYTHONPATH"] = os.pathsep.join([root, *paths])
    return env


def _check_reachable(address: str) -> None:
    """InputError at once when nothing listens at host:port (Ray would retry for minutes)."""
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise InputError(f"--address {address!r}: expected host:port (e.g. 10.0.0.5:6379), ray://host:10001, "
                         f"or auto")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT):
            pass
    except OSError as exc:
        raise InputError(f"cannot reach the Ray cluster at {address} ({exc}): check the address (`ray status` "
                         f"on the head node prints it) and that this machine can reach that port, or leave "
                         f"--address out to start a local Ray instance") from None


def connect(address: str | None = None, workers: int = 1, num_cpus: int | None = None):
    """The ray module, initialised: reuse an initialised Ray; else connect to `address` (host:port,
    ray://..., or "auto"); else start a local instance with num_cpus (default: this machine's CPUs,
    at least workers + 1 so reading is never starved by the actors)."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    runtime_env = {"env_vars": worker_env()}
    if address:
        if address != "auto":
            _check_reachable(address)
        try:
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise InputError(f"cannot connect to the Ray cluster at {address} ({exc}): check --address") from None
        return ray
    cpus = num_cpus or max(os.cpu_count() or 1, workers + 1)
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, runtime_env=runtime_env)
    return ray
