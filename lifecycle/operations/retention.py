"""Retention: ``mlc gc`` deletes old versions, ``mlc pin`` keeps one for good.

A version is never deleted while it is:

- labelled (``stable`` or ``canary`` in the registry);
- in the rollback chain (a version ``mlc rollback`` could go back to);
- pinned (``mlc pin MODEL N``);
- in ``configs/models.config`` or loaded on any server mlc drives (an unreachable server keeps
  every version of the model: gc cannot know what it holds);
- one of the newest ``--keep`` versions.

It also removes uploads that never completed (an object store's versions without a manifest)
once they are older than a grace period, so that a writer still uploading is left alone.
Everything runs under the registry lease, so no rollout interleaves, and every deletion is
recorded in the model's history (action ``gc``, result ``deleted``).

Before it deletes anything, gc writes what it is about to delete to the repository's document
``journal/gc.json`` and removes it once the registry records the deletions. A gc that dies or
loses the store part-way leaves it behind: ``mlc status`` reports it, and the next ``mlc gc``
finishes the job (it also forgets the registry records of versions the store no longer holds).

This module must not import TensorFlow.
"""

from __future__ import annotations

import json
import os
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any

from lifecycle import progress
from lifecycle.errors import ServerUnavailable, StaleGeneration, UsageError
from lifecycle.failpoints import failpoint
from lifecycle.operations.sync import loaded_on
from lifecycle.serving import fleet, tfs_config
from lifecycle.store import registry
from lifecycle.store.config import Paths, check_model_name
from lifecycle.store.registry import HistoryEvent, ModelRecord, current_user, now_iso

DEFAULT_KEEP = 3
DEFAULT_GRACE_S = 3600.0
INTENT_KEY = "journal/gc.json"


@dataclass
class Removal:
    """One thing gc deletes (or would, with --dry-run)."""

    model: str
    version: int
    kind: str  # version | incomplete upload | record (the store lost it to an interrupted gc)
    detail: str = ""


@dataclass
class GcResult:
    """What ``mlc gc`` deleted and what it kept, and why."""

    dry_run: bool
    removed: list[Removal] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # "model/N: why"
    interrupted: str | None = None  # the gc this one finished (``describe_intent``)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for --json."""
        return asdict(self)


def interrupted_gc(paths: Paths) -> str | None:
    """One line about a gc that did not finish its deletions (None: there is none)."""
    doc = paths.store.read(INTENT_KEY)
    if doc is None:
        return None
    try:
        intent = json.loads(doc.data)
        planned = ", ".join(intent["deleting"]) or "nothing"
        return f"mlc gc by {intent['user']} pid {intent['pid']} at {intent['started']}, deleting {planned}"
    except (ValueError, KeyError, TypeError):
        return f"mlc gc (its record {INTENT_KEY} in {paths.store.url} is unreadable)"


def _write_intent(paths: Paths, removed: list[Removal]) -> str:
    """Record what this gc is about to delete (replacing a dead gc's record); its generation."""
    body = {"user": current_user(), "pid": os.getpid(), "started": now_iso(),
            "deleting": [f"{r.model}/{r.version}" for r in removed]}
    old = paths.store.read(INTENT_KEY)
    return paths.store.write(INTENT_KEY, json.dumps(body).encode("utf-8"), old.generation if old else None)


