"""Approvals: who must sign off on a version before it takes traffic, and who did.

The policy is ``approvals:`` in ``configs/<model>.yaml``::

    approvals:
      required: 2          # distinct approvers a version needs before promote or rollout (default 0)
      self_approval: false # may the user who registered a version approve it? (default true)

Decisions (:class:`~lifecycle.store.records.Approval`) are an append-only log of the registry
(:mod:`lifecycle.store.registry_log`), written in the registry's transaction (the lease and a
compare-and-swap of the head), so two approvers at once lose neither. Each names the version's
content digest (its manifest: every file's path, size and sha256). Each user's latest decision
on a version counts: a version is **rejected** while any user's latest decision is a rejection,
**approved** once enough distinct users' latest decisions are approvals, else **pending**.

This module must not import TensorFlow.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from lifecycle.errors import ConfigError, FailedPrecondition, ModelNotFound, UsageError
from lifecycle.store import registry
from lifecycle.store.config import Paths, load_definition
from lifecycle.store.provenance import current_user
from lifecycle.store.records import Approval
from lifecycle.store.registry import ModelRecord

DECISIONS = ("approve", "reject")


@dataclass(frozen=True)
class Policy:
    """How many distinct approvals a version needs, and whether its registrar may give one."""

    required: int = 0
    self_approval: bool = True

    @classmethod
    def parse(cls, section: Any, where: str) -> Policy:
        """The ``approvals:`` section; anything malformed is a ConfigError naming the file."""
        if section is None:
            return cls()
        if not isinstance(section, dict) or set(section) - {"required", "self_approval"}:
            raise ConfigError(f"{where}: approvals: expected a mapping with 'required' and 'self_approval'")
        required, own = section.get("required", 0), section.get("self_approval", True)
        if isinstance(required, bool) or not isinstance(required, int) or required < 0:
            raise ConfigError(f"{where}: approvals.required must be a whole number >= 0, not {required!r}")
        if not isinstance(own, bool):
            raise ConfigError(f"{where}: approvals.self_approval must be true or false, not {own!r}")
        return cls(required, own)


def policy(paths: Paths, model: str) -> Policy:
    """The model definition's approval policy (none required for a model without a definition)."""
    try:
        definition = load_definition(paths, model)
    except ModelNotFound:
        return Policy()
    return Policy.parse(definition.raw.get("approvals"), str(definition.path))


@dataclass
class ApprovalState:
    """Where one version stands: approved, pending or rejected, and by whom."""

    version: int
    state: str  # approved | pending | rejected | not required
    required: int
    approved_by: list[str] = field(default_factory=list)
    rejected_by: list[str] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)

    def describe(self) -> str:
        """One short phrase, e.g. ``pending (1 of 2: alice)``."""
        if self.state == "rejected":
            return f"rejected by {', '.join(self.rejected_by)}"
        if self.state == "pending":
            return f"pending ({len(self.approved_by)} of {self.required}" + (
                f": {', '.join(self.approved_by)})" if self.approved_by else ")")
        if self.state == "approved":
            return f"approved by {', '.join(self.approved_by)}"
        return "not required"

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json`` and the web page."""
        return asdict(self) | {"summary": self.describe()}


def state_of(rec: ModelRecord, version: int, rule: Policy, registrar: str | None = None) -> ApprovalState:
    """A version's approval state under ``rule`` (a registrar's own approval counts only when allowed)."""
    mine = [a for a in rec.approvals if a.version == version]
    latest: dict[str, Approval] = {}
    for a in mine:
        latest[a.user] = a
    rejected = sorted(u for u, a in latest.items() if a.decision == "reject")
    approved = sorted(u for u, a in latest.items() if a.decision == "approve"
                      and (rule.self_approval or registrar is None or u != registrar))
    if rejected:
        state = "rejected"
    elif rule.required == 0:
        state = "not required"
    else:
        state = "approved" if len(approved) >= rule.required else "pending"
    return ApprovalState(version, state, rule.required, approved, rejected, [asdict(a) for a in mine])


@dataclass
class DecisionResult:
    """The result of ``mlc approve`` and ``mlc reject``: the decision recorded and the version's state after it."""

    model: str
    decision: Approval
    state: ApprovalState

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return {"model": self.model, "decision": asdict(self.decision), "state": self.state.to_dict()}


def states(paths: Paths, rec: ModelRecord) -> list[ApprovalState]:
    """The approval state of every version that has a decision (reads only the pages holding them)."""
    numbers = sorted({a.version for a in rec.approvals})
    if not numbers:
        return []
    rule = policy(paths, rec.name)
    users = {v.version: v.user for v in registry.select(paths, rec, set(numbers), 0)}
    return [state_of(rec, n, rule, users.get(n)) for n in numbers]


def content_digest(paths: Paths, model: str, version: int) -> str:
    """The digest of a version's manifest: every file's path, size and sha256."""
    files = paths.store.version_manifest(model, version).files
    canonical = json.dumps({k: [v.size, v.sha256] for k, v in sorted(files.items())}, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def decide(paths: Paths, model: str, version: int, decision: str, reason: str) -> DecisionResult:
    """Record ``decision`` (approve | reject) on a version by the current user, in the registry's transaction."""
    if decision not in DECISIONS:
        raise UsageError(f"unknown decision {decision!r} (known: {', '.join(DECISIONS)})")
    if not reason.strip():
        raise UsageError(f"say why you {decision} with --reason TEXT (recorded in the registry)")
    rule = policy(paths, model)
    user = current_user()
    with registry.transaction(paths) as reg:
        rec = reg.model(model)
        vrec = rec.version(version)
        if decision == "approve" and not rule.self_approval and user == vrec.user:
            raise FailedPrecondition(
                f"{user} registered version {version} of {model} and may not approve it "
                f"(approvals.self_approval is false in configs/{model}.yaml); ask another reviewer")
        record = Approval(version, decision, reason.strip(), content_digest(paths, model, version), user=user)
        rec.approvals.append(record)
        return DecisionResult(model, record, state_of(rec, version, rule, vrec.user))


def check(paths: Paths, rec: ModelRecord, version: int) -> None:
    """Refuse a version that has a rejection or lacks the approvals its policy requires, in one line."""
    rule = policy(paths, rec.name)
    if rule.required == 0 and not any(a.version == version and a.decision == "reject" for a in rec.approvals):
        return
    found = state_of(rec, version, rule, rec.version(version).user)
    if found.state == "rejected":
        raise FailedPrecondition(
            f"version {version} of {rec.name} is rejected by {', '.join(found.rejected_by)}; "
            f"it cannot take traffic until they approve it (`mlc approve {rec.name} {version} --reason TEXT`)")
    if found.state == "pending":
        own = "" if rule.self_approval else " (its registrar's own approval does not count)"
        raise FailedPrecondition(
            f"version {version} of {rec.name} has {len(found.approved_by)} of the {rule.required} approvals "
            f"configs/{rec.name}.yaml requires{own}; missing {rule.required - len(found.approved_by)} "
            f"(`mlc approve {rec.name} {version} --reason TEXT`)")
