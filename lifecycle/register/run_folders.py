"""What a watched run folder holds now: checkpoint snapshots, folder identities and watchdog wake-ups.

:mod:`lifecycle.register.watch` decides from these whether a checkpoint has settled; watchdog's
events only say when to look again. No TensorFlow.
"""

from __future__ import annotations

import os
import queue
import stat
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler

# Event types that mean a file changed. Opens and read-only closes are left out: reading the
# state file and hashing checkpoints would otherwise wake the watcher in an endless loop.
CHANGE_EVENTS = frozenset({"created", "modified", "moved", "deleted", "closed"})


Snapshot = tuple[tuple[str, int, int], ...]


def snapshot(prefix: Path) -> Snapshot | None:
    """(name, size, mtime_ns) of the index and every data file of ``prefix``; None without an index."""
    folder, name = prefix.parent, prefix.name
    try:
        names = [e.name for e in os.scandir(folder)
                 if e.name == name + ".index" or e.name.startswith(name + ".data-")]
    except OSError:
        return None
    if name + ".index" not in names:
        return None
    stats = []
    for n in sorted(names):
        try:
            st = os.stat(folder / n)
        except FileNotFoundError:
            return None  # changing under us: look again next tick
        stats.append((n, st.st_size, st.st_mtime_ns))
    return tuple(stats)


def folder_identity(folder: Path) -> tuple[int, int] | None:
    """(device, inode) of a folder, None if it is not one: a recreated folder gets a new one."""
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


class WakeHandler(FileSystemEventHandler):
    """Wakes the watcher with (run folder, lost?); lost means the watched folder itself went away."""

    def __init__(self, run_dir: Path, wake: queue.Queue[tuple[Path, bool]]) -> None:
        self.run_dir = run_dir
        self.wake = wake

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in CHANGE_EVENTS:
            return
        # inotify ends a watch when its folder is deleted (or moved away); even if a new folder
        # with the same inode number appears, it needs a new watch.
        lost = event.is_directory and event.event_type in ("deleted", "moved") and \
            os.fsdecode(event.src_path) == str(self.run_dir)
        self.wake.put((self.run_dir, lost))
