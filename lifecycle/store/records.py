"""The registry's records: checkpoints, versions, failed attempts, history events and approvals.

Plain dataclasses with nothing but data, so the head (:mod:`lifecycle.store.registry`), the
version pages (:mod:`lifecycle.store.registry_pages`) and the append-only logs
(:mod:`lifecycle.store.registry_log`) all build on them without importing each other.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from lifecycle.store.provenance import current_user, now_iso


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
    # The hash of the record before it in its log (record_hash): the chain `mlc verify` checks; not compared.
    prev: str = field(default="", compare=False)


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
    prev: str = field(default="", compare=False)  # the hash of the record before it (record_hash)


@dataclass
class Approval:
    """One reviewer's decision on a version: ``approve`` or ``reject``, with why and what was reviewed.

    ``digest`` is the version's content digest (of its manifest: every file's path, size and
    sha256) when the decision was made, so a decision names the exact bytes it is about.
    """

    version: int
    decision: str  # approve | reject
    reason: str
    digest: str
    time: str = field(default_factory=now_iso)
    user: str = field(default_factory=current_user)
    prev: str = field(default="", compare=False)  # the hash of the record before it (record_hash)


def record_hash(record: Any) -> str:
    """The sha256 of a log record's canonical JSON (its own ``prev`` included): what the next record's ``prev`` holds."""
    data = dataclasses.asdict(record) if dataclasses.is_dataclass(record) and not isinstance(record, type) else record
    return "sha256:" + hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()
