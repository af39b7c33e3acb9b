"""The table of codec cases every parametrized test runs over.

Each case: a spec, whether it is lossless, and the SQNR (dB) it must reach on the synthetic
activation-like records (`activations()`: heavy-tailed channels of varied width, a few wide outlier
channels, a loud first token) and on real MiniLM layer-3 activations of Rotten Tomatoes reviews.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

HAS_BNB = importlib.util.find_spec("bitsandbytes") is not None
needs_bnb = pytest.mark.skipif(not HAS_BNB, reason="bitsandbytes not installed (pip install 'erpack[quant]')")

# spec, lossless, min SQNR synthetic, min SQNR real (MiniLM layer 3, measured values in docs/results/codecs.md)
CASES = [
    ("fp32", True, None, None),
    ("fp16", False, 70.0, 70.0),
    ("bf16", False, 53.0, 53.0),
    ("int8", False, 34.0, 35.0),
    ("int8c", False, 40.0, 40.0),
    ("int8c:snr=30,block=3", False, 29.0, 29.0),
    ("int4c", False, 17.5, 18.0),
    ("int4c:block=0", False, 15.5, 17.5),
    ("int4", False, 15.0, 17.0),
    ("int4:g=16,asym=1", False, 21.0, 22.0),
    ("int4:g=24", False, 15.5, 17.5),
    ("bnb8", False, 37.0, 35.5),
    ("nf4", False, 16.0, 18.5),
    ("fp4", False, 12.5, 15.0),
    # blocks of 256 straddle rows of 96 and 384: bitsandbytes 0.50.2's 2-D call gave 8 dB here on AVX-512
    ("nf4:256", False, 13.5, 16.5),
    ("fp4:256", False, 10.5, 12.5),
    ("lossless", True, None, None),
    ("bf16z", False, 53.0, 53.0),
    ("int8z", False, 40.0, 40.0),
    ("int4z", False, 17.5, 18.0),
    ("int8+shuffle:1+zstd:1", False, 34.0, 35.0),
    ("fp16+shuffle:2+zstd:level=1,streams=2,match=0", False, 70.0, 70.0),
]
BNB_IDS = ("bnb8", "nf4", "fp4")


def params(cases=CASES):
    """pytest.param per case, skipped where bitsandbytes is needed and missing."""
    out = []
    for case in cases:
        marks = [needs_bnb] if case[0].split("+")[0].split(":")[0] in BNB_IDS else []
        out.append(pytest.param(*case, id=case[0], marks=marks))
    return out


def activations(T: int = 48, H: int = 96, seed: int = 0) -> np.ndarray:
    """float32 (T, H) shaped like a BERT residual stream: Laplacian values, channel widths spread
    over a decade, three wide outlier channels with an offset, a loud first token ([CLS])."""
    rng = np.random.default_rng(seed)
    width = np.exp(rng.normal(-0.7, 0.5, H))  # (H,)
    x = rng.laplace(0.0, 1.0, (T, H)) * width
    k = min(3, H)
    outliers = rng.choice(H, k, replace=False)
    x[:, outliers] = x[:, outliers] * 4.0 + rng.choice([-6.0, 6.0], k)
    x[0] *= 3.0
    return x.astype(np.float32)
