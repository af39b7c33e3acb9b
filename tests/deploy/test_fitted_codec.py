"""A bundle of a task model whose cache codec is fitted and reads token ids (the store tests' TokenMean):
the bundle carries the cache's fitted state, the runtime passes each text's token ids to the codec, and
text predictions equal the cached ones; a cache fitted otherwise is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from erpack.codecs.state import context_of
from erpack.deploy import BundleRuntime, verify_bundle
from erpack.errors import ManifestMismatchError
from tests.export.conftest import LAYER, MAX_LENGTH, make_task_model
from tests.store.fitted import CODEC_ID


def _cache(path, tiny, fit_on: slice):
    from erpack.codecs import Pipeline
    from erpack.encode import cache_meta
    from erpack.models import load_model, split_model
    from erpack.store import CacheWriter

    loaded = load_model(str(tiny["folder"]))
    lower, _ = split_model(loaded.model, LAYER)
    records, ids = [], {}
    with torch.no_grad():
        for r in tiny["rows"]:
            enc = loaded.tokenizer(r["text"], truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
            records.append((r["id"], lower(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])[0].numpy()))
            ids[r["id"]] = enc["input_ids"][0].numpy().astype(np.int64)
    meta = cache_meta(loaded, LAYER, MAX_LENGTH)
    codec = Pipeline.from_spec(CODEC_ID).fit([(x, ids[d]) for d, x in records[fit_on]], context=context_of(meta))
    with CacheWriter(path, meta=meta, codec=codec) as w:
        w.commit_shard(records, token_ids=ids)
    return path


def test_a_fitted_codec_travels_with_the_bundle(tiny, tmp_path, fitted_codec):  # fitted_codec: tests/conftest.py
    from erpack.deploy.build import write_bundle

    cache = _cache(tmp_path / "cache", tiny, slice(0, 12))
    make_task_model(tiny["folder"], cache).save(tmp_path / "task")
    s = write_bundle(tmp_path / "task", tmp_path / "bundle", calibration_cache=cache, quantize=False)
    assert "codec-state.safetensors" in s.files and verify_bundle(tmp_path / "bundle").ok
    rt = BundleRuntime(tmp_path / "bundle")
    ids = [r["id"] for r in tiny["rows"]]
    text = rt.predict_texts([r["text"] for r in tiny["rows"]], ids=ids).rows
    cached = rt.predict_ids(cache, ids).rows
    assert max(abs(a["probabilities"][k] - b["probabilities"][k]) for a, b in zip(text, cached)
               for k in a["probabilities"]) < 1e-4
    other = _cache(tmp_path / "other", tiny, slice(12, 24))  # the same codec fitted on other records
    with pytest.raises(ManifestMismatchError, match="fitted codec state"):
        rt.predict_ids(other, ids[:2])
    assert rt.predict_ids(other, ids[:2], allow_other_codec=True).rows[0]["source"] == "cache"