@dataclass
class PinResult:
    """A model's pinned versions after ``mlc pin`` or ``mlc unpin``."""

    model: str
    pinned: list[int]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for --json."""
        return asdict(self)


def _held(paths: Paths, model: str) -> tuple[set[int], str]:
    """Versions of ``model`` some driven server holds; (all, why) when one cannot be asked."""
    held: set[int] = set()
    for spec in fleet.load(paths).servers:
        if not spec.rest:
            return {-1}, f"server {spec.grpc} has no REST address to ask"
        try:
            # gc holds the registry lease: no rollout reloads a server meanwhile, so a server
            # that does not know the model holds none of it.
            held |= loaded_on(spec.rest, model, unknown_is_empty=True, tls=spec.tls)
        except ServerUnavailable as e:
            return {-1}, e.message
    return held, ""


def protected(paths: Paths, rec: ModelRecord | None, model: str, configured: set[int]) -> dict[int, str]:
    """Version -> why gc must keep it (the newest-N rule aside); -1 means every version."""
    from lifecycle.rollout.plan import stable_chain

    keep: dict[int, str] = {}
    held, why = _held(paths, model)
    for v in held:
        keep[v] = why or "loaded on a server"
    for v in configured:
        keep.setdefault(v, "in configs/models.config")
    if rec is not None:
        for v in rec.pinned:
            keep.setdefault(v, "pinned")
        for v in stable_chain(rec):
            keep.setdefault(v, "in the rollback chain")
        for label, labelled in (("stable", rec.stable), ("canary", rec.canary)):
            if labelled is not None:
                keep[labelled] = f"labelled {label}"
    return keep


def gc(
    paths: Paths, model: str | None = None, keep: int = DEFAULT_KEEP, dry_run: bool = False,
    grace: float = DEFAULT_GRACE_S,
) -> GcResult:
    """Delete old versions and stale incomplete uploads; record each deletion in the history."""
    if keep < 1:
        raise UsageError("--keep must be at least 1 (the newest version is always kept)")
    store = paths.store
    result = GcResult(dry_run)
    progress.step("reading the registry, the config and what the servers hold")
    # A dry run only reads: no lock, no lock file, nothing written.
    with nullcontext(registry.load(paths)) if dry_run else registry.transaction(paths) as reg:
        result.interrupted = interrupted_gc(paths)
        intent = paths.store.read(INTENT_KEY)
        if model is not None:
            check_model_name(model)
            reg.model(model)  # ModelNotFound names the registered ones
        names = [model] if model else sorted(set(reg.models) | set(store.iter_models()))
        configured = tfs_config.read(paths) or {}
        for name in names:
            rec = reg.models.get(name)
            published = store.version_numbers(name)
            keep_why = protected(paths, rec, name, set(configured[name].versions) if name in configured else set())
            newest = set(published[-keep:])
            # Recorded but no longer in the store: deleted by a gc that died before recording it.
            for v in sorted({r.version for r in rec.versions} - set(published) if rec else set()):
                result.removed.append(Removal(name, v, "record", "its files were deleted by an interrupted mlc gc"))
            for v in published:
                why = keep_why.get(v) or keep_why.get(-1) or (f"one of the newest {keep}" if v in newest else "")
                if why:
                    result.kept.append(f"{name}/{v}: {why}")
                else:
                    result.removed.append(Removal(name, v, "version"))
            for left in store.leftovers(name):
                if left.age_s >= grace:
                    result.removed.append(Removal(name, left.number, "incomplete upload",
                                                  f"{left.objects} objects, {left.age_s:.0f} s old"))
                else:
                    result.kept.append(f"{name}/{left.number}: an upload {left.age_s:.0f} s old (grace {grace:.0f} s)")
        if dry_run:
            return result
        written = _write_intent(paths, result.removed) if result.removed else (intent.generation if intent else None)
        done = []
        for r in result.removed:
            progress.step(f"deleting {r.model} {r.kind} {r.version}")
            if r.kind == "version":
                store.delete_version(r.model, r.version)
                failpoint("gc:deleted")
            elif r.kind == "incomplete upload" and not store.remove_leftover(r.model, r.version):
                result.kept.append(f"{r.model}/{r.version}: its upload completed meanwhile")
                continue
            done.append(r)
            rec = reg.model(r.model, create=True)
            rec.versions.replace([v for v in rec.versions if v.version != r.version])
            rec.history.append(HistoryEvent(
                action="gc", from_version=r.version, to_version=None, result="deleted",
                reason=f"mlc gc --keep {keep}", detail=f"{r.kind} {r.version} deleted" + (f" ({r.detail})" if r.detail else ""),
            ))
        result.removed = done
    if written is not None:
        try:
            store.delete(INTENT_KEY, written)  # the registry records every deletion now
        except StaleGeneration:
            pass  # a later gc has written its own: it is that one's to remove
    return result


def pin(paths: Paths, model: str, version: int, pinned: bool = True) -> PinResult:
    """Pin (or unpin) a registered version so gc never deletes it."""
    with registry.transaction(paths) as reg:
        rec = reg.model(model)
        if pinned:
            rec.version(version)  # VersionNotFound names the registered ones
            rec.pinned = sorted(set(rec.pinned) | {version})
        else:
            rec.pinned = [v for v in rec.pinned if v != version]
        return PinResult(model, list(rec.pinned))
