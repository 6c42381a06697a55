"""Crash-safe file primitives: atomic writes and the one cross-process lock.

Every file mlc writes goes through :func:`atomic_write_bytes`: a temp file in the same folder,
fsynced, renamed over the target, and the folder fsynced, so a reader (or a process killed
with SIGKILL at any point) sees either the old content or the new, never a torn file.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lifecycle.errors import LockTimeout, disk_full

DEFAULT_LOCK_TIMEOUT_S = 120.0


def _file_mode() -> int:
    """The mode a plain open() gives a new file (0666 & ~umask); mkstemp would give 0600."""
    umask = os.umask(0)  # read once at import, before any thread could race on the umask
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (renames, creations) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """Flush every file and folder under ``root`` to disk (before it is renamed into place)."""
    for folder, _dirs, files in os.walk(root, topdown=False):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(folder))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (temp file + fsync + rename + dir fsync)."""
    import tempfile  # here: read-only commands (status) write nothing

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError) and (full := disk_full(e, path)) is not None:
            raise full from e
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` with UTF-8 ``text`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


@contextmanager
def locked(lock_path: Path, timeout: float = DEFAULT_LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the cross-process lock at ``lock_path``; raise LockTimeout after ``timeout`` s."""
    from filelock import (  # imported here: read-only commands never lock
        FileLock,
        Timeout,
    )

    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=timeout)
    except Timeout as e:
        raise LockTimeout(
            f"another mlc process holds {lock_path} (waited {timeout:.0f} s); "
            "wait for it to finish and retry"
        ) from e
    try:
        yield
    finally:
        lock.release()


# --- version folders copied in whole ---------------------------------------------------------

INCOMING = ".incoming-"  # the prefix of a version folder still being copied in


@contextmanager
def incoming_folder(target: Path) -> Iterator[Path]:
    """A fresh folder beside ``target`` (``<base>/<N>``) to copy a version into, then
    :func:`rename_into_place`.

    While this process fills it, it holds an flock on the folder's ``.lock`` file; a writer killed
    (even by SIGKILL) releases it, so the next copy into the same base sweeps what it left. On an
    exception the folder goes at once.
    """
    base = Path(target).parent
    base.mkdir(parents=True, exist_ok=True)
    sweep_incoming(base)
    temp = base / f"{INCOMING}{Path(target).name}-{uuid.uuid4().hex[:8]}"
    with open(f"{temp}.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        try:
            temp.mkdir()
            yield temp
        finally:
            shutil.rmtree(temp, ignore_errors=True)  # gone already when renamed into place
            os.unlink(f"{temp}.lock")


def sweep_incoming(base: Path) -> list[str]:
    """Remove the incoming folders under ``base`` whose writer is gone (its lock is free); their names."""
    swept = []
    for lock in sorted(Path(base).glob(f"{INCOMING}*.lock")):
        try:
            with open(lock, "r+") as held:
                try:
                    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # a live writer
                    continue
                folder = lock.with_suffix("")
                if not folder.is_dir():  # its writer has not made it yet (or has just removed it): its own to clean
                    continue
                shutil.rmtree(folder, ignore_errors=True)
                lock.unlink(missing_ok=True)
                swept.append(folder.name)
        except FileNotFoundError:  # its writer finished meanwhile
            continue
    # A folder without a lock file is a leftover of a writer from before locks (a live writer's lock
    # exists before its folder and goes after it).
    for orphan in Path(base).glob(f"{INCOMING}*"):
        if orphan.is_dir() and not Path(f"{orphan}.lock").exists():
            shutil.rmtree(orphan, ignore_errors=True)
            swept.append(orphan.name)
    return swept


def rename_into_place(folder: Path, target: Path) -> Path:
    """Rename a complete ``folder`` to ``target``; where an equal copy got there first, it wins."""
    try:
        os.rename(folder, target)
    except OSError:
        if not Path(target).is_dir():
            raise
        shutil.rmtree(folder, ignore_errors=True)
    fsync_dir(Path(target).parent)
    return Path(target)
