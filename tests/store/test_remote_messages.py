"""Messages about a cache name it by its location: the URL of a remote cache (reader.path is None there)."""

from __future__ import annotations

import pytest

from erpack.errors import ExportError, InputError, ManifestMismatchError
from erpack.export.quantize import CacheCalibration
from erpack.fit import check_fit
from erpack.store import CacheReader, CacheWriter
from erpack.train.labels import Example, in_cache
from tests.store.conftest import make_meta, pipe, records


@pytest.fixture
def url(tmp_path) -> str:
    url = f"memory://erpack-messages/{tmp_path.name}/cache"
    with CacheWriter(url, meta=make_meta(), codec=pipe()) as w:
        w.commit_shard(records(2))
    return url


def test_a_misfit_names_the_url(url):
    with CacheReader(url) as r:
        assert r.path is None
        with pytest.raises(ManifestMismatchError, match=f"cache {url} does not fit task model m"):
            check_fit(dict(make_meta(layer=3), codec=pipe().get_config()), r, "task model m")


def test_a_missing_labelled_id_names_the_url(url):
    with CacheReader(url) as r:
        with pytest.raises(InputError, match=f"but not in the cache {url} "):
            in_cache([Example(id="nope", label="a", split="train", where="labels.csv:2")], r, "labels.csv")


def test_an_empty_calibration_cache_names_the_url(tmp_path):
    url = f"memory://erpack-messages/{tmp_path.name}/empty"
    CacheWriter(url, meta=make_meta(), codec=pipe()).close()
    with CacheReader(url) as r:
        with pytest.raises(ExportError, match=f"calibration cache {url} holds no records"):
            CacheCalibration(r)
