"""The registry: ``registry.yaml`` of the repository and its version pages, written only by mlc.

Per model it holds the checkpoints (with provenance), the versions (with their validation
report), failed registration attempts, the current ``stable``/``canary`` labels and the
rollout history. ``registry.yaml`` is the head (labels, pins, history, attempts and a list of
pages); the version records live in immutable pages beside it (:mod:`registry_pages`), so a
reader that needs a few versions (``mlc status``) reads the head and a page or two, whatever
the number of versions. Readers load it without the lease (a write creates new pages, then
replaces the head in one step, so a reader sees a whole registry). Every mutation holds the registry lease and writes by
compare-and-swap at the generation it read (:func:`transaction`, or :func:`load` then
:func:`save` inside :func:`lease`), so even a writer whose lease was lost (an object store's
lease expires) cannot overwrite another's update: it gets StaleGeneration instead.

About 480 lines, above the usual 400: the records, the head's (de)serialisation and the
read/write protocol over the head and its pages (load, select, save, transaction) are one
piece; the page format and page I/O are in :mod:`registry_pages`.

This module must not import TensorFlow.
"""

from __future__ import annotations

import dataclasses
import getpass
import json
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lifecycle.errors import (
    LifecycleError,
    ModelNotFound,
    RegistryError,
    StaleGeneration,
    VersionNotFound,
)
from lifecycle.failpoints import failpoint
from lifecycle.store import registry_pages as pages
from lifecycle.store.base import REGISTRY_LEASE
from lifecycle.store.config import Paths, check_model_name
from lifecycle.store.files import DEFAULT_LOCK_TIMEOUT_S
from lifecycle.store.registry_pages import PageRef

# 2: versions in pages beside the head (registry_pages); 1: every version inline (still read).
SCHEMA = 2
KEY = "registry.yaml"



def now_iso() -> str:
    """The current UTC time as an ISO-8601 string (seconds precision)."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def current_user() -> str:
    """Who runs this command, for provenance and history."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no passwd entry (containers): fall back to the uid
        return f"uid{os.getuid()}"


@dataclass
class CheckpointRecord:
    """A source mlc has seen, identified by the digest of its files.

    ``kind`` says what it is: a training ``checkpoint``, or a SavedModel folder
    (``savedmodel-tf2``: ``tf.saved_model.save``; ``savedmodel-keras``: Keras ``model.export()``;
    ``savedmodel-tf1``: TF1 ``SavedModelBuilder``).
    """

    digest: str
    path: str
    step: int | None
    tf_version: str
    created: str = field(default_factory=now_iso)
    user: str = field(default_factory=current_user)
    kind: str = "checkpoint"


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

    action: str  # promote | rollback | canary | recover | gc (a deletion by `mlc gc`)
    from_version: int | None
    to_version: int | None
    result: str  # ok | failed | reverted | recovered | deleted
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
    pinned: list[int] = field(default_factory=list)  # versions `mlc gc` never deletes (`mlc pin`)
    # The pages the head named when this record was read (their versions are in ``versions``
    # unless the registry was read with ``versions=False``).
    pages: list[PageRef] = field(default_factory=list, compare=False, repr=False)

    def version_count(self) -> int:
        """How many versions are registered (also when only the head was read)."""
        return sum(p.count for p in self.pages) if self.pages and not self.versions else len(self.versions)

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

    def to_dict(self) -> dict[str, Any]:
        """Plain data for YAML/JSON: every model with its versions inline (not the stored layout)."""
        return {
            "schema": self.schema,
            "models": {
                # An empty pin list is left out, so registries without pins read as before.
                name: {k: v for k, v in dataclasses.asdict(rec).items()
                       if k not in ("name", "pages") and not (k == "pinned" and not v)}
                for name, rec in sorted(self.models.items())
            },
        }

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
                    versions=[VersionRecord(**v) for v in body.get("versions") or []],
                    attempts=[Attempt(**a) for a in body.get("attempts") or []],
                    history=[HistoryEvent(**h) for h in body.get("history") or []],
                    pinned=[int(v) for v in body.get("pinned") or []],
                    pages=pages.parse_refs(str(name), body.get("pages"), str(source)),
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


def load(paths: Paths, versions: bool = True) -> Registry:
    """Read the registry without the lease; a missing document is an empty registry.

    ``versions=False`` reads only the head: each model's ``pages`` say which versions exist,
    :func:`select` reads the ones wanted, and such a registry cannot be saved.
    """
    for _ in range(pages.READ_ATTEMPTS):
        registry = _load_head(paths)
        if not versions:
            registry.head_only = any(rec.pages for rec in registry.models.values())
            return registry
        try:
            for rec in registry.models.values():
                if rec.pages:
                    rec.versions, own = pages.read_versions(paths.store, rec.name, rec.pages, None, source(paths))
                    rec.checkpoints = own + rec.checkpoints
            return registry
        except pages.PageMissing:
            continue  # a writer replaced a page after we read the head: read the new head
    raise RegistryError(f"registry {source(paths)} kept changing while it was read; try again")


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
    return registry


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
        except pages.PageMissing:
            fresh = _load_head(paths).models.get(rec.name)
            rec.pages = fresh.pages if fresh else []
            continue
        return _pick(found, numbers, newest)
    raise RegistryError(f"registry {source(paths)} kept changing while it was read; try again")


def _pick(versions: list[VersionRecord], numbers: set[int], newest: int | None) -> list[VersionRecord]:
    """``versions`` in ``numbers`` or among the ``newest`` highest (None: all), ascending."""
    ordered = sorted(versions, key=lambda v: v.version)
    if newest is None:
        return ordered
    keep = {v.version for v in ordered[len(ordered) - newest:]} if newest > 0 else set()
    return [v for v in ordered if v.version in keep or v.version in numbers]


