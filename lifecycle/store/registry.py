"""The registry: ``registry.yaml`` of the repository and its pages, written only by mlc.

Per model it holds the checkpoints (with provenance), the versions (with their validation
report), failed registration attempts, the current ``stable``/``canary`` labels and the
rollout history. ``registry.yaml`` is the head (labels, pins and lists of pages); the version
records live in immutable pages beside it (:mod:`registry_pages`), the history and the attempts
in append-only pages (:mod:`registry_log`), so a reader that needs a few versions and the last
event (``mlc status``) reads the head and a page or two, and a promote writes the head and one
history page, whatever the number of versions and events. Readers load it without the lease (a
write creates new pages, then replaces the head in one step, so a reader sees a whole
registry). Every mutation holds the registry lease and writes by compare-and-swap at the
generation it read (:func:`transaction`, or :func:`load` then :func:`save` inside
:func:`lease`), so even a writer whose lease was lost (an object store's lease expires) cannot
overwrite another's update: it gets StaleGeneration instead.

A transaction (and a promote's commit) reads the registry lazily (``load(lazy=True)``): the
head, then only the version pages its body looks at (:mod:`registry_versions`); a write
creates only the pages that changed and puts each untouched model's entry back in the head as
it was read, so registering a version or moving a label costs the same at 100 versions and at
10,000, and with 1 model or 50.

Schemas: 3, history and attempts in pages; 2, versions in pages, the rest inline; 1, everything
inline. Older heads are read as they are and written as schema 3 by the next write.

This module must not import TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lifecycle.errors import LifecycleError, ModelNotFound, PageMissing, RegistryError, StaleGeneration
from lifecycle.failpoints import failpoint
from lifecycle.store import outbox
from lifecycle.store import registry_pages as pages
from lifecycle.store.base import REGISTRY_LEASE
from lifecycle.store.config import Paths
from lifecycle.store.files import DEFAULT_LOCK_TIMEOUT_S
from lifecycle.store.names import check_model_name
from lifecycle.store.provenance import current_user, now_iso
from lifecycle.store.records import Approval, Attempt, CheckpointRecord, HistoryEvent, VersionRecord
from lifecycle.store.registry_log import KINDS, OPTIONAL_KINDS, Log, LogState, Written
from lifecycle.store.registry_model import ModelRecord
from lifecycle.store.registry_pages import PageRef
from lifecycle.store.registry_versions import Layout, Versions
from lifecycle.store.version_records import VERSION_RECORD_FILE, full_report, report_summary, version_record_file

__all__ = [
    "KEY", "SCHEMA", "Approval", "Attempt", "CheckpointRecord", "HistoryEvent", "ModelRecord", "Registry", "VersionRecord",
    "adopt_orphans", "allocate_version", "current_user", "full_report", "lease", "load", "now_iso", "report_summary",
    "save", "select", "source", "transaction", "version_record_file", "versions_on_disk", "VERSION_RECORD_FILE",
]

SCHEMA = 3
KEY = "registry.yaml"


def _log(kind: str, data: Any) -> Log[Any]:
    """A log from the head: a list inline (schema 1 and 2), or its pages (schema 3)."""
    if data is None or isinstance(data, list):
        return Log(kind, [KINDS[kind](**r) for r in data or []])
    return Log(kind, state=LogState.parse(data))


@dataclass
class Registry:
    """The whole registry file."""

    models: dict[str, ModelRecord] = field(default_factory=dict)
    schema: int = SCHEMA
    # The store generation this registry was read at (None: read as absent); save() writes at it.
    generation: str | None = field(default=None, compare=False, repr=False)
    # Read with versions=False: the versions are in the pages, not here; it cannot be saved.
    head_only: bool = field(default=False, compare=False, repr=False)

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

    def to_dict(self, logs: bool = True) -> dict[str, Any]:
        """Plain data for YAML/JSON: every model with its records inline (not the stored layout).

        ``logs=False`` leaves out the history and the attempts, which stay in their pages.
        """
        return {"schema": self.schema, "models": {name: rec.to_dict(logs) for name, rec in sorted(self.models.items())}}

    def logs_changed(self) -> bool:
        """Whether a history or attempts log differs from its pages."""
        return any(getattr(rec, kind).changed() for rec in self.models.values() for kind in KINDS)

    def page_keys(self) -> set[str]:
        """The keys of every page the head names."""
        return {r.key for rec in self.models.values() for r in rec.pages} | {
            k for rec in self.models.values() for kind in KINDS for k in getattr(rec, kind).keys(rec.name)}

    @classmethod
    def from_dict(cls, data: Any, source: Path | str) -> Registry:
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
                    versions=Versions(VersionRecord(**v) for v in body.get("versions") or []),
                    attempts=_log("attempts", body.get("attempts")),
                    history=_log("history", body.get("history")),
                    approvals=_log("approvals", body.get("approvals")),
                    pinned=[int(v) for v in body.get("pinned") or []],
                    pages=pages.parse_refs(str(name), body.get("pages"), str(source)),
                    stored=body if data.get("schema") == SCHEMA else None,
                )
            except (TypeError, AttributeError, ValueError) as e:
                raise RegistryError(f"malformed registry {source}: model {name!r}: {e}") from e
        return cls(models=models, schema=SCHEMA)

    def dump(self) -> str:
        """The whole registry (every version inline) as YAML text, for people and comparisons."""
        import yaml

        return yaml.dump(self.to_dict(), Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False,
                         default_flow_style=False)


def source(paths: Paths) -> str:
    """Where the registry document lives, for messages."""
    return f"{paths.store.url}/{KEY}"


def load(paths: Paths, versions: bool = True, lazy: bool = False) -> Registry:
    """Read the registry without the lease; a missing document is an empty registry.

    ``versions=False`` reads only the head: each model's ``pages`` say which versions exist,
    :func:`select` reads the ones wanted, and such a registry cannot be saved. ``lazy=True``
    reads the head, and each version page only when a caller looks at its versions (a
    transaction, or a promote's commit): such a registry can be saved, and writes only the pages
    it changed; its ``checkpoints`` are the head's until :meth:`ModelRecord.all_checkpoints`.
    """
    for _ in range(pages.READ_ATTEMPTS):
        registry = _load_head(paths)
        if not versions:
            registry.head_only = any(rec.pages for rec in registry.models.values())
            return registry
        try:
            for rec in registry.models.values():
                if rec.pages:
                    rec.versions = Versions(refs=rec.pages, loader=_page_loader(paths), model=rec.name,
                                            where=source(paths))
                    if not lazy:
                        rec.checkpoints = rec.versions.read_all() + rec.checkpoints
                rec.mark_clean()
            return registry
        except PageMissing:
            continue  # a writer replaced a page after we read the head: read the new head
    raise RegistryError(f"registry {source(paths)} kept changing while it was read; try again")


def _page_loader(paths: Paths) -> Callable[[list[PageRef]], list[dict[str, Any]]]:
    """How a model's versions read their pages (several at once)."""
    return lambda refs: pages.read_pages(paths.store, refs, source(paths))


def _load_head(paths: Paths) -> Registry:
    """The head document alone (a schema-1 registry holds its versions inline)."""
    doc = paths.store.read(KEY)
    if doc is None:
        return Registry()
    where = source(paths)
    try:
        data = json.loads(doc.data)  # what mlc writes since schema 2 (JSON is YAML, and parses without PyYAML)
    except ValueError:
        data = _parse_yaml(doc.data, where)  # a head written before, or by hand
    registry = Registry.from_dict(data, where)
    registry.generation = doc.generation
    for rec in registry.models.values():
        for kind in KINDS:
            getattr(rec, kind).bind(paths.store, rec.name, where, _refresher(paths, rec.name, kind))
    return registry


def _refresher(paths: Paths, model: str, kind: str) -> Callable[[], LogState]:
    """How a log re-reads its state from the head when a page it named was replaced meanwhile."""
    def refresh() -> LogState:
        fresh = _load_head(paths).models.get(model)
        return getattr(fresh, kind).state if fresh is not None else LogState()
    return refresh


def _parse_yaml(data: bytes, where: str) -> Any:
    """A YAML head (schema 1, or edited by hand); a syntax error is a RegistryError naming the line."""
    import yaml

    try:
        return yaml.load(data.decode("utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        mark = getattr(e, "problem_mark", None)
        at = f"{where}:{mark.line + 1}" if mark is not None else where
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise RegistryError(
            f"malformed registry {at}: {problem}; restore it from a backup or fix it by hand"
        ) from e


def select(paths: Paths, rec: ModelRecord, numbers: set[int], newest: int | None) -> list[VersionRecord]:
    """``rec``'s versions numbered in ``numbers`` plus its ``newest`` highest (None: every version).

    On a head-only record this reads only the pages holding them, so the cost does not grow
    with the number of versions. A page replaced meanwhile makes it read the head again.
    """
    for _ in range(pages.READ_ATTEMPTS):
        if not (rec.pages and not rec.versions):  # every version is in memory already
            return _pick(rec.versions, numbers, newest)
        wanted = None
        if newest is not None:
            wanted, count = {pages.page_of(n) for n in numbers}, 0
            for ref in sorted(rec.pages, key=lambda r: r.page, reverse=True):
                if count >= newest:
                    break
                wanted.add(ref.page)
                count += ref.count
        try:
            found, _ = pages.read_versions(paths.store, rec.name, rec.pages, wanted, source(paths))
        except PageMissing:
            fresh = _load_head(paths).models.get(rec.name)
            rec.pages = fresh.pages if fresh else []
            continue
        return _pick(found, numbers, newest)
    raise RegistryError(f"registry {source(paths)} kept changing while it was read; try again")


def _pick(versions: Iterable[VersionRecord], numbers: set[int], newest: int | None) -> list[VersionRecord]:
    """``versions`` in ``numbers`` or among the ``newest`` highest (None: all), ascending."""
    ordered = sorted(versions, key=lambda v: v.version)
    if newest is None:
        return ordered
    keep = {v.version for v in ordered[len(ordered) - newest:]} if newest > 0 else set()
    return [v for v in ordered if v.version in keep or v.version in numbers]


def save(paths: Paths, registry: Registry, leftovers: set[str] | frozenset[str] = frozenset()) -> None:
    """Write the registry at the generation it was loaded at (StaleGeneration if it moved).

    Pages that changed are created first (version pages, and the last page of a log that grew),
    then the head is replaced by compare-and-swap; then the pages it no longer names (and
    ``leftovers``: pages no head named when the lease was taken, a killed writer's) are
    removed. Callers hold the registry lease (use :func:`transaction`, or :func:`lease`).
    """
    if registry.head_only:
        raise ValueError("a registry read with versions=False cannot be saved")  # a programming error
    store = paths.store
    head: dict[str, Any] = {"schema": SCHEMA, "models": {}}
    old = registry.page_keys()
    layouts: dict[str, Layout] = {}
    logs: dict[tuple[str, str], Written] = {}
    try:
        for name, rec in sorted(registry.models.items()):
            layout = rec.versions.layout(name, rec.checkpoints)
            if rec.stored is not None and not layout.changed and not rec.head_changed():
                head["models"][name] = rec.stored  # untouched: its entry as read, nothing re-encoded
                continue
            layouts[name] = layout
            for key, data in layout.create.items():
                store.write(key, data, None)
            body = _head_body(rec, layout.loose, layout.refs)
            for kind in KINDS:
                logs[name, kind] = getattr(rec, kind).write(store, name)
                if kind not in OPTIONAL_KINDS or logs[name, kind].state.count:
                    body[kind] = logs[name, kind].state.to_dict()
            head["models"][name] = body
        # Compact: with 10,000 versions and events the head stays a few KB (bench/bench_registry.py).
        text = json.dumps(head, separators=(",", ":")) + "\n"
        failpoint("registry:pages")
        registry.generation = store.write(KEY, text.encode("utf-8"), registry.generation)
    except StaleGeneration:
        # Certainly not committed: our new pages go. (After any other failure the head may have
        # been written all the same, say a timeout on S3: the pages stay, and a later write
        # removes them if no head names them.)
        created = {k for lay in layouts.values() for k in lay.create} | {k for w in logs.values() for k in w.created}
        pages.remove(store, created - old)
        raise
    for name, layout in layouts.items():
        registry.models[name].pages = layout.refs
        registry.models[name].versions.written(layout)
    for (name, kind), done in logs.items():
        getattr(registry.models[name], kind).written(done)
    for name in layouts:
        registry.models[name].stored = head["models"][name]
        registry.models[name].mark_clean()
    pages.remove(store, (old | set(leftovers)) - registry.page_keys())
    # The one place history events, failed attempts and approvals are recorded: queue their webhooks.
    outbox.emit_records(paths, {key: list(done.added) for key, done in logs.items()})


def _head_body(rec: ModelRecord, loose: list[CheckpointRecord], refs: list[PageRef]) -> dict[str, Any]:
    """A model's entry in the head, but for its logs."""
    body: dict[str, Any] = {"stable": rec.stable, "canary": rec.canary,
                            "checkpoints": [dataclasses.asdict(c) for c in loose], "pages": [r.to_dict() for r in refs]}
    if rec.pinned:
        body["pinned"] = list(rec.pinned)
    return body


def lease(paths: Paths, timeout: float | None = None) -> AbstractContextManager[None]:
    """Hold the registry lease: one rollout or registry mutation at a time."""
    return paths.store.lease(REGISTRY_LEASE, DEFAULT_LOCK_TIMEOUT_S if timeout is None else timeout)


@contextmanager
def transaction(paths: Paths, timeout: float | None = None) -> Iterator[Registry]:
    """Hold the lease, load, yield the registry for mutation, then save it if the body did not raise."""
    with lease(paths, timeout):
        registry = load(paths, lazy=True)  # pages are read as the body looks at them, and only changed ones written
        names = set(registry.models)
        leftovers = pages.page_keys(paths.store) - registry.page_keys()
        adopt_orphans(paths, registry)
        yield registry
        if set(registry.models) != names or any(rec.changed() for rec in registry.models.values()) or leftovers:
            save(paths, registry, leftovers)


def versions_on_disk(paths: Paths, model: str) -> list[int]:
    """The published versions of ``model`` in the store (what TF Serving would see)."""
    return paths.store.version_numbers(model)


def allocate_version(paths: Paths, record: ModelRecord) -> int:
    """Claim the next free version number in the store. Call under the lease (in :func:`transaction`).

    Numbers above every published and registered one are tried in turn; a number another writer
    claimed (even one that died before publishing) is skipped, never handed out twice.
    """
    number = max(max(versions_on_disk(paths, record.name), default=0), record.latest_version() or 0) + 1
    owner = f"{current_user()}@{os.uname().nodename} pid {os.getpid()} at {now_iso()}"
    while not paths.store.claim_version(record.name, number, owner):
        number += 1
    return number


def adopt_orphans(paths: Paths, registry: Registry) -> list[tuple[str, int]]:
    """Record published versions that are on disk but not in the registry. Call under the lock.

    A register killed between renaming its staging folder to N and saving the registry leaves
    N on disk with its record in ``assets.extra/mlc_report.json``; this puts that record into
    the registry. Integer folders without such a record are not mlc's and are left alone
    (:func:`allocate_version` never reuses their numbers).
    """
    adopted: list[tuple[str, int]] = []
    store = paths.store
    for model in store.iter_models():
        record = registry.models.get(model)
        on_disk = store.version_numbers(model)
        known = record.versions.registered(on_disk) if record else set()  # reads only pages that may not hold them
        for number in on_disk:
            if number in known:
                continue
            try:
                data = json.loads(store.read_version_file(model, number, VERSION_RECORD_FILE).decode("utf-8"))
                checkpoint = CheckpointRecord(**data["checkpoint"])
                version = VersionRecord(version=number, **data["version"])
            except (LifecycleError, OSError, ValueError, KeyError, TypeError):
                continue
            record = registry.model(model, create=True)
            if version.checkpoint_digest and record.version_for_digest(version.checkpoint_digest) is not None:
                continue  # same content already published under another number; leave it unrecorded
            if record.checkpoint_for_digest(checkpoint.digest) is None:
                record.checkpoints.append(checkpoint)
            record.versions.append(dataclasses.replace(version, report=report_summary(version.report)))
            record.versions.sort()  # in number order (pages read are already)
            adopted.append((model, number))
    return adopted
