"""Location: the same operations on a local folder, memory:// and the S3 server on loopback."""

import pytest

from erpack.errors import StoreError
from erpack.store.location import open_location


@pytest.fixture(params=["local", "memory", "s3"])
def loc(request, tmp_path):
    if request.param == "local":
        return open_location(tmp_path / "c")
    if request.param == "memory":
        return open_location(f"memory://erpack-test/{tmp_path.name}")
    bucket = request.getfixturevalue("s3_bucket")
    return open_location(f"{bucket}/prefix/c")


def test_write_read_range_list_delete(loc, tmp_path):
    loc.makedirs()
    loc.write_atomic("a.json", b"0123456789")
    assert loc.read("a.json") == b"0123456789"
    assert loc.read("a.json", 2, 5) == b"234"
    assert loc.size("a.json") == 10
    src = tmp_path / "upload.bin"
    src.write_bytes(b"x" * 1000)
    loc.upload(src, "b.bin")
    assert loc.read("b.bin", 990, 1000) == b"x" * 10
    assert loc.listdir() == ["a.json", "b.bin"]
    loc.delete("a.json")
    loc.delete("a.json")  # missing: not an error
    assert not loc.exists("a.json") and loc.exists("b.bin")
    with pytest.raises(FileNotFoundError):
        loc.read("a.json")


def test_missing_bucket_names_it(s3_server):
    loc = open_location("s3://erpack-no-such-bucket/x")
    with pytest.raises(StoreError, match="bucket 'erpack-no-such-bucket' does not exist"):
        loc.write_atomic("manifest.json", b"{}")


def test_unreachable_endpoint_says_so():
    loc = open_location("s3://erpack-x/y", {"endpoint_url": "http://127.0.0.1:9", "key": "k", "secret": "s",
                                            "config_kwargs": {"connect_timeout": 1, "retries": {"max_attempts": 1}}})
    with pytest.raises(StoreError, match="cannot reach the storage endpoint"):
        loc.read("manifest.json")


def test_missing_credentials_say_what_to_set(s3_server, monkeypatch, tmp_path):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    loc = open_location("s3://erpack-x/y", {"skip_instance_cache": True})
    with pytest.raises(StoreError, match="no credentials.*AWS_ACCESS_KEY_ID"):
        loc.read("manifest.json")


@pytest.mark.parametrize("url, match", [("foo://x/y", "fsspec knows no foo://"),
                                        ("gs://x/y", "no file system for gs:// is installed")])
def test_unknown_scheme(url, match):
    with pytest.raises(StoreError, match=match):
        open_location(url)
