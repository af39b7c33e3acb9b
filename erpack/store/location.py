"""Where a cache (or any erpack output folder) lives: a local folder or an fsspec URL.

    loc = open_location("s3://bucket/prefix")          # or a Path, "file:///x", "memory://t"
    loc.read("manifest.json"); loc.read(name, start, end)   # whole file, or one byte range
    loc.write_atomic("manifest.json", data)             # whole or not at all, under its final name
    loc.upload(local_file, "shard-000001.ers")          # a finished local file, published whole

Local folders (plain paths and file:// URLs) keep the fast path: `loc.local` is their Path, and
the store memory-maps them. Every other scheme goes through fsspec (s3fs for s3://), with
credentials and endpoint from the standard environment (AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, ...)
or `storage_options` (the keyword arguments of the fsspec file system, e.g. {"anon": true} or
{"endpoint_url": "http://127.0.0.1:9000"}; the CLI's --storage-options JSON).

Object stores have no rename, but a single PUT (and a completed multipart upload) becomes visible
whole or not at all: `write_atomic` and `upload` rely on that, so a reader never sees a partial
object under its final key. Errors of the remote side (unreachable endpoint, missing credentials,
no such bucket, no fsspec implementation for the scheme) become StoreError naming the URL and
what to do.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from erpack.errors import StoreError
from erpack.store.atomic import publish, write_atomic

# Bounded retries and timeouts for S3 unless the caller sets its own (botocore's defaults retry an
# unreachable endpoint for a long time before saying so).
# s3fs retries transient errors itself (5 tries with a short backoff); botocore's own retries come on
# top of that, so one retry there keeps an unreachable endpoint's error to seconds, not half a minute.
_S3_DEFAULTS = {"config_kwargs": {"connect_timeout": 5, "read_timeout": 60,
                                  "retries": {"max_attempts": 2, "mode": "standard"}}}


def is_url(where) -> bool:
    """True for "scheme://..." strings (file:// included); False for paths."""
    return isinstance(where, str) and "://" in where


def is_remote(where) -> bool:
    """A URL or Location that is not a local folder (file:// and local:// URLs are local)."""
    if isinstance(where, Location):
        return not where.is_local
    return is_url(where) and not where.lower().startswith(("file://", "local://"))


@dataclass
class Location:
    """A folder: `local` is its Path for local folders (None otherwise); `fs` and `root` the fsspec
    file system and the folder's path in it for everything else. `url` names it in messages."""

    url: str
    local: Path | None = None
    fs: object = None
    root: str = ""
    storage_options: dict = field(default_factory=dict)

    @property
    def is_local(self) -> bool:
        return self.local is not None

    def __str__(self) -> str:
        return self.url

    def __truediv__(self, name: str) -> str:
        """The URL (or path) of a file in this folder, for messages."""
        return str(self.local / name) if self.local is not None else f"{self.url}/{name}"

    def child(self, name: str) -> Location:
        """A sub-folder of this one."""
        if self.local is not None:
            return Location(str(self.local / name), local=self.local / name)
        return Location(f"{self.url}/{name}", fs=self.fs, root=f"{self.root}/{name}",
                        storage_options=self.storage_options)

    def _key(self, name: str) -> str:
        return f"{self.root}/{name}" if self.root else name

    # ---- reading ------------------------------------------------------------------------------
    def exists(self, name: str = "") -> bool:
        if self.local is not None:
            return (self.local / name).exists() if name else self.local.is_dir()
        with self._errors(name):
            return bool(self.fs.exists(self._key(name) if name else self.root))

    def read(self, name: str, start: int | None = None, end: int | None = None) -> bytes:
        """The file's bytes, or bytes [start, end) of it (one range request on object storage).
        FileNotFoundError if it does not exist."""
        if self.local is not None:
            with open(self.local / name, "rb") as f:
                if start is None:
                    return f.read()
                f.seek(start)
                return f.read((end - start) if end is not None else -1)
        with self._errors(name):
            return self.fs.cat_file(self._key(name), start=start, end=end)

    def read_ranges(self, names: list[str], starts: list[int], ends: list[int]) -> list[bytes | None]:
        """Bytes [start, end) of several files, concurrently on object storage (fsspec's cat_ranges); None
        where a read failed (read it alone to learn why)."""
        if self.local is not None:
            return [self.read(n, s, e) for n, s, e in zip(names, starts, ends)]
        with self._errors(""):
            got = self.fs.cat_ranges([self._key(n) for n in names], list(starts), list(ends), on_error="return")
        return [g if isinstance(g, bytes) else None for g in got]

    def size(self, name: str) -> int:
        if self.local is not None:
            return (self.local / name).stat().st_size
        with self._errors(name):
            return int(self.fs.size(self._key(name)))

    def listdir(self) -> list[str]:
        """Names of the files directly in this folder (sorted); [] if the folder does not exist."""
        if self.local is not None:
            return sorted(p.name for p in self.local.iterdir() if not p.is_dir()) if self.local.is_dir() else []
        with self._errors(""):
            try:
                entries = self.fs.ls(self.root, detail=True, refresh=True)
            except FileNotFoundError:
                return []
            finally:  # a cached listing would answer exists/size for files other writers add later
                self.fs.invalidate_cache(self.root)
        return sorted(e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e.get("type") != "directory")

    # ---- writing ------------------------------------------------------------------------------
    def makedirs(self) -> None:
        if self.local is not None:
            self.local.mkdir(parents=True, exist_ok=True)
            return
        with self._errors(""):
            self.fs.makedirs(self.root, exist_ok=True)

    def write_atomic(self, name: str, data: bytes) -> None:
        """Write the file whole under its final name: a local temp file, fsync and rename; one PUT on
        object storage (visible whole or not at all)."""
        if self.local is not None:
            write_atomic(self.local / name, data)
            return
        with self._errors(name):
            self.fs.pipe_file(self._key(name), bytes(data))

    def upload(self, local_file: Path, name: str) -> None:
        """Publish a finished local file under `name`: a rename into a local folder (the file must be
        on the same file system), an upload otherwise (visible only once complete)."""
        if self.local is not None:
            publish(Path(local_file), self.local / name)
            return
        with self._errors(name):
            self.fs.put_file(str(local_file), self._key(name))

    def delete(self, name: str) -> None:
        """Remove the file; a missing file is not an error."""
        if self.local is not None:
            (self.local / name).unlink(missing_ok=True)
            return
        with self._errors(name), contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self._key(name))

    # ---- errors -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _errors(self, name: str):
        """Turn what the remote side raises into a StoreError that names the URL and what to do.
        FileNotFoundError of a missing file passes through (callers say what was missing)."""
        where = self / name if name else self.url
        try:
            yield
        except FileNotFoundError as exc:
            if "bucket does not exist" in str(exc).lower() or "nosuchbucket" in str(exc).lower():
                bucket = self.root.split("/", 1)[0]
                raise StoreError(f"{where}: the bucket {bucket!r} does not exist: create it, or check the URL"
                                 ) from None
            raise
        except PermissionError as exc:
            raise StoreError(f"{where}: access denied ({exc}): check the credentials (AWS_ACCESS_KEY_ID, "
                             f"AWS_SECRET_ACCESS_KEY or --storage-options) and the bucket's policy") from None
        except Exception as exc:
            problem = _remote_problem(exc, self.storage_options.get("endpoint_url"))
            if problem is None:
                raise
            raise StoreError(f"{where}: {problem}") from None


