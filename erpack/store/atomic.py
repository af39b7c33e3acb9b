"""Durable file replacement and the writer's folder lock.

A file becomes visible only whole: it is written to `NAME.tmp` in the same folder, flushed and
fsynced, renamed over NAME (atomic on POSIX), and the folder is fsynced so the rename itself
survives a power cut. A crash leaves either the old NAME or the new one, plus at most a `.tmp`.
"""

from __future__ import annotations

import os
from pathlib import Path

from erpack.errors import StoreError

TMP_SUFFIX = ".tmp"

try:  # POSIX advisory locks; where missing (Windows) only one writer per folder is the user's job
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None


def tmp_path(path: Path) -> Path:
    return path.with_name(path.name + TMP_SUFFIX)


def fsync_dir(folder: Path) -> None:
    """Make renames and removals in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(tmp: Path, final: Path) -> None:
    """Rename a fully written, fsynced tmp file over final, durably."""
    os.replace(tmp, final)
    fsync_dir(final.parent)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace path with data so that readers see the old bytes or the new, never a mix."""
    tmp = tmp_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        publish(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class FolderLock:
    """An exclusive flock on the folder itself: one writer per cache. The OS drops it if we die."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._fd = os.open(folder, os.O_RDONLY)
        if fcntl is None:  # pragma: no cover
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            self._fd = None
            raise StoreError(
                f"another process is writing to {folder} (it holds the writer lock): wait for it to "
                f"finish, or write to a different folder"
            ) from None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
