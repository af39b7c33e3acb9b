"""Helpers of the tests that read caches from the moto S3 server: copy a local cache up with fsspec's
`put`, and skip where this checkout's CacheReader does not read URLs yet."""

from __future__ import annotations

import inspect

import pytest

from erpack.store import CacheReader

reads_urls = pytest.mark.skipif("storage_options" not in inspect.signature(CacheReader).parameters,
                                reason="CacheReader reads URLs once the store branches are merged")


def upload_cache(local, url: str) -> str:
    """Copy the cache folder `local` to `url` (s3://bucket/prefix) with fsspec's put; returns url."""
    import fsspec

    fs, root = fsspec.url_to_fs(url)
    fs.put(f"{local}/", root, recursive=True)
    return url
