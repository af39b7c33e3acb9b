"""Known-answer checks for codecs whose kernels come from a library (today: bitsandbytes).

A library kernel can compute wrong on one CPU and right on another (bitsandbytes 0.50.2's CPU
dequantize_4bit on AVX-512 when blocks straddle rows), and a lossy codec that computes wrong writes a
cache that is silently damaged. So the first time a process encodes or decodes with such a codec,
`ensure(codec)` runs the codec's library kernels on a fixed input and compares them with its
pure-numpy reference (erpack/codecs/reference.py):

- decode: the reference's blob of the known input, decoded by the library, equals the reference
  decode (within 1e-6 of the input's largest value);
- encode: the library's blob, read through the reference, is as close to the input value by value
  as the reference's own (within 1e-3 of the value's block absmax: rounding at code midpoints).

The known inputs are (3, W) arrays whose rows the blocks straddle: W = 1.5 blocks (the vectorised
kernels), W + 2 (a scalar tail) and W + 1 (an odd number of values). If the library disagrees, every encode and decode with that codec
in this process raises KernelCheckError naming the codec, the library and its version, and the CPU.
The result is kept per codec (id and parameters) for the life of the process.

A codec opts in by setting `library` and providing `kernel_encode(x) -> body`,
`kernel_decode(body, out)`, `reference_encode(x) -> body` and `reference_decode(body, out)`.
`erpack codecs --check` checks every such codec and block size on this machine (`check_all`).
"""

from __future__ import annotations

import platform
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from erpack.codecs.registry import codec_class, known_ids
from erpack.codecs.spec import format_stage
from erpack.errors import CodecError, ErpackError, KernelCheckError

DECODE_TOL = 1e-6  # of the input's largest |value|: float32 rounding only
ENCODE_TOL = 1e-3  # of the value's block absmax: a code picked on the other side of a midpoint

_results: dict = {}  # codec -> None (passed) or the refusal message
_lock = threading.Lock()


def ensure(codec, *, encode: Callable | None = None, decode: Callable | None = None) -> None:
    """Raise KernelCheckError unless `codec`'s kernels pass the known-answer check; the first call
    for a codec runs it (with `encode` / `decode` as the kernels under test, by default the codec's
    own) and its result stands for the rest of the process."""
    result = _results.get(codec, False)
    if result is False:
        with _lock:
            if codec not in _results:
                try:
                    check(codec, encode=encode, decode=decode)
                    _results[codec] = None
                except KernelCheckError as exc:
                    _results[codec] = str(exc)
            result = _results[codec]
    if result is not None:
        raise KernelCheckError(result)


def check(codec, *, encode: Callable | None = None, decode: Callable | None = None) -> None:
    """Run the known-answer check on `encode(x) -> body` and `decode(body, out)` (default: the codec's
    library kernels) against the codec's numpy reference; raise KernelCheckError if they disagree."""
    encode = encode or codec.kernel_encode
    decode = decode or codec.kernel_decode
    for x in known_inputs(codec.blocksize):
        problem = decode_problem(codec, decode, x) or encode_problem(codec, encode, x)
        if problem:
            raise KernelCheckError(refusal(codec, problem))


