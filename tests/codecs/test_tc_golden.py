"""Golden blobs of the fitted tc codec (tests/fixtures/codecs/tc) decode, forever and on every CPU,
bit for bit to the arrays stored beside them, with the fitted state stored beside them.

The decode is one product of integer codes with an int8 basis whose partial sums are exact in
float32, then elementwise float32 operations: no BLAS or SIMD difference can change a bit. A failure
means caches written by an earlier erpack no longer read back the same: fix the codec, never the
fixture (tests/fixtures/codecs/tc/make_golden.py writes them once).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from erpack.codecs import Pipeline
from erpack.codecs.state import FittedState

HERE = Path(__file__).resolve().parents[1] / "fixtures" / "codecs" / "tc"
INDEX = json.loads((HERE / "index.json").read_text())


def load(case):
    data = (HERE / case["state"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == case["state_sha256"]
    state = FittedState.from_bytes(data, source=case["state"])
    assert state.to_bytes() == data  # the state's bytes are canonical
    return Pipeline.from_config(case["config"], state=state)


@pytest.mark.parametrize("case", INDEX["cases"], ids=lambda c: c["spec"])
def test_golden_blobs_decode_to_stored_arrays(case):
    pipe = load(case)
    assert Pipeline.from_spec(case["spec"]).get_config() == case["config"]
    assert pipe.spec == case["canonical"]
    blobs, shapes, ids = [], [], []
    for rec in case["records"]:
        blob = (HERE / rec["blob"]).read_bytes()
        tokens = np.load(HERE / rec["ids"], allow_pickle=False)
        expected = np.load(HERE / rec["expected"], allow_pickle=False)
        y = pipe.decode(blob, tuple(rec["shape"]), tokens=tokens)
        assert np.array_equal(y.view(np.uint32), expected.view(np.uint32)), f"max diff {np.abs(y - expected).max()}"
        blobs.append(blob)
        shapes.append(tuple(rec["shape"]))
        ids.append(tokens)
    out = pipe.decode_batch(blobs, shapes, tokens=ids)
    for r, rec in enumerate(case["records"]):
        T = rec["shape"][0]
        expected = np.load(HERE / rec["expected"], allow_pickle=False)
        assert np.array_equal(out[r, :T].view(np.uint32), expected.view(np.uint32))


def test_a_golden_blob_has_a_coarsened_token():
    case = INDEX["cases"][0]
    blob = (HERE / case["records"][2]["blob"]).read_bytes()
    assert blob[10] >= 1  # the count of coarsened tokens, right after the 10-byte header
