"""The bitsandbytes codecs: their kernels against the numpy reference, and the self-check that refuses
kernels which compute wrong (erpack/codecs/selfcheck.py).

Wrong kernels are real callables handed to `selfcheck.check` / `ensure` (their `encode` / `decode`
parameters), never patches of bitsandbytes. Checks whose failure must stick for a process run in a
subprocess, so this process's cache of results holds only the real kernels' passes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from erpack.codecs import get_codec, selfcheck
from erpack.codecs.reference import block_absmax
from erpack.errors import KernelCheckError

from .cases import HAS_BNB, activations, needs_bnb

pytestmark = needs_bnb
ROOT = Path(__file__).resolve().parents[2]
SPECS = [("nf4", 64), ("fp4", 64), ("nf4", 256), ("fp4", 32), ("bnb8", 256), ("bnb8", 64)]
# (T, H): even widths that are not a multiple of the block (blocks straddle rows), odd value
# counts (bitsandbytes' fallback path, unless padded), one value, a width of one block
SHAPES = [(4, 96), (3, 98), (5, 37), (7, 33), (1, 1), (1, 3), (2, 64), (40, 384)]


def codec_of(codec_id: str, blocksize: int):
    return get_codec({"id": codec_id, "blocksize": blocksize})


def reference_round_trip(codec, x: np.ndarray) -> np.ndarray:
    y = np.empty_like(x)
    codec.reference_decode(codec.reference_encode(x), y)
    return y


def bnb_version() -> str:
    import bitsandbytes

    return bitsandbytes.__version__


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return ""


def avx512() -> bool:
    return " avx512f" in Path("/proc/cpuinfo").read_text()


def assert_refusal(message: str, spec: str) -> None:
    """A refusal names the codec, the library and its version, the CPU, and what to use instead."""
    assert f"codec {spec} refused" in message
    assert f"bitsandbytes {bnb_version()}" in message
    assert cpu_model() in message and ("AVX-512" in message or "AVX2" in message or "x86" not in message)
    assert "int4z" in message and "another bitsandbytes version" in message


# ---- the kernels, as the codecs call them --------------------------------------------------------------
@pytest.mark.parametrize("codec_id,blocksize", SPECS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_kernel_decode_equals_reference_bit_for_bit(codec_id, blocksize, shape):
    """bitsandbytes' decode of a blob (the codec's flat call) is the numpy reference's, on every shape;
    bitsandbytes 0.50.2 given the 2-D shape was wrong on AVX-512 wherever blocks straddle rows."""
    codec = codec_of(codec_id, blocksize)
    x = activations(*shape, seed=shape[0] * 1000 + shape[1])
    body = codec.reference_encode(x)
    want, got = np.empty_like(x), np.full_like(x, np.nan)
    codec.reference_decode(body, want)
    codec.kernel_decode(memoryview(body), got)
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), f"max diff {np.nanmax(np.abs(got - want))}"


@pytest.mark.parametrize("codec_id,blocksize", SPECS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_kernel_encode_matches_reference(codec_id, blocksize, shape):
    """bitsandbytes' blob, read through the reference, is as close to the input as the reference's
    own blob (codes may differ only where a value sits on a midpoint between two codes)."""
    codec = codec_of(codec_id, blocksize)
    x = activations(*shape, seed=shape[0] * 1000 + shape[1])
    mine = codec.kernel_encode(x)
    assert len(mine) == codec.body_size(*shape)
    got = np.empty_like(x)
    codec.reference_decode(mine, got)
    ref = reference_round_trip(codec, x)
    slack = 1e-3 * block_absmax(x, blocksize).repeat(blocksize)[: x.size].reshape(x.shape)
    assert (np.abs(got - x) <= np.abs(ref - x) + slack).all()


# ---- the self-check ---------------------------------------------------------------------------------
@pytest.mark.parametrize("codec", selfcheck.library_codecs() if HAS_BNB else [],
                         ids=lambda c: f"{c.codec_id}:{c.blocksize}")
def test_real_kernels_pass_the_check_here(codec):
    selfcheck.check(codec)
    selfcheck.ensure(codec)  # and the cached result lets the codec work
    x = activations(6, 98, seed=3)
    assert np.isfinite(codec.decode(codec.encode(x), x.shape)).all()


def old_2d_decode(codec):
    """nf4/fp4 decode as erpack 0.x did it: bitsandbytes given the record's 2-D (T, H) shape."""

    def decode(body, out):
        from erpack.codecs.bnb import functional

        F, torch = functional()
        absmax, packed = codec.split(body, out.size)
        state = F.QuantState(absmax=torch.from_numpy(absmax.copy()), shape=torch.Size(out.shape), dtype=torch.float32,
                             blocksize=codec.blocksize, quant_type=codec.quant_type)
        out[...] = F.dequantize_4bit(torch.from_numpy(packed.copy()).reshape(-1, 1), quant_state=state).numpy().reshape(out.shape)

    return decode


