"""create refuses an existing cache; append checks compatibility and changes nothing on mismatch."""

from __future__ import annotations

import pytest

from erpack.errors import ManifestMismatchError, StoreError
from erpack.store import CacheReader, CacheWriter
from tests.store.conftest import make_meta, pipe, records, snapshot


@pytest.fixture
def cache(tmp_path, meta):
    path = tmp_path / "c"
    with CacheWriter(path, meta=meta, codec=pipe()) as w:
        w.commit_shard(records(3))
    return path


def test_create_over_existing_is_refused(cache, meta):
    before = snapshot(cache)
    with pytest.raises(StoreError, match="already holds an erpack cache.*mode='append'.*new folder"):
        CacheWriter(cache, meta=meta, codec=pipe(), mode="create")
    assert snapshot(cache) == before


def test_create_in_a_foreign_folder_is_refused(tmp_path, meta):
    (tmp_path / "notes.txt").write_text("mine")
    for mode in ("create", "append"):
        with pytest.raises(StoreError, match=r"not empty \(notes.txt\)"):
            CacheWriter(tmp_path, meta=meta, codec=pipe(), mode=mode)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_append_under_another_name_of_the_same_weights_is_accepted(cache):
    with CacheWriter(cache, meta=make_meta(model__name="/models/same-weights"), codec=pipe(), mode="append") as w:
        assert len(w) > 0


@pytest.mark.parametrize(
    "change, field",
    [
        ({"model__weights_sha256": "cd" * 32}, "model.weights_sha256"),
        ({"layer": 3}, "layer"),
        ({"max_length": 512}, "max_length"),
        ({"tokenizer__lowercase": False}, "tokenizer"),
    ],
)
def test_append_with_other_meta_is_refused(cache, change, field):
    before = snapshot(cache)
    with pytest.raises(ManifestMismatchError, match=f"written with {field}=.*but this writer asks for {field}=") as e:
        CacheWriter(cache, meta=make_meta(**change), codec=pipe(), mode="append")
    assert "new cache folder" in str(e.value)
    assert snapshot(cache) == before


def test_append_with_other_hidden_size_is_refused(cache):
    with pytest.raises(ManifestMismatchError, match="model.hidden_size=8.*model.hidden_size=16"):
        CacheWriter(cache, meta=make_meta(hidden=16), codec=pipe(), mode="append")


def test_append_with_other_codec_is_refused(cache, meta):
    before = snapshot(cache)
    with pytest.raises(ManifestMismatchError, match="written with codec="):
        CacheWriter(cache, meta=meta, codec=pipe("fp16"), mode="append")
    assert snapshot(cache) == before


def test_append_ignores_fields_outside_the_checks(cache):
    with CacheWriter(cache, meta=make_meta(corpus="other notes"), codec=pipe(), mode="append") as w:
        w.commit_shard(records(1, prefix="new"))
    assert "corpus" not in CacheReader(cache).meta  # the stored meta is kept


def test_check_compatible(cache):
    r = CacheReader(cache)
    r.check_compatible({"layer": 2, "model": {"name": "tiny-bert"}})
    r.check_compatible({}, codec_config=pipe().get_config())
    with pytest.raises(ManifestMismatchError, match="layer=2, but the caller expects layer=5"):
        r.check_compatible({"layer": 5})
    with pytest.raises(ManifestMismatchError, match="model.weights_sha256"):
        r.check_compatible({"model": {"weights_sha256": "00"}})
    with pytest.raises(ManifestMismatchError, match="codec"):
        r.check_compatible({}, codec_config=pipe("fp16").get_config())


def test_one_writer_at_a_time(cache, meta):
    with CacheWriter(cache, meta=meta, codec=pipe(), mode="append"):
        with pytest.raises(StoreError, match="another process is writing"):
            CacheWriter(cache, meta=meta, codec=pipe(), mode="append")
    CacheWriter(cache, meta=meta, codec=pipe(), mode="append").close()  # the lock went with close()


def test_closed_writer_refuses(cache, meta):
    w = CacheWriter(cache, meta=meta, codec=pipe(), mode="append")
    w.close()
    with pytest.raises(StoreError, match="closed"):
        w.commit_shard(records(1, prefix="z"))


def test_create_over_a_cache_with_nothing_committed_starts_over(tmp_path, meta):
    CacheWriter(tmp_path, meta=meta, codec=pipe()).close()
    with CacheWriter(tmp_path, meta=make_meta(layer=3), codec=pipe("fp16")) as w:
        w.commit_shard(records(1))
    assert CacheReader(tmp_path).layer == 3


def test_bad_arguments(tmp_path, meta):
    with pytest.raises(StoreError, match="mode must be"):
        CacheWriter(tmp_path, meta=meta, codec=pipe(), mode="overwrite")
    with pytest.raises(StoreError, match="on_duplicate must be"):
        CacheWriter(tmp_path, meta=meta, codec=pipe(), on_duplicate="keep")
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="is a file"):
        CacheWriter(tmp_path / "file", meta=meta, codec=pipe())
    with pytest.raises(StoreError, match="no manifest.json"):
        CacheReader(tmp_path / "nowhere")
