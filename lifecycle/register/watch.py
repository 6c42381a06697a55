"""Watch training run folders and register each new checkpoint once it is complete and settled.

A checkpoint in a watched run folder counts once:

1. the folder's ``checkpoint`` state file names it (``model_checkpoint_path`` or
   ``all_model_checkpoint_paths``); trainers write that file after the checkpoint's files;
2. its ``.index`` and every ``.data-NNNNN-of-MMMMM`` shard exist and the index is whole;
3. none of those files has changed (size, mtime) for ``settle`` seconds.

Only then is it handed to the register callable, so a half-written file is never read.
Watchdog events only say *when* to look; what to do is always decided from the files, so a
missed or duplicated event costs nothing. An initial scan (and one whenever a folder is
(re)created, plus a slow periodic one) picks up what landed while nobody was watching.
Registration is idempotent by content digest, so a restarted watcher registers nothing twice.

This module does not import TensorFlow; the register callable does (see :func:`api.watch`).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch

from lifecycle.errors import (
    CheckpointError,
    FailedPrecondition,
    LifecycleError,
    PreviouslyFailed,
    UsageError,
)
from lifecycle.register import checkpoints
from lifecycle.register.run_folders import Snapshot, WakeHandler, folder_identity, snapshot
from lifecycle.store.registry import Attempt, ModelRecord

DEFAULT_SETTLE_S = 2.0
POLL_S = 0.2
# A full rescan of every folder now and then, in case the OS dropped events (inotify overflow).
RESCAN_S = 30.0


class _BenignStopRace(logging.Filter):
    """Drops watchdog's error about an emitter read racing its own stop (harmless on shutdown)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "called when the thread is inactive" not in record.getMessage()


logging.getLogger("watchdog.observers.inotify").addFilter(_BenignStopRace())

# Event kinds that settle one checkpoint; --max-events counts these.
OUTCOMES = frozenset({"registered", "known", "failed", "skipped"})


@dataclass
class WatchEvent:
    """Something the watcher did or saw, for the progress display and ``--json``."""

    kind: str  # watching | waiting | gone | seen | incomplete | registering | registered | known | failed
    #            | skipped | promoting | promoted | kept | promote-failed | stopped
    message: str
    run_dir: str | None = None
    checkpoint: str | None = None
    step: int | None = None
    version: int | None = None
    miou: float | None = None
    pending: int = 0  # checkpoints seen and not yet handled (settling, incomplete, queued)
    time: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return asdict(self)


@dataclass
class Registered:
    """What the register callable reports for one checkpoint."""

    version: int
    reused: bool
    step: int | None = None
    miou: float | None = None


RegisterFn = Callable[[Path], Registered]
# Promote a version; returns a one-line description. FailedPrecondition means "refused" (e.g.
# the quality gate); any other LifecycleError means the attempt failed.
PromoteFn = Callable[[int], str]


@dataclass
class WatchSummary:
    """The result of a watch session."""

    run_dirs: list[str]
    registered: list[int] = field(default_factory=list)
    known: list[int] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    promoted: list[int] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)
    outcomes: int = 0
    stopped_by: str = ""  # signal | max-events | exit-after | once

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return asdict(self)


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


@dataclass
class _Candidate:
    prefix: Path
    run_dir: Path
    snapshot: Snapshot | None
    since: float
    # the snapshot last reported incomplete, wrapped so that "no files" (None) is reportable too
    incomplete_reported: tuple[Snapshot | None] | None = None


@dataclass
class _Armed:
    watch: ObservedWatch | None = None
    identity: tuple[int, int] | None = None
    ever: bool = False


# --- the watcher ----------------------------------------------------------------------------