def save(paths: Paths, registry: Registry, leftovers: set[str] | frozenset[str] = frozenset()) -> None:
    """Write the registry at the generation it was loaded at (StaleGeneration if it moved).

    Pages that changed are created first, then the head is replaced by compare-and-swap; then
    the pages it no longer names (and ``leftovers``: pages no head named when the lease was
    taken, a killed writer's) are removed. Callers hold the registry lease (use
    :func:`transaction`, or :func:`lease`).
    """
    if registry.head_only:
        raise ValueError("a registry read with versions=False cannot be saved")  # a programming error
    store = paths.store
    head: dict[str, Any] = {"schema": SCHEMA, "models": {}}
    old = {r.key for rec in registry.models.values() for r in rec.pages}
    written: dict[str, list[PageRef]] = {}
    try:
        for name, rec in sorted(registry.models.items()):
            refs, loose = pages.write_pages(store, rec, rec.pages)
            written[name] = refs
            body = {k: v for k, v in dataclasses.asdict(rec).items()
                    if k not in ("name", "versions", "pages", "checkpoints") and not (k == "pinned" and not v)}
            head["models"][name] = {**body, "checkpoints": [dataclasses.asdict(c) for c in loose],
                                    "pages": [r.to_dict() for r in refs]}
        text = json.dumps(head, indent=1) + "\n"
        failpoint("registry:pages")
        registry.generation = store.write(KEY, text.encode("utf-8"), registry.generation)
    except StaleGeneration:
        # Certainly not committed: our new pages go. (After any other failure the head may have
        # been written all the same, say a timeout on S3: the pages stay, and a later write
        # removes them if no head names them.)
        pages.remove(store, {r.key for refs in written.values() for r in refs} - old)
        raise
    new = {r.key for refs in written.values() for r in refs}
    for name, refs in written.items():
        registry.models[name].pages = refs
    pages.remove(store, (old | set(leftovers)) - new)


def lease(paths: Paths, timeout: float | None = None) -> AbstractContextManager[None]:
    """Hold the registry lease: one rollout or registry mutation at a time."""
    return paths.store.lease(REGISTRY_LEASE, DEFAULT_LOCK_TIMEOUT_S if timeout is None else timeout)


@contextmanager
def transaction(paths: Paths, timeout: float | None = None) -> Iterator[Registry]:
    """Hold the lease, load, yield the registry for mutation, then save it if the body did not raise."""
    with lease(paths, timeout):
        registry = load(paths)
        before = registry.to_dict()
        leftovers = pages.page_keys(paths.store) - {r.key for rec in registry.models.values() for r in rec.pages}
        adopt_orphans(paths, registry)
        yield registry
        if registry.to_dict() != before or leftovers:
            save(paths, registry, leftovers)


def versions_on_disk(paths: Paths, model: str) -> list[int]:
    """The published versions of ``model`` in the store (what TF Serving would see)."""
    return paths.store.version_numbers(model)


def allocate_version(paths: Paths, record: ModelRecord) -> int:
    """Claim the next free version number in the store. Call under the lease (in :func:`transaction`).

    Numbers above every published and registered one are tried in turn; a number another writer
    claimed (even one that died before publishing) is skipped, never handed out twice.
    """
    taken = set(versions_on_disk(paths, record.name)) | {v.version for v in record.versions}
    number = max(taken, default=0) + 1
    owner = f"{current_user()}@{os.uname().nodename} pid {os.getpid()} at {now_iso()}"
    while not paths.store.claim_version(record.name, number, owner):
        number += 1
    return number


# Published versions carry their own record here (TF Serving ignores assets.extra/ files other
# than the warmup records), so a version renamed into place just before a crash is not lost.
VERSION_RECORD_FILE = Path("assets.extra") / "mlc_report.json"


def version_record_file(version_dir: Path) -> Path:
    """Where a published version keeps the record mlc adopts it from after a crash."""
    return Path(version_dir) / VERSION_RECORD_FILE


def report_summary(report: dict[str, Any]) -> dict[str, Any]:
    """What the registry keeps of a version's validation report.

    Only what ``status``, ``register``'s result, the quality gate and the live check read: the
    golden digest and the output it is of, the mIoU (or accuracy) and the evaluation set it was
    scored on, and the kind of source. The full report (signature, histograms, per-class IoU,
    checks, timings) stays beside the version in
    :data:`VERSION_RECORD_FILE` (:func:`full_report`), so registry.yaml, which every command
    reads, stays small however many versions there are.
    """
    golden, metrics = report.get("golden") or {}, report.get("metrics") or {}
    summary: dict[str, Any] = {}
    if golden:
        summary["golden"] = {k: golden[k] for k in ("digest", "output") if k in golden}
    if metrics:
        summary["metrics"] = {k: metrics[k] for k in ("miou", "accuracy", "eval") if k in metrics}
    if "kind" in (report.get("source") or {}):
        summary["source"] = {"kind": report["source"]["kind"]}
    summary["full"] = str(VERSION_RECORD_FILE)
    return summary


def full_report(paths: Paths, model: str, version: VersionRecord) -> dict[str, Any]:
    """A version's whole validation report: from beside the version, else the registry's copy.

    Registries written before reports moved out hold the whole report themselves.
    """
    if "full" not in version.report:
        return version.report
    try:
        path = version_record_file(paths.store.version_path(model, version.version))
        return json.loads(path.read_text(encoding="utf-8"))["version"]["report"]
    except (LifecycleError, OSError, ValueError, KeyError, TypeError):
        return version.report


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
        known = {v.version for v in record.versions} if record else set()
        for number in store.version_numbers(model):
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
            record.versions.sort(key=lambda v: v.version)
            adopted.append((model, number))
    return adopted
