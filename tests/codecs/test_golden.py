"""Golden blobs in tests/fixtures/codecs must decode, forever, to the arrays stored beside them.

A failure here means caches written by an earlier erpack no longer read back the same: fix the
codec, never the fixture. New codecs add fixtures with tests/fixtures/codecs/make_golden.py.
Every blob decodes bit for bit to its stored array, on every CPU: the bitsandbytes codecs also on a
(4, 96) record whose blocks straddle rows (their native CPU kernels; bitsandbytes 0.50.2 got it
wrong on AVX-512), and their stored arrays equal the numpy reference decode of the blob.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from erpack.codecs import Pipeline
from erpack.codecs.base import HEADER

from .cases import HAS_BNB

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "codecs"
INDEX = json.loads((FIXTURES / "index.json").read_text())
BNB = ("bnb8", "nf4", "fp4")


def case_id(case) -> str:
    shape = case.get("shape")
    return case["spec"] + (f"@{shape[0]}x{shape[1]}" if shape else "")


def shape_of(case) -> tuple[int, int]:
    return tuple(case.get("shape", INDEX["shape"]))


def cases(only_bnb: bool = False):
    for case in INDEX["cases"]:
        needs = case["config"]["stages"][0]["id"] in BNB
        if only_bnb and not needs:
            continue
        marks = [pytest.mark.skipif(needs and not HAS_BNB, reason="bitsandbytes not installed")]
        yield pytest.param(case, id=case_id(case), marks=marks)


@pytest.mark.parametrize("case", cases())
def test_golden_blob_decodes_to_stored_array(case):
    shape = shape_of(case)
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
    x = np.load(FIXTURES / case.get("input", "input.npy"), allow_pickle=False)
    y = np.load(FIXTURES / case["expected"], allow_pickle=False)
    assert x.shape == y.shape == shape_of(case)
    assert np.corrcoef(x.ravel(), y.ravel())[0, 1] > 0.95


@pytest.mark.parametrize("case", cases(only_bnb=True))
def test_golden_library_blob_equals_numpy_reference(case):
    """A bitsandbytes golden array is what the pure-numpy reference decodes from its blob, bit for bit
    (the fixture was not made by a kernel that computes wrong)."""
    shape = shape_of(case)
    pipe = Pipeline.from_config(case["config"])
    blob = (FIXTURES / case["blob"]).read_bytes()
    ref = np.empty(shape, np.float32)
    pipe.array_codec.reference_decode(memoryview(blob)[HEADER.size :], ref)
    expected = np.load(FIXTURES / case["expected"], allow_pickle=False)
    assert np.array_equal(ref.view(np.uint32), expected.view(np.uint32)), f"max diff {np.abs(ref - expected).max()}"


def test_library_codecs_have_golden_blobs_whose_blocks_straddle_rows():
    """nf4, fp4 and bnb8 each have a golden case with an even width that is not a multiple of the block
    size (what sent bitsandbytes 0.50.2 down its wrong AVX-512 path)."""
    straddling = set()
    for case in INDEX["cases"]:
        stage = case["config"]["stages"][0]
        T, H = shape_of(case)
        if stage["id"] in BNB and H % 2 == 0 and H % stage["blocksize"] and T * H > stage["blocksize"]:
            straddling.add(stage["id"])
    assert straddling == set(BNB)


def test_every_array_codec_has_a_golden_blob():
    from erpack.codecs import list_codecs

    covered = {c["config"]["stages"][0]["id"] for c in INDEX["cases"]}
    stages = {s["id"] for c in INDEX["cases"] for s in c["config"]["stages"]}
    from erpack.codecs.registry import codec_class

    fitted = {c["id"] for c in list_codecs() if c["kind"] == "array" and codec_class(c["id"]).fitted}
    assert {c["id"] for c in list_codecs() if c["kind"] == "array"} - fitted <= covered
    for codec_id in fitted:  # a fitted codec's blobs need its state: its own folder and test (test_tc_golden.py)
        assert (FIXTURES / codec_id / "index.json").exists()
    assert {"shuffle", "zstd"} <= stages