class Watcher:
    """Registers every settled checkpoint of some run folders exactly once; see the module doc.

    ``run(stop)`` blocks until ``stop`` is set, ``max_events`` checkpoints were settled,
    ``exit_after`` seconds passed, or (``once``) nothing is left to wait for after the
    initial scan. Registration and promotion run on the calling thread, one at a time.
    """

    def __init__(
        self,
        run_dirs: Sequence[Path | str],
        register: RegisterFn,
        promote: PromoteFn | None = None,
        settle: float = DEFAULT_SETTLE_S,
        on_event: Callable[[WatchEvent], None] | None = None,
        poll: float = POLL_S,
        rescan: float = RESCAN_S,
    ) -> None:
        self.run_dirs = list(dict.fromkeys(Path(os.path.abspath(d)) for d in run_dirs))
        self.register = register
        self.promote = promote
        self.settle = settle
        self.on_event = on_event
        self.poll = poll
        self.rescan = rescan
        self.wake: queue.Queue[tuple[Path, bool]] = queue.Queue()
        self.pending: dict[Path, _Candidate] = {}
        # prefix -> the file snapshot it had when handled; changed files make it new again.
        self.done: dict[Path, Snapshot | None] = {}
        self.armed: dict[Path, _Armed] = {d: _Armed() for d in self.run_dirs}
        self.summary = WatchSummary(run_dirs=[_display(d) for d in self.run_dirs])
        self._observer: BaseObserver | None = None
        self._once = False
        # Full rescans started so far: lets a caller wait until every folder was looked at again.
        self.full_scans = 0

    # -- events --

    def emit(self, kind: str, message: str, **fields: Any) -> None:
        """Report one event to ``on_event``."""
        if self.on_event is not None:
            self.on_event(WatchEvent(kind, message, pending=len(self.pending), **fields))

    # -- the loop --

    def run(
        self,
        stop: threading.Event | None = None,
        max_events: int | None = None,
        exit_after: float | None = None,
        once: bool = False,
    ) -> WatchSummary:
        """Watch until told to stop; returns what happened."""
        stop = stop or threading.Event()
        self._once = once
        deadline = None if exit_after is None else time.monotonic() + exit_after
        self._observer = Observer()
        self._observer.daemon = True
        self._observer.start()
        try:
            last_full_scan = time.monotonic()
            self._arm_all(first=True)
            while True:
                if stop.is_set():
                    self.summary.stopped_by = "signal"
                    break
                if max_events is not None and self.summary.outcomes >= max_events:
                    self.summary.stopped_by = "max-events"
                    break
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    self.summary.stopped_by = "exit-after"
                    break
                if once and not self.pending:
                    self.summary.stopped_by = "once"
                    break
                dirty, lost = self._drain(timeout=self.poll)
                self._arm_all(lost=lost)
                if time.monotonic() - last_full_scan >= self.rescan:
                    dirty |= {d for d, a in self.armed.items() if a.identity is not None}
                    last_full_scan = time.monotonic()
                    self.full_scans += 1
                for d in sorted(dirty):
                    self._scan(d)
                self._settle(stop, max_events)
        finally:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
        self.emit("stopped", f"stopped ({self.summary.stopped_by})")
        return self.summary

    def _drain(self, timeout: float) -> tuple[set[Path], set[Path]]:
        """Wait up to ``timeout`` for a wake-up; return the folders to rescan and those whose watch died."""
        dirty: set[Path] = set()
        lost: set[Path] = set()
        try:
            item = self.wake.get(timeout=timeout)
            while True:
                dirty.add(item[0])
                if item[1]:
                    lost.add(item[0])
                item = self.wake.get_nowait()
        except queue.Empty:
            pass
        return dirty, lost

    # -- arming observers (and re-arming a folder that was deleted and recreated) --

    def _arm_all(self, first: bool = False, lost: Iterable[Path] = ()) -> None:
        """Schedule an observer on every run folder that exists and has none (or a dead one)."""
        lost = set(lost)
        for d in self.run_dirs:
            armed = self.armed[d]
            identity = folder_identity(d)
            if d not in lost and identity is not None and identity == armed.identity and armed.watch is not None:
                continue
            if armed.watch is not None:
                self._unschedule(armed.watch)
                armed.watch = None
            if identity is None:
                if armed.identity is not None:
                    armed.identity = None
                    self._forget(d)
                    self.emit("gone", f"{_display(d)} was removed; waiting for it to come back", run_dir=_display(d))
                elif first:
                    self.emit("waiting", f"{_display(d)} does not exist yet; waiting for it", run_dir=_display(d))
                continue
            again = armed.ever or d in lost
            if d in lost or (armed.identity is not None and armed.identity != identity):
                self._forget(d)  # a recreated folder: checkpoints pending in the old one are gone
            try:
                assert self._observer is not None
                armed.watch = self._observer.schedule(WakeHandler(d, self.wake), str(d), recursive=False)
            except OSError:
                armed.identity = None
                continue  # removed again between the stat and the schedule: next tick
            armed.identity, armed.ever = identity, True
            self.emit("watching", f"{'watching again' if again else 'watching'} {_display(d)}", run_dir=_display(d))
            self._scan(d)

    def _unschedule(self, watch: ObservedWatch) -> None:
        assert self._observer is not None
        try:
            self._observer.unschedule(watch)
        except (KeyError, OSError):
            pass  # the emitter already died with its folder

    def _forget(self, run_dir: Path) -> None:
        for key in [k for k, c in self.pending.items() if c.run_dir == run_dir]:
            del self.pending[key]

    # -- finding and settling checkpoints --

    def _scan(self, run_dir: Path) -> None:
        try:
            named = checkpoints.state_prefixes(run_dir)
        except CheckpointError:
            return  # a state file caught mid-write: its next change wakes us again
        now = time.monotonic()
        for prefix in sorted(named, key=lambda p: (checkpoints.step_of(p) or -1, p.name)):
            if prefix in self.pending:
                continue
            snap = snapshot(prefix)
            if prefix in self.done and self.done[prefix] == snap:
                continue
            self.pending[prefix] = _Candidate(prefix, run_dir, snap, now)
            self.emit("seen", f"{_display(prefix)}: waiting for its files to settle ({self.settle:g}s)",
                      run_dir=_display(run_dir), checkpoint=_display(prefix), step=checkpoints.step_of(prefix))
        listed = set(named)
        for key in [k for k, c in self.pending.items() if c.run_dir == run_dir and k not in listed]:
            del self.pending[key]  # no longer in the state file (e.g. max_to_keep removed it)

    def _settle(self, stop: threading.Event, max_events: int | None) -> None:
        now = time.monotonic()
        ready: list[_Candidate] = []
        gone: list[Path] = []
        for c in self.pending.values():
            snap = snapshot(c.prefix)
            if snap != c.snapshot:
                c.snapshot, c.since = snap, now
                continue
            if now - c.since < self.settle:
                continue
            try:
                if snap is None:
                    raise CheckpointError(f"checkpoint {c.prefix} has no index file ({c.prefix.name}.index) yet")
                checkpoints.checkpoint_files(c.prefix)
            except (CheckpointError, OSError) as e:
                if c.incomplete_reported != (snap,):
                    c.incomplete_reported = (snap,)
                    then = "left alone (--once)" if self._once else "waiting for the rest"
                    self.emit("incomplete", f"{getattr(e, 'message', e)}; {then}",
                              run_dir=_display(c.run_dir), checkpoint=_display(c.prefix),
                              step=checkpoints.step_of(c.prefix))
                if self._once:
                    gone.append(c.prefix)  # nothing will complete it while we wait
                continue
            ready.append(c)
        for prefix in gone:
            del self.pending[prefix]
        newest: tuple[int, Registered, _Candidate] | None = None
        for c in sorted(ready, key=lambda c: (checkpoints.step_of(c.prefix) or -1, str(c.prefix))):
            if stop.is_set() or (max_events is not None and self.summary.outcomes >= max_events):
                return
            del self.pending[c.prefix]
            result = self._handle(c)
            if result is not None and not result.reused:
                order = result.step if result.step is not None else -1
                if newest is None or order >= newest[0]:
                    newest = (order, result, c)
        # In a burst, only the newest new version is offered to the gate: promoting each in
        # turn would roll the servers through versions that are already outdated.
        if newest is not None and self.promote is not None and not stop.is_set():
            self._promote(newest[1], newest[2])

    def _handle(self, c: _Candidate) -> Registered | None:
        where = {"run_dir": _display(c.run_dir), "checkpoint": _display(c.prefix),
                 "step": checkpoints.step_of(c.prefix)}
        self.done[c.prefix] = c.snapshot
        self.summary.outcomes += 1
        self.emit("registering", f"{_display(c.prefix)}: exporting and validating", **where)
        try:
            result = self.register(c.prefix)
        except PreviouslyFailed as e:
            self.summary.failed.append(_display(c.prefix))
            self.emit("skipped", e.message, **where)
            return None
        except LifecycleError as e:
            self.summary.failed.append(_display(c.prefix))
            self.emit("failed", e.message, **where)
            return None
        except Exception as e:  # noqa: BLE001 - one bad checkpoint must not end the watch
            self.summary.failed.append(_display(c.prefix))
            self.emit("failed", f"unexpected {type(e).__name__}: {e}", **where)
            return None
        miou = "" if result.miou is None else f", eval mIoU {result.miou:.3f}"
        if result.reused:
            self.summary.known.append(result.version)
            self.emit("known", f"{_display(c.prefix)} is already version {result.version}{miou}",
                      version=result.version, miou=result.miou, **where)
        else:
            self.summary.registered.append(result.version)
            self.emit("registered", f"{_display(c.prefix)} -> version {result.version}{miou}",
                      version=result.version, miou=result.miou, **where)
        return result

    def _promote(self, result: Registered, c: _Candidate) -> None:
        assert self.promote is not None
        where = {"run_dir": _display(c.run_dir), "checkpoint": _display(c.prefix), "step": result.step,
                 "version": result.version, "miou": result.miou}
        self.emit("promoting", f"offering version {result.version} to the quality gate and the safe rollout", **where)
        try:
            message = self.promote(result.version)
        except FailedPrecondition as e:
            self.summary.kept.append(result.version)
            self.emit("kept", f"version {result.version} not promoted: {e.message}", **where)
        except LifecycleError as e:
            self.emit("promote-failed", f"promoting version {result.version} failed: {e.message}", **where)
        except Exception as e:  # noqa: BLE001 - the watch goes on
            self.emit("promote-failed", f"promoting version {result.version} failed: {type(e).__name__}: {e}",
                      **where)
        else:
            self.summary.promoted.append(result.version)
            self.emit("promoted", message, **where)