@pytest.mark.parametrize("codec_id,blocksize", [("nf4", 64), ("fp4", 64), ("nf4", 256), ("fp4", 256)])
def test_check_refuses_the_old_2d_decode_where_it_computes_wrong(codec_id, blocksize):
    """The old 2-D call computes wrong on AVX-512 CPUs (this machine kind) and may be right on AVX2
    ones: the check refuses it exactly where it differs from the reference."""
    codec = codec_of(codec_id, blocksize)
    old = old_2d_decode(codec)
    wrong = False
    for x in selfcheck.known_inputs(blocksize):
        y = np.empty_like(x)
        old(memoryview(codec.reference_encode(x)), y)
        wrong |= not np.allclose(y, reference_round_trip(codec, x), rtol=0, atol=1e-6 * np.abs(x).max())
    if avx512() and bnb_version() == "0.50.2":
        assert wrong, "the known inputs no longer expose bitsandbytes 0.50.2's AVX-512 bug"
    if not wrong:
        selfcheck.check(codec, decode=old)
        return
    with pytest.raises(KernelCheckError) as err:
        selfcheck.check(codec, decode=old)
    assert_refusal(str(err.value), f"{codec_id}:{blocksize}")
    assert "decode of a known (3," in str(err.value)


def rows_swapped(codec):
    def decode(body, out):
        codec.kernel_decode(body, out)
        out[[0, 1]] = out[[1, 0]]

    return decode


def scaled(codec, factor):
    def decode(body, out):
        codec.kernel_decode(body, out)
        out *= np.float32(factor)

    return decode


def crashing(body, out):
    raise RuntimeError("illegal instruction in the kernel")


def code_shifted(codec):
    """An encoder whose 4-bit codes of the first byte are off by one (one wrong value pair)."""

    def encode(x):
        body = bytearray(codec.kernel_encode(x))
        start = 4 * codec.n_blocks(x.size)
        body[start] ^= 0x11
        return bytes(body)

    return encode


@pytest.mark.parametrize("codec_id,blocksize", SPECS)
@pytest.mark.parametrize("fault", ["rows swapped", "scaled by 1.001", "crash"])
def test_check_refuses_a_decoder_that_computes_wrong(codec_id, blocksize, fault):
    codec = codec_of(codec_id, blocksize)
    decode = {"rows swapped": rows_swapped(codec), "scaled by 1.001": scaled(codec, 1.001), "crash": crashing}[fault]
    with pytest.raises(KernelCheckError) as err:
        selfcheck.check(codec, decode=decode)
    assert_refusal(str(err.value), f"{codec_id}:{blocksize}")
    assert ("raised RuntimeError" if fault == "crash" else "differs from the reference") in str(err.value)


def nan_absmax(codec):
    """An encoder whose first block absmax comes out NaN."""

    def encode(x):
        return np.array([np.nan], "<f4").tobytes() + codec.kernel_encode(x)[4:]

    return encode


@pytest.mark.parametrize("codec_id,blocksize", SPECS)
@pytest.mark.parametrize("fault", ["code shifted", "absmax NaN"])
def test_check_refuses_an_encoder_that_computes_wrong(codec_id, blocksize, fault):
    codec = codec_of(codec_id, blocksize)
    encode = code_shifted(codec) if fault == "code shifted" else nan_absmax(codec)
    with pytest.raises(KernelCheckError) as err:
        selfcheck.check(codec, encode=encode)
    assert_refusal(str(err.value), f"{codec_id}:{blocksize}")
    assert "encode of a known" in str(err.value)


