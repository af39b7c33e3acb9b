"""Runs with the bitsandbytes codecs print nothing that reads like a broken install.

bitsandbytes 0.50 logs "Failed to load CPU gemm_4bit_forward from kernels-community" on first import
on AVX-512 bf16 CPUs (erpack/codecs/bnb.py filters exactly that line); torch warned that the codecs
handed it read-only arrays; a bitsandbytes fallback recompiled for every record length and then
warned. Each run here is a fresh process, as a user's is.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from erpack.codecs.bnb import LOGGER, NOISE

from .cases import activations, needs_bnb

ROOT = Path(__file__).resolve().parents[2]
NOISY = ("kernels-community", "gemm_4bit_forward", "Warning", "recompile", "Traceback")


def run(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


def assert_quiet(stderr: str) -> None:
    found = [word for word in NOISY if word in stderr]
    assert not found, f"stderr holds {found}:\n{stderr}"


@needs_bnb
def test_compress_with_bnb_codecs_is_quiet(tmp_path):
    """A real `erpack compress` with nf4, fp4 and bnb8 on records of odd and even value counts,
    from a memory-mapped (read-only) source."""
    arrays = [activations(t, 37, seed=t) for t in (3, 4, 5, 6, 7, 9, 11, 13, 15, 17)]  # 10 record sizes, most odd
    np.save(tmp_path / "acts.npy", np.concatenate(arrays), allow_pickle=False)
    np.save(tmp_path / "acts.offsets.npy", np.cumsum([0] + [len(a) for a in arrays]).astype(np.int64), allow_pickle=False)
    done = run("-m", "erpack", "compress", str(tmp_path / "acts.npy"), "--codec", "nf4", "--codec", "fp4:32",
               "--codec", "bnb8", "--codec", "nf4:4096")
    assert done.returncode == 0, done.stderr
    assert "nf4:64" in done.stdout and "bnb8:256" in done.stdout
    assert_quiet(done.stderr)


@needs_bnb
def test_importing_bitsandbytes_after_erpack_codecs_is_quiet():
    """peft imports bitsandbytes whenever it is installed (train, prune): once erpack's codecs are
    imported, that import is quiet too."""
    done = run("-c", "import erpack.codecs, bitsandbytes.functional; print('imported')")
    assert done.returncode == 0 and done.stdout.strip() == "imported", done.stderr
    assert_quiet(done.stderr)


def test_the_filter_drops_only_the_kernels_notice(caplog):
    logger = logging.getLogger(LOGGER)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        logger.warning("%s: No module named 'kernels'. Please make sure ...", NOISE)
        logger.warning("Something else bitsandbytes has to say")
    assert [r.getMessage() for r in caplog.records] == ["Something else bitsandbytes has to say"]
