"""Helpers for the watch tests: a register callable without TensorFlow and a watcher on a thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lifecycle.register import checkpoints
from lifecycle.register.watch import Registered, Watcher, WatchEvent, WatchSummary

SETTLE = 0.4
POLL = 0.05


class FakeRegister:
    """Stands in for api.register: reads the checkpoint's files, numbers versions by digest."""

    def __init__(self, fail: dict[str, BaseException] | None = None) -> None:
        self.fail = fail or {}
        self.versions: dict[str, int] = {}
        self.reads: list[tuple[str, str]] = []  # (prefix name, digest of what was read)

    def __call__(self, prefix: Path) -> Registered:
        ref = checkpoints.resolve(prefix)
        self.reads.append((prefix.name, ref.digest))
        if prefix.name in self.fail:
            raise self.fail[prefix.name]
        if ref.digest in self.versions:
            return Registered(self.versions[ref.digest], True, ref.step)
        self.versions[ref.digest] = len(self.versions) + 1
        return Registered(self.versions[ref.digest], False, ref.step)


class Running:
    """A Watcher running on a background thread, with its events."""

    def __init__(self, watcher: Watcher, events: list[WatchEvent]) -> None:
        self.watcher = watcher
        self.events = events
        self.stop = threading.Event()
        self.summary: WatchSummary | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.summary = self.watcher.run(self.stop)

    def kinds(self, kind: str) -> list[WatchEvent]:
        return [e for e in list(self.events) if e.kind == kind]


@contextmanager
def watching(run_dirs: list[Path], register: FakeRegister, **kwargs: object) -> Iterator[Running]:
    events: list[WatchEvent] = []
    watcher = Watcher(run_dirs, register, settle=SETTLE, on_event=events.append, poll=POLL, **kwargs)  # type: ignore[arg-type]
    running = Running(watcher, events)
    running.thread.start()
    try:
        yield running
    finally:
        running.stop.set()
        running.thread.join(timeout=10)
        assert not running.thread.is_alive(), "the watcher did not stop"


def run_once(run_dirs: list[Path], register: FakeRegister, **kwargs: object) -> tuple[WatchSummary, list[WatchEvent]]:
    events: list[WatchEvent] = []
    watcher = Watcher(run_dirs, register, settle=SETTLE, on_event=events.append, poll=POLL, **kwargs)  # type: ignore[arg-type]
    return watcher.run(once=True), events