def test_known_inputs_straddle_rows_with_even_and_odd_counts():
    for blocksize in (32, 64, 256, 4096):
        xs = selfcheck.known_inputs(blocksize)
        assert [x.size % 2 for x in xs] == [0, 0, 1]
        assert xs[0].shape[1] % 16 == 0 and xs[0].shape[1] % (blocksize // 2) == 0  # the vectorised paths
        assert all(x.dtype == np.float32 and x.shape[1] % blocksize and x.shape[0] >= 3 for x in xs)
        assert all(np.array_equal(a, b) for a, b in zip(xs, selfcheck.known_inputs(blocksize)))  # fixed


def test_cpu_description_names_the_model_and_its_vector_extensions():
    text = selfcheck.cpu_description()
    assert cpu_model() in text
    assert ("AVX-512" in text) == avx512()


# ---- a failed check, for the rest of a process and through the CLI -------------------------------------
FAILING = """
import sys
import numpy as np
from erpack.codecs import Pipeline, get_codec, selfcheck
from erpack.errors import KernelCheckError

codec = get_codec({"id": "nf4", "blocksize": 64})

def wrong(body, out):  # a kernel that swaps rows
    codec.kernel_decode(body, out)
    out[[0, 1]] = out[[1, 0]]

try:
    selfcheck.ensure(codec, decode=wrong)
    sys.exit(99)
except KernelCheckError:
    pass
"""


def run_failing(tail: str, *args: str) -> subprocess.CompletedProcess:
    """A fresh Python whose first check of nf4:64 ran on a wrong decoder, then `tail`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", FAILING + tail, *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)


def test_a_failed_check_refuses_encode_and_decode_for_the_process():
    """After nf4:64 failed its check, every encode and every decode of a well-formed blob with it is
    refused (the blob's own checks still come first); fp4:64 is checked on its own and works."""
    x = activations(4, 96, seed=1)
    blob = get_codec({"id": "nf4", "blocksize": 64}).encode(x)
    tail = f"""
blob = bytes.fromhex({blob.hex()!r})
calls = [("encode", lambda: Pipeline.from_spec("nf4:64+zstd:3").encode(np.ones((4, 96), np.float32))),
         ("decode", lambda: codec.decode(blob, (4, 96))), ("encode", lambda: codec.encode(np.ones((2, 3), np.float32)))]
for what, call in calls:
    try:
        call()
        print(what, "ran")
    except KernelCheckError as exc:
        print(what, "refused:", exc)
try:
    codec.decode(blob[:-1], (4, 96))
except Exception as exc:
    print("truncated", type(exc).__name__)
fp4 = Pipeline.from_spec("fp4:64")
print("fp4 decodes", float(fp4.decode(fp4.encode(np.ones((4, 96), np.float32)), (4, 96)).max()))
"""
    done = run_failing(tail)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [ln.split(":")[0] for ln in lines] == ["encode refused", "decode refused", "encode refused",
                                                  "truncated CodecError", "fp4 decodes 1.0"], done.stdout
    for line in lines[:3]:
        assert_refusal(line, "nf4:64")
    assert "decode of a known (3, 96) input differs from the reference" in lines[0]


def write_acts(tmp_path) -> Path:
    arrays = [activations(5 + i, 96, seed=i) for i in range(3)]
    np.save(tmp_path / "acts.npy", np.concatenate(arrays), allow_pickle=False)
    np.save(tmp_path / "acts.offsets.npy", np.cumsum([0] + [len(a) for a in arrays]).astype(np.int64), allow_pickle=False)
    return tmp_path / "acts.npy"


def make_cache(tmp_path, spec: str) -> Path:
    from erpack.codecs import Pipeline
    from erpack.store import CacheWriter

    meta = {"model": {"name": "tiny", "model_type": "bert", "hidden_size": 96, "num_layers": 4}, "layer": 2,
            "tokenizer": {"name": "tiny"}, "max_length": 16}
    cache = tmp_path / f"cache-{spec}"
    with CacheWriter(cache, meta=meta, codec=Pipeline.from_spec(spec)) as w:
        w.commit_shard([(f"d{i}", activations(5 + i, 96, seed=i)) for i in range(3)])
    return cache


def files(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


CLI = """
from erpack.cli import main
sys.exit(main(sys.argv[1:]))
"""


def error_line(done: subprocess.CompletedProcess, command: str) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith(f"erpack {command}: error: ")]
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_compress_refuses_a_codec_that_fails_its_check(tmp_path):
    """`erpack compress --codec nf4:64 --out` of an fp32 cache stops with exit 2 and the refusal, and
    writes no shard."""
    out = tmp_path / "out"
    argv = ["compress", str(make_cache(tmp_path, "fp32")), "--codec", "nf4:64", "--out", str(out)]
    assert_refusal(error_line(run_failing(CLI, *argv), "compress"), "nf4:64")
    assert not out.exists() or not any(out.rglob("*.erps"))


def test_reading_a_cache_with_a_codec_that_fails_its_check_is_not_reported_as_damage(tmp_path):
    """verify exits 2 with the refusal (the kernels are at fault, the cache is intact), not 1."""
    from erpack.store import verify_cache

    cache = make_cache(tmp_path, "nf4:64")
    before = files(cache)
    assert_refusal(error_line(run_failing(CLI, "verify", str(cache)), "verify"), "nf4:64")
    assert files(cache) == before
    assert verify_cache(cache).ok  # here, with the real kernels, it reads


def test_codecs_check_prints_one_line_per_library_codec(capsys):
    """`erpack codecs --check`: the CPU, then one line per library codec and block size; exit 0 here."""
    import json

    from erpack.cli import main

    assert main(["codecs", "--check"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"CPU: {selfcheck.cpu_description()}"
    assert len(lines) == 1 + len(selfcheck.library_codecs()) and all(x.startswith("ok ") for x in lines[1:])
    assert main(["codecs", "--check", "--json"]) == 0
    checked = json.loads(capsys.readouterr().out)["codecs"]
    assert {c["codec"] for c in checked} >= {"nf4:64", "fp4:256", "bnb8:256"} and not any(c["refused"] for c in checked)