def failed_before(rec: ModelRecord, digest: str, definition: Path) -> Attempt | None:
    """The latest attempt at ``digest`` that failed a validation check since the definition last changed.

    Export failures (a full disk, a killed process) are not remembered: they may pass next time.
    """
    try:
        changed = definition.stat().st_mtime
    except OSError:
        changed = 0.0
    for a in reversed(rec.attempts):
        if a.checkpoint_digest != digest or a.check == "export":
            continue
        try:
            when = datetime.fromisoformat(a.time).timestamp()
        except ValueError:
            continue
        return a if when >= int(changed) else None
    return None


def check_arguments(run_dirs: Sequence[str | Path], settle: float, max_events: int | None,
                    exit_after: float | None) -> None:
    """Refuse what ``mlc watch`` cannot watch: no folders, a checkpoint prefix, negative times."""
    if not run_dirs:
        raise UsageError("name at least one run folder to watch")
    for d in run_dirs:
        p = Path(d)
        if (p.exists() and not p.is_dir()) or p.with_name(p.name + ".index").exists():
            raise UsageError(
                f"{d} is not a folder: mlc watch takes run folders (where a trainer writes checkpoints), "
                f"e.g. mlc watch {p.parent}"
            )
    if settle < 0:
        raise UsageError("--settle must be 0 or more seconds")
    if max_events is not None and max_events < 1:
        raise UsageError("--max-events must be at least 1")
    if exit_after is not None and exit_after <= 0:
        raise UsageError("--exit-after must be a positive number of seconds")
