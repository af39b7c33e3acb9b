"""Where a command's cache lives: a local path, or a URL with `--storage-options JSON`.

    add_storage_options(p)                      # the --storage-options argument, one help text for all
    cache = cache_where(args.cache, args)       # a local path unchanged, or a Location checked to hold a cache
    out = output_where(args.out, args)          # a local path unchanged, or a Location (may not exist yet)

Local paths stay plain paths, so every command keeps its local behaviour (memory-mapped shards, the
same messages). A URL (s3://, gs://, memory://, ...) becomes an erpack.store.location.Location that
carries the storage options, and the library opens it as it opens a folder. A URL given as a cache
to read is checked first (one small read of manifest.json), so an unreachable endpoint, missing
credentials, a bucket that does not exist or an unknown scheme fail at once with the URL named.
"""

from __future__ import annotations

import json

from erpack.cli import CLIError
from erpack.errors import StoreError
from erpack.store.location import Location, is_remote, open_location

HELP = ("fsspec storage options for URL caches, as one JSON object, e.g. '{\"endpoint_url\": "
        "\"http://127.0.0.1:9000\"}' or '{\"anon\": true}' (default: credentials and endpoint from the environment: "
        "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, ...)")


def add_storage_options(p) -> None:
    p.add_argument("--storage-options", metavar="JSON", default=None, help=HELP)


def add_shard_cache(p) -> None:
    p.add_argument("--shard-cache", metavar="DIR", default=None,
                   help="for a cache at a URL: download each shard once into DIR (checked against its sha256) and "
                        "read it there, instead of one range request per record; worth it when every record is "
                        "read more than once (training epochs)")


def storage_options(args) -> dict | None:
    """The --storage-options object, or None; invalid JSON is a CLIError (exit 2) that says what to give."""
    text = getattr(args, "storage_options", None)
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CLIError(f"--storage-options is not valid JSON ({exc.msg} at character {exc.pos}): give one object, "
                       "e.g. '{\"endpoint_url\": \"http://127.0.0.1:9000\"}'") from None
    if not isinstance(value, dict):
        raise CLIError(f"--storage-options must be a JSON object of fsspec options, got {type(value).__name__} "
                       f"{text!r}")
    return value


def output_where(where, args):
    """An output folder: a local path unchanged (str), or a Location for a URL."""
    if where is None or not is_remote(where):
        return where
    return open_location(where, storage_options(args))


def cache_where(where, args, must_exist: bool = True):
    """A cache to read: a local path unchanged (str; the store says what is wrong with it), or a Location
    for a URL, checked to hold manifest.json when `must_exist`."""
    if where is None or not is_remote(where):
        return where
    loc = open_location(where, storage_options(args))  # StoreError for a scheme fsspec does not know
    if must_exist:
        check_cache_url(loc)
    return loc


def check_cache_url(loc: Location) -> None:
    """One small read of manifest.json: the endpoint, credentials and bucket are checked before any work."""
    try:
        loc.read("manifest.json", 0, 1)
    except FileNotFoundError:
        raise StoreError(f"{loc.url}: no cache there (no manifest.json): check the URL, or write a cache there "
                         f"with `erpack encode CORPUS -o {loc.url}`") from None
    except OSError as exc:  # what the file system raised that Location did not recognise
        raise StoreError(f"{loc.url}: cannot read manifest.json ({exc}): check the URL, the endpoint and the "
                         "credentials") from None
