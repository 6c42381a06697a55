"""One model's entry in the registry: labels, pins, checkpoints, versions and its logs.

Split from :mod:`lifecycle.store.registry` (which reads and writes the head) so that each stays
a page long. The versions are a :class:`~lifecycle.store.registry_versions.Versions` and the
logs :class:`~lifecycle.store.registry_log.Log` s: both read their pages only when looked at.
:meth:`ModelRecord.changed` tells whether a write would change anything of this model without
serialising what was never read.

This module must not import TensorFlow.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from lifecycle.errors import VersionNotFound
from lifecycle.store.records import Approval, Attempt, CheckpointRecord, HistoryEvent, VersionRecord
from lifecycle.store.registry_log import KINDS, OPTIONAL_KINDS, Log
from lifecycle.store.registry_pages import PageRef
from lifecycle.store.registry_versions import Versions, plain


@dataclass
class ModelRecord:
    """Everything the registry knows about one model."""

    name: str
    stable: int | None = None
    canary: int | None = None
    # Read in full (registry.load): every checkpoint; read lazily: only those the head holds
    # (the pages' own are found by checkpoint_for_digest).
    checkpoints: list[CheckpointRecord] = field(default_factory=list)
    versions: Versions = field(default_factory=Versions)  # a plain list assigned is wrapped
    # Lists whose records stay in their pages until looked at (a plain list assigned is wrapped).
    attempts: Log[Attempt] = field(default_factory=lambda: Log("attempts"))
    history: Log[HistoryEvent] = field(default_factory=lambda: Log("history"))
    approvals: Log[Approval] = field(default_factory=lambda: Log("approvals"))  # approve/reject decisions
    pinned: list[int] = field(default_factory=list)  # versions `mlc gc` never deletes (`mlc pin`)
    # The pages the head named when this record was read (their versions are in ``versions``
    # unless the registry was read with ``versions=False``).
    pages: list[PageRef] = field(default_factory=list, compare=False, repr=False)
    # This model's entry in the head as read (schema 3), written back as it is while unchanged.
    stored: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    def __setattr__(self, name: str, value: Any) -> None:
        kind = Log if name in KINDS else Versions if name == "versions" else None
        if kind is not None and not isinstance(value, kind):
            current = self.__dict__.get(name)
            if isinstance(current, kind):
                current.replace(value)  # keeps the pages it read: unchanged ones are not written again
                return
            value = Log(name, value) if kind is Log else Versions(value)
        object.__setattr__(self, name, value)

    def _fingerprint(self) -> tuple[Any, ...]:
        return (self.stable, self.canary, tuple(self.pinned), [tuple(plain(c).values()) for c in self.checkpoints])

    def mark_clean(self) -> None:
        """Remember the head's fields as they are now (read, or just written): :meth:`changed` compares with them."""
        self.__dict__["_clean"] = self._fingerprint()

    def head_changed(self) -> bool:
        """Whether a field of the head (labels, pins, checkpoints) or a log changed since :meth:`mark_clean`."""
        return self.__dict__.get("_clean") != self._fingerprint() or any(getattr(self, k).changed() for k in KINDS)

    def changed(self) -> bool:
        """Whether writing the registry would change anything of this model."""
        return self.head_changed() or self.versions.changed(self.name, self.checkpoints)

    def version_count(self) -> int:
        """How many versions are registered (also when only the head was read)."""
        return sum(p.count for p in self.pages) if self.pages and not self.versions else len(self.versions)

    def version(self, number: int) -> VersionRecord:
        """The record of version ``number`` (reading its page only); VersionNotFound if it is not registered."""
        found = self.versions.find(number)
        if found is not None:
            return found
        known = ", ".join(str(v.version) for v in self.versions) or "none"
        raise VersionNotFound(
            f"model {self.name!r} has no version {number} (registered: {known})"
        )

    def has_version(self, number: int) -> bool:
        """Whether version ``number`` is registered (reading its page at most)."""
        return bool(self.versions.registered([number]))

    def version_for_digest(self, digest: str) -> VersionRecord | None:
        """The published version built from the checkpoint with ``digest``, if any (reads every page)."""
        for v in self.versions:
            if v.checkpoint_digest == digest:
                return v
        return None

    def checkpoint_for_digest(self, digest: str) -> CheckpointRecord | None:
        """The checkpoint record with ``digest``, if any."""
        for c in self.checkpoints:
            if c.digest == digest:
                return c
        found = self.versions.owned_checkpoint(digest)
        if found is None and not self.versions.whole:
            self.versions.read_all()
            found = self.versions.owned_checkpoint(digest)
        return found

    def latest_version(self) -> int | None:
        """The highest registered version number."""
        return self.versions.latest()

    def all_checkpoints(self) -> list[CheckpointRecord]:
        """Every checkpoint record: the pages' own (reading them all), then the head's."""
        owned = self.versions.read_all()
        digests = {c.digest for c in owned}
        return owned + [c for c in self.checkpoints if c.digest not in digests]

    def to_dict(self, logs: bool = True) -> dict[str, Any]:
        """Plain data with every record inline (the history and attempts only with ``logs``)."""
        out: dict[str, Any] = {"stable": self.stable, "canary": self.canary,
                               "checkpoints": [dataclasses.asdict(c) for c in self.all_checkpoints()],
                               "versions": [dataclasses.asdict(v) for v in self.versions]}
        if logs:
            out |= {kind: [dataclasses.asdict(r) for r in getattr(self, kind)] for kind in KINDS
                    if kind not in OPTIONAL_KINDS or len(getattr(self, kind))}
        if self.pinned:  # an empty pin list is left out, so registries without pins read as before
            out["pinned"] = list(self.pinned)
        return out
