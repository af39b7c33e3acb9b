"""Golden blobs in tests/fixtures/codecs must decode, forever, to the arrays stored beside them.

A failure here means caches written by an earlier erpack no longer read back the same: fix the
codec, never the fixture. New codecs add fixtures with tests/fixtures/codecs/make_golden.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from erpack.codecs import Pipeline

from .cases import HAS_BNB

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "codecs"
INDEX = json.loads((FIXTURES / "index.json").read_text())
BNB = ("bnb8", "nf4", "fp4")


def cases():
    for case in INDEX["cases"]:
        needs = case["config"]["stages"][0]["id"] in BNB
        marks = [pytest.mark.skipif(needs and not HAS_BNB, reason="bitsandbytes not installed")]
        yield pytest.param(case, id=case["spec"], marks=marks)


@pytest.mark.parametrize("case", cases())
def test_golden_blob_decodes_to_stored_array(case):
    shape = tuple(INDEX["shape"])
    blob = (FIXTURES / case["blob"]).read_bytes()
    expected = np.load(FIXTURES / case["expected"], allow_pickle=False)
    pipe = Pipeline.from_config(case["config"])
    y = pipe.decode(blob, shape)
    assert y.dtype == np.float32 and y.shape == shape
    assert np.array_equal(y.view(np.uint32), expected.view(np.uint32)), f"max diff {np.abs(y - expected).max()}"
    # the spec still means the same pipeline, and its canonical text is unchanged
    assert Pipeline.from_spec(case["spec"]).get_config() == case["config"]
    assert pipe.spec == case["canonical"]


@pytest.mark.parametrize("case", cases())
def test_golden_quality_against_input(case):
    """The stored decode is close to the input it came from (guards a fixture made from garbage)."""
    x = np.load(FIXTURES / "input.npy", allow_pickle=False)
    y = np.load(FIXTURES / case["expected"], allow_pickle=False)
    assert np.corrcoef(x.ravel(), y.ravel())[0, 1] > 0.95


def test_every_array_codec_has_a_golden_blob():
    from erpack.codecs import list_codecs

    covered = {c["config"]["stages"][0]["id"] for c in INDEX["cases"]}
    stages = {s["id"] for c in INDEX["cases"] for s in c["config"]["stages"]}
    assert {c["id"] for c in list_codecs() if c["kind"] == "array"} <= covered
    assert {"shuffle", "zstd"} <= stages
