"""The registry: ``model_repo/registry.yaml``, written only by mlc.

Per model it holds the checkpoints (with provenance), the versions (with their validation
report), failed registration attempts, the current ``stable``/``canary`` labels and the
rollout history. Readers load it without the lock (writes are atomic renames, so a reader sees
a whole file); every mutation goes through :func:`transaction`, which holds the one mlc lock,
re-reads the file, and writes it back atomically only if the body completes.

This module must not import TensorFlow.
"""

from __future__ import annotations

import dataclasses
import getpass
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from lifecycle.errors import ModelNotFound, RegistryError, VersionNotFound
from lifecycle.store.config import Paths, check_model_name
from lifecycle.store.files import atomic_write_text, locked

SCHEMA = 1

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def now_iso() -> str:
    """The current UTC time as an ISO-8601 string (seconds precision)."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def current_user() -> str:
    """Who runs this command, for provenance and history."""
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers): fall back to the uid
        return f"uid{os.getuid()}"


@dataclass
class CheckpointRecord:
    """A training checkpoint mlc has seen, identified by the digest of its files."""

    digest: str
    path: str
    step: int | None
    tf_version: str
    created: str = field(default_factory=now_iso)
    user: str = field(default_factory=current_user)


@dataclass
class VersionRecord:
    """A published integer version and its validation report."""

    version: int
    checkpoint_digest: str
    checkpoint: str
    step: int | None
    validated: bool
    report: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=now_iso)
    user: str = field(default_factory=current_user)


@dataclass
class Attempt:
    """A registration that failed; nothing was published for it."""

    checkpoint: str
    checkpoint_digest: str | None
    check: str
    error: str
    time: str = field(default_factory=now_iso)
    user: str = field(default_factory=current_user)


@dataclass
class HistoryEvent:
    """One promote or rollback, successful or not."""

    action: str  # promote | rollback | canary | recover
    from_version: int | None
    to_version: int | None
    result: str  # ok | failed | reverted | recovered
    reason: str = ""
    forced: bool = False
    detail: str = ""
    time: str = field(default_factory=now_iso)
    user: str = field(default_factory=current_user)
    journal: str = ""  # id of the rollout journal that wrote this event (crash recovery)


@dataclass
class ModelRecord:
    """Everything the registry knows about one model."""

    name: str
    stable: int | None = None
    canary: int | None = None
    checkpoints: list[CheckpointRecord] = field(default_factory=list)
    versions: list[VersionRecord] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    history: list[HistoryEvent] = field(default_factory=list)

    def version(self, number: int) -> VersionRecord:
        """The record of version ``number``; VersionNotFound if it is not registered."""
        for v in self.versions:
            if v.version == number:
                return v
        known = ", ".join(str(v.version) for v in self.versions) or "none"
        raise VersionNotFound(
            f"model {self.name!r} has no version {number} (registered: {known})"
        )

    def version_for_digest(self, digest: str) -> VersionRecord | None:
        """The published version built from the checkpoint with ``digest``, if any."""
        for v in self.versions:
            if v.checkpoint_digest == digest:
                return v
        return None

    def checkpoint_for_digest(self, digest: str) -> CheckpointRecord | None:
        """The checkpoint record with ``digest``, if any."""
        for c in self.checkpoints:
            if c.digest == digest:
                return c
        return None

    def latest_version(self) -> int | None:
        """The highest registered version number."""
        return max((v.version for v in self.versions), default=None)


@dataclass
class Registry:
    """The whole registry file."""

    models: dict[str, ModelRecord] = field(default_factory=dict)
    schema: int = SCHEMA

    def model(self, name: str, create: bool = False) -> ModelRecord:
        """The record of ``name``; created empty if ``create``, else RegistryError if absent."""
        check_model_name(name)
        if name not in self.models:
            if not create:
                known = ", ".join(sorted(self.models)) or "none"
                raise ModelNotFound(f"model {name!r} is not in the registry (registered: {known})")
            self.models[name] = ModelRecord(name=name)
        return self.models[name]

    # --- (de)serialisation -----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain data for YAML/JSON."""
        return {
            "schema": self.schema,
            "models": {
                name: {k: v for k, v in dataclasses.asdict(rec).items() if k != "name"}
                for name, rec in sorted(self.models.items())
            },
        }

    @classmethod
    def from_dict(cls, data: Any, source: Path) -> Registry:
        """Parse plain data; structural problems raise RegistryError naming ``source``."""
        if data is None:
            return cls()
        if not isinstance(data, dict) or not isinstance(data.get("models", {}), dict):
            raise RegistryError(f"malformed registry {source}: expected 'schema' and a 'models' mapping")
        if data.get("schema", SCHEMA) > SCHEMA:
            raise RegistryError(
                f"registry {source} has schema {data['schema']}, newer than this mlc ({SCHEMA}); upgrade mlc"
            )
        models: dict[str, ModelRecord] = {}
        for name, body in (data.get("models") or {}).items():
            try:
                body = body or {}
                models[str(name)] = ModelRecord(
                    name=str(name),
                    stable=body.get("stable"),
                    canary=body.get("canary"),
                    checkpoints=[CheckpointRecord(**c) for c in body.get("checkpoints") or []],
                    versions=[VersionRecord(**v) for v in body.get("versions") or []],
                    attempts=[Attempt(**a) for a in body.get("attempts") or []],
                    history=[HistoryEvent(**h) for h in body.get("history") or []],
                )
            except (TypeError, AttributeError) as e:
                raise RegistryError(f"malformed registry {source}: model {name!r}: {e}") from e
        return cls(models=models, schema=SCHEMA)

    def dump(self) -> str:
        """The registry as YAML text."""
        return yaml.dump(self.to_dict(), Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def load(paths: Paths) -> Registry:
    """Read the registry without locking; a missing file is an empty registry."""
    file = paths.registry_file
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Registry()
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{file}:{mark.line + 1}" if mark is not None else str(file)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise RegistryError(
            f"malformed registry {where}: {problem}; restore it from a backup or fix it by hand"
        ) from e
    return Registry.from_dict(data, file)