def known_inputs(blocksize: int) -> list[np.ndarray]:
    """Three fixed float32 (3, W) records whose rows the blocks straddle, W = 1.5 blocks (a multiple
    of 16 and of half a block: the vectorised CPU paths, where bitsandbytes 0.50.2 went wrong on
    AVX-512), W + 2 (a scalar tail) and W + 1 (an odd value count): Laplacian values over channels
    of varied width, a few exact zeros, an outlier."""
    out = []
    base = blocksize + blocksize // 2
    for width in (base, base + 2, base + 1):
        rng = np.random.default_rng(20261201 + width)
        x = rng.laplace(0.0, 1.0, (3, width)) * np.exp(rng.normal(-0.5, 0.6, width))
        x[1, :5] = 0.0
        x[2, width // 3] = 40.0
        out.append(x.astype(np.float32))
    return out


def decode_problem(codec, decode: Callable, x: np.ndarray) -> str | None:
    """What is wrong with `decode` on the reference's blob of x, or None."""
    body = codec.reference_encode(x)
    want = np.empty_like(x)
    codec.reference_decode(body, want)
    got = np.full_like(x, np.nan)
    try:
        decode(memoryview(body), got)
    except ErpackError:
        raise
    except Exception as exc:  # a kernel that crashes computes wrong too
        return f"its decode of a known {x.shape} input raised {type(exc).__name__}: {exc}"
    return differs("decode", got, want, DECODE_TOL * float(np.abs(x).max()), x.shape)


def encode_problem(codec, encode: Callable, x: np.ndarray) -> str | None:
    """What is wrong with `encode` on x (its blob read through the reference), or None."""
    body = codec.reference_encode(x)
    ref = np.empty_like(x)
    codec.reference_decode(body, ref)
    try:
        mine = bytes(encode(x))
    except ErpackError:
        raise
    except Exception as exc:
        return f"its encode of a known {x.shape} input raised {type(exc).__name__}: {exc}"
    if len(mine) != len(body):
        return f"its encode of a known {x.shape} input gave {len(mine)} bytes, not {len(body)}"
    got = np.empty_like(x)
    try:
        codec.reference_decode(mine, got)
    except CodecError as exc:  # e.g. a block absmax that is not finite
        return f"its encode of a known {x.shape} input does not decode ({exc})"
    slack = ENCODE_TOL * codec.block_absmax(x)  # (3, W)
    excess = np.abs(got - x) - np.abs(ref - x) - slack
    bad = ~(excess <= 0)  # NaN counts as bad
    if bad.any():
        i = int(np.argmax(np.where(bad, np.nan_to_num(excess, nan=np.inf), -np.inf)))
        return (f"its encode of a known {x.shape} input is off at {int(bad.sum())} of {x.size} values "
                f"(value {i}: {float(got.flat[i]):.6g} for {float(x.flat[i]):.6g}, the reference gives {float(ref.flat[i]):.6g})")
    return None


def differs(what: str, got: np.ndarray, want: np.ndarray, tol: float, shape) -> str | None:
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    bad = ~(diff <= tol)
    if not bad.any():
        return None
    i = int(np.argmax(np.where(bad, np.nan_to_num(diff, nan=np.inf), -np.inf)))
    return (f"its {what} of a known {tuple(shape)} input differs from the reference at {int(bad.sum())} of "
            f"{got.size} values (value {i}: {float(got.flat[i]):.6g}, expected {float(want.flat[i]):.6g})")


def refusal(codec, problem: str) -> str:
    """The message of a failed check: codec, library and version, CPU, what was wrong, what to do."""
    name = format_stage(codec)
    lib = f"{codec.library} {codec.library_version()}"
    return (
        f"codec {name} refused: the {lib} kernels compute {codec.codec_id} wrong on this CPU ({cpu_description()}): "
        f"{problem}. A cache written or read with them would be silently wrong, so {name} neither encodes nor "
        f"decodes here. Use a codec without library kernels (int4z for 4 bits, int8z for 8), or install another "
        f"{codec.library} version than {codec.library_version()}; `erpack codecs --check` checks them all."
    )


def cpu_description() -> str:
    """The CPU's model name and vector extensions, e.g. 'AMD EPYC, x86_64 with AVX-512'."""
    model, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key == "model name" and not model:
                model = value
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    model = model or platform.processor() or "unknown CPU"
    if "avx512f" in flags:
        simd = " with AVX-512"
    elif "avx2" in flags:
        simd = " with AVX2, no AVX-512"
    else:
        simd = ""
    return f"{model}, {platform.machine() or 'unknown machine'}{simd}"


def library_codecs() -> list:
    """One codec per registered library codec and supported block size."""
    out = []
    for codec_id in known_ids():
        cls = codec_class(codec_id)
        if getattr(cls, "library", None):
            out += [cls(blocksize=b) for b in cls.blocksizes]
    return out


def check_all() -> list[tuple[object, str | None]]:
    """(codec, None when its kernels pass here, else the refusal) for every library codec and block size
    (what `erpack codecs --check` prints)."""
    results = []
    for codec in library_codecs():
        try:
            ensure(codec)
            results.append((codec, None))
        except ErpackError as exc:
            results.append((codec, str(exc)))
    return results
