"""Publishing a staged SavedModel: validate it, write its own record, claim N and record the version.

Both sources of versions end here: a checkpoint's export (:mod:`lifecycle.register.export`) and
a SavedModel folder's copy (:mod:`lifecycle.register.savedmodels`). A staging folder is private
(:class:`Staging`, held by a per-staging lock); a failed check records the attempt
(:func:`record_failure`) and publishes nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from filelock import FileLock, Timeout

from lifecycle import progress
from lifecycle.errors import LifecycleError, ValidationFailed
from lifecycle.failpoints import failpoint
from lifecycle.store import outbox, registry
from lifecycle.store.config import ModelDefinition, Paths, ValidationSettings
from lifecycle.store.files import atomic_write_text, fsync_dir, fsync_tree

STAGING_PREFIX = ".staging-"
LOCK_SUFFIX = ".lock"


class Staging:
    """A private staging folder under model_repo/<model>/, held by a per-staging lock.

    The lock (an flock, released by the kernel when the process dies) tells a live register's
    staging folder from one a killed register left behind.
    """

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        name = f"{STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.dir = model_dir / name
        self.lock_path = model_dir / (name + LOCK_SUFFIX)
        self._lock = FileLock(str(self.lock_path))

    def __enter__(self) -> Staging:
        self.model_dir.mkdir(parents=True, exist_ok=True)
        self._lock.acquire(timeout=0)
        self.dir.mkdir()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.discard()

    def discard(self) -> None:
        """Remove the staging folder (if not published) and its lock file; release the lock."""
        shutil.rmtree(self.dir, ignore_errors=True)
        if self._lock.is_locked:
            try:
                self.lock_path.unlink(missing_ok=True)
            finally:
                self._lock.release()


def clean_stale_staging(model_dir: Path) -> list[str]:
    """Remove staging folders (and lock files) whose owning process is gone; return their names.

    A staging folder whose lock another process still holds belongs to a live register and is
    left alone.
    """
    if not model_dir.is_dir():
        return []
    bases = {
        p.name[: -len(LOCK_SUFFIX)] if p.name.endswith(LOCK_SUFFIX) else p.name
        for p in model_dir.iterdir()
        if p.name.startswith(STAGING_PREFIX)
    }
    removed = []
    for base in sorted(bases):
        lock_path = model_dir / (base + LOCK_SUFFIX)
        lock = FileLock(str(lock_path))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            continue  # a live register owns it
        try:
            shutil.rmtree(model_dir / base, ignore_errors=True)
            lock_path.unlink(missing_ok=True)
            removed.append(base)
        finally:
            lock.release()
    if removed:
        fsync_dir(model_dir)
    return removed


@dataclass
class Published:
    """A registered version: the one published now, or the existing one of the same content (``reused``)."""

    version: registry.VersionRecord
    reused: bool
    path: Path


def display_path(paths: Paths, p: Path) -> str:
    """``p`` relative to the mlc home when inside it, else absolute."""
    try:
        return str(p.resolve().relative_to(paths.home))
    except ValueError:
        return str(p.resolve())


def validate_and_publish(
    paths: Paths, definition: ModelDefinition, settings: ValidationSettings, staged: Path,
    checkpoint: registry.CheckpointRecord, test: Any, reference: Any, eval_set: Any,
    extra_report: dict[str, Any], timings: dict[str, float],
) -> Published:
    """Validate the SavedModel in ``staged``, write its own record, and publish it as the next version.

    ``test`` is the :class:`~lifecycle.register.probe.TestRequest`, ``reference`` the checkpoint
    model's :class:`~lifecycle.register.probe.ReferenceRun` (None for a SavedModel folder). A
    failed check records the attempt and publishes nothing.
    """
    import tensorflow as tf

    from lifecycle.register import lineage, validate

    model = definition.name
    task = test.task
    minimum = settings.min_accuracy if task.primary_metric == "accuracy" else settings.min_miou
    started = time.perf_counter()
    progress.step("validating the export: contract, round trip, parity, metrics on the evaluation set")
    try:
        report = validate.validate_export(staged, model, definition.signatures, test, reference, eval_set, minimum)
    except ValidationFailed as e:
        record_failure(paths, model, checkpoint, e.check, e.message)
        e.message = f"validation check '{e.check}' failed: {e.message}; nothing was published"
        e.args = (e.message,)
        raise
    report["metrics"]["eval"] = eval_set.description
    report["task"] = task.name
    report.update(extra_report)
    report["tf_version"] = tf.__version__
    report["lineage"] = lineage.collect(paths, definition, checkpoint.path, checkpoint.step, eval_set, tf.__version__)
    report["timings"] = {**timings, "validate_s": round(time.perf_counter() - started, 3), **report.get("timings", {})}
    version_fields = registry.VersionRecord(
        version=0, checkpoint_digest=checkpoint.digest, checkpoint=checkpoint.path, step=checkpoint.step,
        validated=True, report=report,
    )
    own_record = {
        "checkpoint": dataclasses.asdict(checkpoint),
        "version": {k: v for k, v in dataclasses.asdict(version_fields).items() if k != "version"},
    }
    atomic_write_text(registry.version_record_file(staged), json.dumps(own_record, indent=1, default=str))
    # Flushed here, outside the registry lease, so the store's own fsync finds little left to do.
    fsync_tree(staged)
    progress.step("publishing it as the next version")
    return _publish(paths, model, staged, checkpoint, version_fields)


def _publish(
    paths: Paths, model: str, staged: Path, checkpoint: registry.CheckpointRecord, fields: registry.VersionRecord,
) -> Published:
    """Reuse a version of the same content, or claim the next N and publish ``staged`` as N.

    The lease is held twice, briefly: to claim N, then to record it. The publish in between (an
    upload, on object storage) runs outside it, so concurrent registers overlap their uploads
    and one killed mid-upload holds up nobody: its claimed N stays taken and unpublished. A
    version published but not yet recorded carries its own record, and any transaction adopts it.

    Two registers of the same content may both claim (neither had recorded when the other
    looked); the first to record wins. The other finds the content recorded under another number
    when it comes to record N: it records nothing, removes its copy N (never recorded, so never
    in a serving config; adoption skips it too) and returns the winner's version, as a register
    of known content does. One content, one version, whichever order the two finish in.
    """
    store = paths.store
    with registry.transaction(paths) as reg:
        rec = reg.model(model, create=True)
        existing = rec.version_for_digest(checkpoint.digest)
        if existing is not None:
            return Published(existing, True, store.version_path(model, existing.version))
        number = registry.allocate_version(paths, rec)
    failpoint("register:claimed")
    store.publish_version(model, number, staged)
    failpoint("register:published")
    target = store.version_path(model, number)
    version = dataclasses.replace(fields, version=number)
    with registry.transaction(paths) as reg:
        rec = reg.model(model, create=True)
        recorded = rec.has_version(number)  # adopted meanwhile by another transaction
        winner = rec.version_for_digest(checkpoint.digest)
        if not recorded and winner is not None:
            # A concurrent register of the same content recorded first: N is an unrecorded copy.
            with contextlib.suppress(LifecycleError, OSError):  # if it stays, it is harmless: never recorded or adopted
                store.delete_version(model, number)
            return Published(winner, True, store.version_path(model, winner.version))
        if rec.checkpoint_for_digest(checkpoint.digest) is None:
            rec.checkpoints.append(checkpoint)
        if not recorded:
            # The registry keeps a summary; the whole report is in the version's own record file.
            rec.versions.append(dataclasses.replace(version, report=registry.report_summary(version.report)))
            rec.versions.sort()  # by number
    # Recorded now (or adopted by this transaction or another's from the version's own record): its webhook.
    outbox.emit(paths, "register", model, {"version": number, "checkpoint": version.checkpoint,
                                           "checkpoint_digest": version.checkpoint_digest, "step": version.step,
                                           "validated": version.validated, "user": version.user})
    return Published(version, False, target)


def record_failure(paths: Paths, model: str, checkpoint: registry.CheckpointRecord, check: str, error: str) -> None:
    """Record a registration that got as far as exporting but published nothing."""
    with registry.transaction(paths) as reg:
        rec = reg.model(model, create=True)
        if rec.checkpoint_for_digest(checkpoint.digest) is None:
            rec.checkpoints.append(checkpoint)
        rec.attempts.append(
            registry.Attempt(checkpoint=checkpoint.path, checkpoint_digest=checkpoint.digest, check=check, error=error)
        )