def _remote_problem(exc: Exception, endpoint: str | None = None) -> str | None:
    """What to tell the user about an exception of the remote file system, or None if unknown."""
    kind = type(exc).__name__
    if kind in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError",
                "ClientConnectorError") or isinstance(exc, ConnectionError):
        endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL")
        shown = f" {endpoint}" if endpoint else ""
        return (f"cannot reach the storage endpoint{shown} ({exc}): check the endpoint (AWS_ENDPOINT_URL or "
                f"--storage-options '{{\"endpoint_url\": ...}}') and the network")
    if kind in ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"):
        return (f"no credentials for object storage ({exc}): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                f"(or AWS_PROFILE), or pass --storage-options '{{\"key\": ..., \"secret\": ...}}' "
                f"('{{\"anon\": true}}' for a public bucket)")
    if kind in ("ClientError", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return f"the storage service refused the request ({exc}): check the credentials and the URL"
    return None


def open_location(where, storage_options: dict | None = None) -> Location:
    """A Location for a path, a file:// URL or any fsspec URL (s3://, gs://, memory://, ...).
    `storage_options` go to the fsspec file system. Raises StoreError for a scheme with no fsspec
    implementation installed."""
    if isinstance(where, Location):
        return where
    if isinstance(where, os.PathLike) or not is_url(where):
        return Location(str(where), local=Path(where))
    url = where.rstrip("/")
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("file", "local"):
        path = Path(url.split("://", 1)[1])
        return Location(str(path), local=path)
    options = dict(storage_options or {})
    if scheme in ("s3", "s3a"):
        for key, value in _S3_DEFAULTS.items():
            options.setdefault(key, value)
        endpoint = os.environ.get("AWS_ENDPOINT_URL")
        if endpoint and "endpoint_url" not in options and "endpoint_url" not in options.get("client_kwargs", {}):
            # fsspec caches file systems by their arguments, not the environment: name the endpoint so
            # a change of AWS_ENDPOINT_URL in this process reaches a new file system, not a cached one
            options["endpoint_url"] = endpoint
    try:
        import fsspec

        fs, root = fsspec.url_to_fs(url, **options)
    except ImportError as exc:
        raise StoreError(f"{url}: no file system for {scheme}:// is installed ({exc}): install the `scale` "
                         f"extra (pip install 'erpack[scale]') or the fsspec package for {scheme}://") from None
    except ValueError as exc:
        if "protocol not known" in str(exc).lower():
            raise StoreError(f"{url}: fsspec knows no {scheme}:// file system: use a local path or a URL such "
                             f"as s3://bucket/prefix") from None
        raise StoreError(f"{url}: {exc}") from None
    except TypeError as exc:  # an option the file system does not take
        raise StoreError(f"{url}: bad storage options {sorted(options)} ({exc}): see the file system's "
                         f"documentation for the keys it accepts") from None
    return Location(url, fs=fs, root=root.rstrip("/"), storage_options=dict(storage_options or {}))