def save(paths: Paths, registry: Registry) -> None:
    """Write the registry atomically. Callers must hold the lock (use :func:`transaction`)."""
    atomic_write_text(paths.registry_file, registry.dump())


@contextmanager
def transaction(paths: Paths, timeout: float | None = None) -> Iterator[Registry]:
    """Lock, load, yield the registry for mutation, then save it if the body did not raise."""
    kwargs = {} if timeout is None else {"timeout": timeout}
    with locked(paths.lock_file, **kwargs):
        registry = load(paths)
        before = registry.dump()
        adopt_orphans(paths, registry)
        yield registry
        after = registry.dump()
        if after != before:
            atomic_write_text(paths.registry_file, after)


def versions_on_disk(paths: Paths, model: str) -> list[int]:
    """Integer version folders under model_repo/<model>/ (what TF Serving would see)."""
    base = paths.model_dir(model)
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit())


def allocate_version(paths: Paths, record: ModelRecord) -> int:
    """The next free version number. Call under the lock (inside :func:`transaction`)."""
    taken = set(versions_on_disk(paths, record.name)) | {v.version for v in record.versions}
    return max(taken, default=0) + 1


# Published versions carry their own record here (TF Serving ignores assets.extra/ files other
# than the warmup records), so a version renamed into place just before a crash is not lost.
VERSION_RECORD_FILE = Path("assets.extra") / "mlc_report.json"


def version_record_file(version_dir: Path) -> Path:
    """Where a published version keeps the record mlc adopts it from after a crash."""
    return Path(version_dir) / VERSION_RECORD_FILE


def adopt_orphans(paths: Paths, registry: Registry) -> list[tuple[str, int]]:
    """Record published versions that are on disk but not in the registry. Call under the lock.

    A register killed between renaming its staging folder to N and saving the registry leaves
    N on disk with its record in ``assets.extra/mlc_report.json``; this puts that record into
    the registry. Integer folders without such a record are not mlc's and are left alone
    (:func:`allocate_version` never reuses their numbers).
    """
    adopted: list[tuple[str, int]] = []
    if not paths.model_repo.is_dir():
        return adopted
    for model_dir in sorted(paths.model_repo.iterdir()):
        if not model_dir.is_dir() or model_dir.name.startswith("."):
            continue
        try:
            check_model_name(model_dir.name)
        except Exception:
            continue
        record = registry.models.get(model_dir.name)
        known = {v.version for v in record.versions} if record else set()
        for number in versions_on_disk(paths, model_dir.name):
            if number in known:
                continue
            try:
                data = json.loads(version_record_file(model_dir / str(number)).read_text(encoding="utf-8"))
                checkpoint = CheckpointRecord(**data["checkpoint"])
                version = VersionRecord(version=number, **data["version"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            record = registry.model(model_dir.name, create=True)
            if version.checkpoint_digest and record.version_for_digest(version.checkpoint_digest) is not None:
                continue  # same content already published under another number; leave it unrecorded
            if record.checkpoint_for_digest(checkpoint.digest) is None:
                record.checkpoints.append(checkpoint)
            record.versions.append(version)
            record.versions.sort(key=lambda v: v.version)
            adopted.append((model_dir.name, number))
    return adopted
