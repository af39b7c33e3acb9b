"""Durable file and folder replacement, and the writer's folder lock.

A file becomes visible only whole: it is written to `NAME.tmp` in the same folder, flushed and
fsynced, renamed over NAME (atomic on POSIX), and the folder is fsynced so the rename itself
survives a power cut. A crash leaves either the old NAME or the new one, plus at most a `.tmp`.

A folder (a task model) is written whole by `atomic_folder`: filled as a hidden sibling
`.NAME.partial-PID`, fsynced, then renamed into place; an existing NAME is swapped out in one step.
"""

from __future__ import annotations

import ctypes
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from erpack.errors import OutputExistsError, StoreError

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


# ---- whole folders (task models, pruned models) ------------------------------------------------
PARTIAL_TAG = ".partial-"  # `.NAME.partial-PID`: a folder being written, or the old one just swapped out
OLD_TAG = ".old-"  # `.NAME.old-PID`: the old folder set aside where an atomic swap is not available


def fsync_file(path) -> None:
    """Make a file's written bytes durable (before it is renamed into place)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """fsync every file under `folder`, then every folder bottom-up, so the tree survives a power cut."""
    for root, _, files in os.walk(folder, topdown=False):
        for name in files:
            fsync_file(os.path.join(root, name))
        fsync_dir(Path(root))


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):  # pragma: no cover - not glibc / not Linux
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    return False  # e.g. a file system without RENAME_EXCHANGE: the caller falls back to two renames


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's live process
        return True
    return True


def leftovers(final: Path) -> list[Path]:
    """Siblings a killed writer of `final` left: `.NAME.partial-PID` (a folder, or an export's file) and
    `.NAME.old-PID`."""
    out = []
    for p in final.parent.glob(f".{final.name}.*-*"):
        tag, _, pid = p.name[len(final.name) + 1:].rpartition("-")
        if f"{tag}-" in (PARTIAL_TAG, OLD_TAG) and pid.isdigit() and not _pid_alive(int(pid)):
            out.append(p)
    return sorted(out)


def clean_leftovers(final: Path) -> list[str]:
    """Remove what killed writers of `final` left; returns what was done, one line each.

    A set-aside old folder (`.old-`) with no `final` beside it is moved back: the kill came between
    the two renames of a non-atomic swap, and the old folder is the last complete one.
    """
    done = []
    for p in leftovers(final):
        if p.name.startswith(f".{final.name}{OLD_TAG}") and not final.exists():
            os.rename(p, final)
            done.append(f"restored {final} from {p.name}, left by an interrupted overwrite")
        else:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            done.append(f"removed {p}, left by an interrupted write of {final}")
    if done:
        fsync_dir(final.parent)
    return done


def check_output(final: Path, overwrite: bool, what: str = "output") -> None:
    """Refuse an existing `final` unless overwrite (OutputExistsError names it and says --overwrite)."""
    if (final.exists() or final.is_symlink()) and not overwrite:
        raise OutputExistsError(f"{what} {final} exists already; choose another folder, or pass --overwrite to "
                                f"replace it (the old one stays until the new one is complete)")


def replace_folder(tmp: Path, final: Path) -> None:
    """Move the complete folder `tmp` to `final`, replacing any old one atomically; remove the old one."""
    if not final.exists():
        os.rename(tmp, final)
        fsync_dir(final.parent)
        return
    if not final.is_dir() or final.is_symlink():
        raise OutputExistsError(f"{final} exists and is not a folder; remove it or choose another output")
    if _exchange(tmp, final):  # one step: readers see the old folder or the new one
        old = tmp  # now holds the old folder
    else:  # pragma: no cover - two renames; a kill between them is repaired by clean_leftovers
        old = final.with_name(f".{final.name}{OLD_TAG}{os.getpid()}")
        os.rename(final, old)
        os.rename(tmp, final)
    fsync_dir(final.parent)
    shutil.rmtree(old)


@contextmanager
def atomic_folder(final, overwrite: bool = False, what: str = "output", notes: list | None = None):
    """Write a folder whole or not at all: yields a temporary sibling to fill; on success its files and
    folders are fsynced and it is renamed to `final` (replacing an existing one only with overwrite).

    After a kill at any point `final` is the old folder or the new one, never a mix; the next write
    cleans the temporary folders a killed run left (what it did is appended to `notes`). On an error
    the temporary folder is removed and `final` is untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    done = clean_leftovers(final)
    if notes is not None:
        notes.extend(done)
    check_output(final, overwrite, what)
    tmp = final.with_name(f".{final.name}{PARTIAL_TAG}{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        fsync_tree(tmp)
        check_output(final, overwrite, what)  # another writer may have made it meanwhile
        replace_folder(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
