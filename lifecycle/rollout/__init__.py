"""Promote and roll back: TF Serving's label protocol made transactional.

A rollout moves one model from a ``before`` state (stable S, canary C) to an ``after`` state.
It holds the registry lock from start to end, writes an intent journal (``lifecycle.store.journal``)
before it touches anything, and then:

1. **sandbox**: loads each new version alone in a private server on 127.0.0.1:0 and replays its
   warmup request; the output digest must equal the golden digest from register. (TF Serving
   sends unversioned requests to the highest loaded version, so a candidate takes traffic as
   soon as it loads beside the stable one: it must be known good before that.)
2. **load**: writes a config holding before ∪ after, with labels only on versions already
   AVAILABLE (the ``before`` labels), and reloads every server;
3. **available**: waits until every server reports the new versions AVAILABLE;
4. **verify**: replays the warmup request on every server, addressed to the new version;
5. **label**: moves the labels (``stable``, ``canary``) to the ``after`` state, and confirms
   through a label-addressed request on every server;
6. **drop**: writes the ``after`` config (old versions gone) and reloads;
7. **unloaded**: waits until the dropped versions have unloaded everywhere;
8. **commit**: records the new stable/canary and the event in the registry.

Any failure writes the previous config back on every server, confirms that the previous stable
is AVAILABLE, records the failure in the history and raises :class:`PromotionFailed`. A journal
left behind by an mlc that died is completed (the labels had moved on every server) or reverted
by :func:`recover_pending`, which promote, rollback and serve run first.

Modules: ``plan`` (preconditions, gate, stable chain, the plan), ``live_check`` (the golden
request), ``driver`` (configs to servers, waiting for states), ``sandbox``, ``transaction`` (one
rollout: journal, steps, commit or revert) and ``recovery``; this module holds the entry points.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from lifecycle.errors import FailedPrecondition, StaleGeneration
from lifecycle.failpoints import failpoint
from lifecycle.rollout.driver import (
    DEFAULT_TIMEOUT_S,
    apply_registry_config,
    ensure_servers_reachable,
)
from lifecycle.rollout.plan import (
    Plan,
    RolloutResult,
    check_servable,
    plan_rollout,
    preconditions,
    quality_gate,
    rollback_target,
    stable_chain,
    state_of,
)
from lifecycle.rollout.recovery import recover, recover_pending
from lifecycle.rollout.transaction import Rollout
from lifecycle.serving import fleet
from lifecycle.store import journal, registry
from lifecycle.store.config import Paths
from lifecycle.store.registry import Registry

__all__ = [
    "Plan", "RolloutResult", "apply_registry_config", "check_servable", "plan_rollout", "promote", "quality_gate",
    "recover", "recover_pending", "rollback", "rollback_target", "stable_chain",
]


def promote(
    paths: Paths,
    model: str,
    version: int,
    canary: bool = False,
    timeout: float = DEFAULT_TIMEOUT_S,
    reason: str = "",
    expect_current: int | None = None,
    dry_run: bool = False,
    force: bool = False,
    replica_timeout: float | None = None,
    allow_breaking: bool = False,
) -> RolloutResult:
    """Promote ``version`` of ``model`` to stable (or canary) on every server."""
    seen = _seen(paths, model)
    with _maybe_locked(paths, not dry_run):
        stale = _moved(paths, model, seen, "promote")  # raised after --expect-current, which says it better
        recovered = [] if dry_run else [m for m in [recover_pending(paths)] if m]
        reg = registry.load(paths, lazy=True)
        rec = reg.model(model)
        vrec = check_servable(paths, rec, version)
        if expect_current is not None and rec.stable != expect_current:
            raise FailedPrecondition(
                f"stable of {model} is {rec.stable if rec.stable is not None else 'unset'}, not {expect_current} "
                f"(--expect-current); someone else promoted? see `mlc history {model}`"
            )
        if stale is not None:
            raise stale
        notes: list[str] = []
        if canary:
            if rec.stable is None:
                raise FailedPrecondition(f"{model} has no stable version yet; promote one without --canary first")
            if rec.stable == version:
                raise FailedPrecondition(f"version {version} of {model} is already stable; a canary must be another version")
            after = state_of(rec.stable, version)
            action = "canary"
        else:
            after = state_of(version, None if rec.canary == version else rec.canary)
            action = "promote"
        gates = preconditions(paths, rec, vrec, force, allow_breaking, reason)
        return _execute(paths, reg, action, model, version, after, timeout, reason, gates.forced, notes + gates.notes,
                        dry_run, recovered, replica_timeout)


def rollback(
    paths: Paths,
    model: str,
    to: int | None = None,
    reason: str = "",
    timeout: float = DEFAULT_TIMEOUT_S,
    dry_run: bool = False,
    replica_timeout: float | None = None,
) -> RolloutResult:
    """Roll back to the previous known-good stable (or to ``to``); a canary is withdrawn first."""
    seen = _seen(paths, model)
    with _maybe_locked(paths, not dry_run):
        if (stale := _moved(paths, model, seen, "rollback")) is not None:
            raise stale
        recovered = [] if dry_run else [m for m in [recover_pending(paths)] if m]
        reg = registry.load(paths, lazy=True)
        rec = reg.model(model)
        action, worse = "rollback", None
        if to is None and rec.canary is not None:  # the canary goes first: its own event, "withdraw"
            action, after, version = "withdraw", state_of(rec.stable, None), rec.stable
        else:
            version = rollback_target(paths, rec) if to is None else to
            target = check_servable(paths, rec, version)
            if version == rec.stable:
                raise FailedPrecondition(f"version {version} of {model} is already stable; nothing to roll back")
            after = state_of(version, None)
            # A rollback is not gated (it is the way back), but a target the gate would refuse is said.
            worse = quality_gate(paths, rec, target, force=True)
        result = _execute(paths, reg, action, model, version, after, timeout, reason, False, [], dry_run, recovered,
                          replica_timeout)
        if action == "rollback" and worse:
            result.warnings.append(f"rolling back to a version the promote gate would refuse: "
                                   f"{worse.removeprefix('forced past the quality gate: ')}")
        return result


def _execute(
    paths: Paths, reg: Registry, action: str, model: str, version: int | None, after: dict[str, int | None],
    timeout: float, reason: str, forced: bool, notes: list[str], dry_run: bool, recovered: list[str],
    replica_timeout: float | None = None,
) -> RolloutResult:
    fleet_ = fleet.load(paths, replica_timeout)
    plan = plan_rollout(paths, reg, action, model, version, after, fleet_.names, forced, notes)
    if dry_run:
        pending = journal.load(paths)
        if pending is not None:
            plan.notes.append(f"an interrupted rollout will be recovered first: {pending.describe()}")
        return RolloutResult(plan, "dry-run", recovered=recovered)
    if plan.before == plan.after:
        return RolloutResult(plan, "noop", recovered=recovered, message=f"{model}: nothing to do, already in that state")
    ensure_servers_reachable(fleet_.servers)
    t0 = time.monotonic()
    rollout = Rollout(paths, plan, timeout, reason, fleet_)
    rollout.run()
    if not fleet_.servers:
        plan.notes.append("no servers are running or listed in configs/servers.yaml: only the config and registry changed")
    return RolloutResult(plan, "ok", time.monotonic() - t0, rollout.timings, recovered)


def _seen(paths: Paths, model: str) -> int:
    """How many history events ``model`` has as this command starts (before it waits for the lease)."""
    rec = registry.load(paths, versions=False).models.get(model)
    failpoint("rollout:seen")
    return len(rec.history) if rec is not None else 0


def _moved(paths: Paths, model: str, seen: int, action: str) -> StaleGeneration | None:
    """The StaleGeneration to raise if another rollout moved ``model`` while this command waited.

    The command was decided on the state it saw; a promote or rollback that committed meanwhile
    (another machine sharing the repository) makes that decision stale, so nothing is done.
    """
    rec = registry.load(paths, versions=False).models.get(model)
    moved = [e for e in (rec.history[seen:] if rec is not None else []) if e.result in ("ok", "recovered") and e.action != "gc"]
    if not moved:
        return None
    e = moved[-1]
    return StaleGeneration(
        f"{model} changed while this {action} waited for the registry: {e.action} {e.from_version} -> "
        f"{e.to_version} by {e.user} at {e.time} (journal {e.journal or '-'}) won; nothing was changed: "
        f"see `mlc history {model}` and run it again if it is still wanted"
    )


@contextmanager
def _maybe_locked(paths: Paths, lock: bool) -> Iterator[None]:
    if lock:
        with registry.lease(paths):
            yield
    else:
        yield
