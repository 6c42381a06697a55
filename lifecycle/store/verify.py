"""``mlc verify``: is the registry what mlc wrote, and are the versions the bytes they were?

Per model it checks, in this order, and names the first problem of each kind:

- **pages against the head**: every page the head names is there, its version pages have the
  digest the head recorded, and each log's pages hold the head's count of records and end with
  the head's copy of the last one;
- **the chain**: each history, attempt and approval record carries the hash of the one before
  it in its log (``prev``, :func:`~lifecycle.store.records.record_hash`), so an edited, removed
  or inserted record breaks the link after it (records written before the chain existed start it);
- **versions against their manifests**: every published version's files have the size and
  sha256 its manifest recorded at publish, and no file was added;
- **labels**: ``stable`` and ``canary`` point at versions registered, validated and present.

It works on a local folder and on an S3 prefix alike. This module must not import TensorFlow.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

from lifecycle.errors import CorruptVersion, LifecycleError
from lifecycle.store import registry
from lifecycle.store import registry_pages as pages
from lifecycle.store.config import Paths
from lifecycle.store.manifest import files_of
from lifecycle.store.records import record_hash
from lifecycle.store.registry import ModelRecord
from lifecycle.store.registry_log import KINDS, page_key, read_page


@dataclass
class VerifyReport:
    """What ``mlc verify`` checked and what it found (``problems``: the first is the one to fix first)."""

    models: list[str] = field(default_factory=list)
    versions: int = 0
    files: int = 0
    records: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing broken, changed or dangling."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return asdict(self) | {"ok": self.ok}


def _version_pages(paths: Paths, rec: ModelRecord, where: str) -> list[str]:
    problems = []
    for ref in rec.pages:
        doc = paths.store.read(ref.key)
        if doc is None:
            problems.append(f"{rec.name}: registry page {where}/{ref.key} named by the head is missing")
        elif ref.digest.removeprefix("sha256:") != hashlib.sha256(doc.data).hexdigest():
            problems.append(f"{rec.name}: registry page {where}/{ref.key} does not match the digest the head recorded")
    return problems


def _log(paths: Paths, rec: ModelRecord, kind: str, where: str, report: VerifyReport) -> list[str]:
    """The pages of one log against the head, then the chain through its records."""
    log = getattr(rec, kind)
    state = log.state
    records: list[dict[str, Any]] = []
    for n, page_id in enumerate(state.pages):
        key = page_key(rec.name, kind, n, page_id)
        try:
            got, _ = read_page(paths.store, key, where)
        except LifecycleError:
            return [f"{rec.name}: {kind} page {where}/{key} named by the head is missing or unreadable"]
        records += got
    if not state.pages:
        records = [asdict(r) for r in log]  # held inline by an older head
    elif len(records) != state.count or (state.last is not None and records and records[-1] != state.last):
        return [f"{rec.name}: the {kind} pages hold {len(records)} records, the head says {state.count} "
                f"ending with another record (a page was edited or replaced)"]
    report.records += len(records)
    record_type = KINDS[kind]
    chained = False
    for i, data in enumerate(records):
        prev = data.get("prev") or ""
        if i and (prev or chained):
            want = record_hash(_normal(record_type, records[i - 1]))
            if prev != want:
                return [f"{rec.name}: {kind} record {i} ({_describe(data)}) does not follow record {i - 1}: "
                        f"the chain is broken there (record {i - 1} was edited, removed or inserted)"]
        chained = chained or bool(prev)
    return []


def _normal(record_type: type[Any], data: dict[str, Any]) -> dict[str, Any]:
    """A stored record as its dataclass gives it (defaults filled in), which is what was hashed."""
    return asdict(record_type(**data))


def _describe(data: dict[str, Any]) -> str:
    what = data.get("action") or data.get("decision") or data.get("check") or "record"
    return f"{what} at {data.get('time', '?')} by {data.get('user', '?')}"


def _versions(paths: Paths, rec: ModelRecord, report: VerifyReport) -> list[str]:
    store = paths.store
    problems = []
    for number in store.version_numbers(rec.name):
        report.versions += 1
        has = getattr(store, "has_manifest", None)
        if has is not None and not has(rec.name, number):
            report.notes.append(f"{rec.name} {number}: published before manifests were kept locally; files not checked")
            continue
        try:
            manifest = store.version_manifest(rec.name, number)
        except LifecycleError as e:
            problems.append(f"{rec.name} {number}: {e.message}")
            continue
        for rel, entry in sorted(manifest.files.items()):
            report.files += 1
            try:
                data = store.read_version_file(rec.name, number, rel)
            except CorruptVersion:  # an object store checks what it reads against the manifest itself
                data = b""
            except (LifecycleError, OSError):
                problems.append(f"{rec.name} {number}: file {rel} of its manifest is missing")
                break
            if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
                problems.append(f"{rec.name} {number}: file {rel} changed since it was published "
                                f"(its size or sha256 differs from the manifest)")
                break
        else:
            extra = _extra_files(paths, rec.name, number, set(manifest.files))
            if extra:
                problems.append(f"{rec.name} {number}: file {extra[0]} is not in its manifest (added after publishing)")
    return problems


def _extra_files(paths: Paths, model: str, number: int, listed: set[str]) -> list[str]:
    """Files of a local version folder that its manifest does not list (an object store lists by manifest)."""
    if getattr(paths.store, "has_manifest", None) is None:
        return []
    return [rel for rel in files_of(paths.store.version_path(model, number)) if rel not in listed]


def _labels(paths: Paths, rec: ModelRecord) -> list[str]:
    present = set(paths.store.version_numbers(rec.name))
    known = {v.version: v for v in rec.versions}
    problems = []
    for label, number in (("stable", rec.stable), ("canary", rec.canary)):
        if number is None:
            continue
        if number not in known:
            problems.append(f"{rec.name}: label {label} points at version {number}, which is not registered")
        elif number not in present:
            problems.append(f"{rec.name}: label {label} points at version {number}, which is not published "
                            f"(deleted from {paths.store.url})")
        elif not known[number].validated:
            problems.append(f"{rec.name}: label {label} points at version {number}, which is not validated")
    return problems


def verify(paths: Paths, model: str | None = None) -> VerifyReport:
    """Check every model (or ``model``): pages against the head, the chains, the versions, the labels."""
    report = VerifyReport()
    where = registry.source(paths).rsplit("/", 1)[0]
    head = registry.load(paths, versions=False)
    names = [head.model(model).name] if model else sorted(head.models)
    for name in names:
        rec = head.model(name)
        report.models.append(name)
        found = _version_pages(paths, rec, where)
        if not found:
            try:
                if rec.pages:
                    rec.versions.replace(pages.read_versions(paths.store, name, rec.pages, None, where)[0])
            except LifecycleError as e:
                found = [f"{name}: {e.message}"]
        for kind in KINDS:
            found += _log(paths, rec, kind, where, report)
        found += _versions(paths, rec, report)
        found += _labels(paths, rec)
        report.problems += found
    return report


def describe(report: VerifyReport) -> str:
    """One line: what was checked."""
    return (f"checked {len(report.models)} model(s), {report.versions} version(s) ({report.files} files), "
            f"{report.records} record(s)")
