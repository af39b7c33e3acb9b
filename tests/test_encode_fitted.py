"""`erpack encode` with a codec that has fitted state (the test-only `test-tokmean`, on a tiny BERT):
fitted on the first --fit-docs documents, the state stored in the cache, a rerun or an append codes
with the cache's state (no refit), a cache without a state refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from erpack.calibrate import fit_pipeline
from erpack.cli import main
from erpack.codecs import Pipeline
from erpack.encode import encode_corpus
from erpack.errors import InputError
from erpack.store import CacheReader, verify_cache
from tests.bench.tiny import make_model_folder
from tests.cluster.conftest import corpus_rows, write_jsonl
from tests.store.fitted import CODEC_ID

LAYER = 2


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A tiny random BERT (seconds to build)."""
    return make_model_folder(tmp_path_factory.mktemp("tiny") / "tiny-bert")


def encode(corpus, out, model, codec=CODEC_ID, **kw):
    kw = {"shard_size": 4, "batch_size": 4, **kw}
    return encode_corpus(str(corpus), out, model=str(model), layer=LAYER, codec=codec, **kw)


def test_fitted_on_the_first_documents_then_streamed(tmp_path, tiny_folder, fitted_codec):
    corpus = write_jsonl(tmp_path / "c.jsonl", corpus_rows(14))
    s = encode(corpus, tmp_path / "fit", tiny_folder, fit_docs=7, seed=3)
    assert (s.encoded, s.fitted_on, s.cache_documents) == (14, 7, 14)
    ref = encode(corpus, tmp_path / "fp32", tiny_folder, codec="fp32")  # the same records, stored exactly
    assert ref.codec_state is None and ref.fitted_on == 0
    with CacheReader(tmp_path / "fit") as r, CacheReader(tmp_path / "fp32") as want:
        assert r.manifest["codec_state"] == s.codec_state and r.ids() == want.ids()
        assert all(np.allclose(r.get(d), want.get(d), atol=1e-5) for d in want.ids())
        # the state is the fit of the first 7 documents with seed 3, in the cache's context
        first = want.ids()[:7]
        again = fit_pipeline(Pipeline.from_spec(CODEC_ID), [(want.get(d), want.get_tokens(d)) for d in first],
                             want.meta, seed=3)
        assert r.codec.state.sha256 == again.state.sha256 == s.codec_state["sha256"]
    assert verify_cache(tmp_path / "fit").ok


def test_a_rerun_and_an_append_code_with_the_caches_state(tmp_path, tiny_folder, fitted_codec):
    rows = corpus_rows(12, seed=1)
    first = write_jsonl(tmp_path / "a.jsonl", rows[:8])
    s = encode(first, tmp_path / "c", tiny_folder, fit_docs=3)
    assert s.fitted_on == 3
    files = sorted(p.name for p in (tmp_path / "c").iterdir())
    again = encode(first, tmp_path / "c", tiny_folder, fit_docs=5)  # resume: nothing to do, nothing refitted
    assert (again.encoded, again.unchanged, again.fitted_on) == (0, 8, 0)
    assert again.codec_state == s.codec_state and sorted(p.name for p in (tmp_path / "c").iterdir()) == files
    more = encode(write_jsonl(tmp_path / "b.jsonl", rows[8:]), tmp_path / "c", tiny_folder, fit_docs=2)
    assert (more.encoded, more.fitted_on, more.cache_documents) == (4, 0, 12)
    assert more.codec_state == s.codec_state
    assert len(list((tmp_path / "c").glob("codec-state-*"))) == 1 and verify_cache(tmp_path / "c").ok


def test_a_fitted_codec_on_a_cache_without_a_state_is_refused(tmp_path, tiny_folder, fitted_codec):
    corpus = write_jsonl(tmp_path / "c.jsonl", corpus_rows(5, seed=2))
    encode(corpus, tmp_path / "c", tiny_folder, codec="fp16")
    with pytest.raises(InputError, match=r"holds 5 documents encoded with codec fp16 and no fitted state.*"
                                         r"erpack compress .* --codec test-tokmean --out NEW"):
        encode(corpus, tmp_path / "c", tiny_folder)
    with pytest.raises(InputError, match="--fit-docs"):
        encode(corpus, tmp_path / "d", tiny_folder, fit_docs=0)


def test_cli_says_what_was_fitted(tmp_path, tiny_folder, fitted_codec, capsys):
    corpus = write_jsonl(tmp_path / "c.jsonl", corpus_rows(6, seed=4))
    argv = ["encode", str(corpus), "-o", str(tmp_path / "c"), "--model", str(tiny_folder), "--layer", str(LAYER),
            "--codec", CODEC_ID, "--fit-docs", "4", "--seed", "2", "--json"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    d = json.loads(lines[-1])
    assert d["fitted_on"] == 4 and d["codec_state"]["bytes"] > 0
    assert any(line.startswith(f"fitted       {CODEC_ID} on the first 4 documents") for line in lines)
    assert main(argv) == 0
    assert any("coded with the cache's fitted state" in line for line in capsys.readouterr().out.splitlines())
