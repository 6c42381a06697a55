"""``mlc reconcile``: bring every reachable replica to the recorded serving state.

The recorded state is the registry's (each model's stable and canary), kept as the generation-
numbered ``serving/desired.json`` (:mod:`lifecycle.serving.desired`). Each replica is read
(AVAILABLE versions and labels), and one that differs is driven the way a promote drives a
fleet, because labels may point only at AVAILABLE versions (TF Serving #1608: labels applied
before the models load break restarts):

1. a config with the wanted versions plus the versions its current labels point at, keeping
   only the labels that already hold there;
2. wait until the wanted versions are AVAILABLE on it;
3. the recorded config (labels moved, old versions dropped); wait until they have unloaded.

Replicas are driven in parallel, each within its own deadline (its ``replica_timeout``, within
``--timeout``); one that does not answer is
reported and the others still converge. A reload replaces a server's whole config, so every
model is brought to its recorded state; ``MODEL`` narrows what is reported.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from lifecycle.errors import LifecycleError
from lifecycle.rollout.driver import (
    DEFAULT_TIMEOUT_S,
    DrivenServer,
    Driver,
    driven,
    parallel,
)
from lifecycle.rollout.live_check import RPC_TIMEOUT_S
from lifecycle.rollout.recovery import recover_pending
from lifecycle.serving import desired, fleet, replicas, tfs_config
from lifecycle.serving.tfs_config import ModelServing
from lifecycle.store import registry
from lifecycle.store.config import Paths, check_model_name


@dataclass
class ReplicaResult:
    """What reconcile did on one replica."""

    server: str
    found_by: str | None = None
    changes: list[str] = field(default_factory=list)  # "hpt: unloaded version(s) [2]"
    error: str | None = None  # why it could not be reconciled (unreachable, a load failure)


@dataclass
class ReconcileResult:
    """The result of ``mlc reconcile``."""

    generation: int
    models: list[str]
    replicas: list[ReplicaResult]
    servers_source: str
    recovered: str | None = None

    @property
    def failed(self) -> list[ReplicaResult]:
        return [r for r in self.replicas if r.error]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return asdict(self)


def reconcile(
    paths: Paths, model: str | None = None, timeout: float = DEFAULT_TIMEOUT_S, replica_timeout: float | None = None,
) -> ReconcileResult:
    """Bring every reachable replica to the recorded state; report what changed and who failed."""
    with registry.lease(paths):
        recovered = recover_pending(paths)
        reg = registry.load(paths)
        if model is not None:
            check_model_name(model)
            reg.model(model)  # ModelNotFound for an unknown model
        wanted = tfs_config.served_from_registry(reg)
        generation = desired.record(paths, wanted)
        tfs_config.write(paths, tfs_config.build(paths, wanted))
        known = fleet.load(paths, replica_timeout)
        names = sorted(reg.models)
        shown = [model] if model else names
        results = {s.name: ReplicaResult(s.name, s.found_by) for s in known.servers}
        targets = driven(known.servers)
        deadline = time.monotonic() + timeout

        def converge(t: DrivenServer) -> None:
            own = min(deadline, time.monotonic() + t.spec.replica_timeout)  # each replica's own deadline
            results[t.name].changes = _converge(paths, t, names, shown, wanted, own)

        try:
            for t, e in parallel(targets, converge):
                if e is not None:
                    results[t.name].error = e.message if isinstance(e, LifecycleError) else f"{type(e).__name__}: {e}"
        finally:
            for t in targets:
                t.client.close()
        return ReconcileResult(generation, shown, list(results.values()), known.source, recovered)


def _converge(
    paths: Paths, t: DrivenServer, names: list[str], shown: list[str], wanted: tfs_config.Serving, deadline: float
) -> list[str]:
    """Drive one replica to ``wanted``; return the changes made (for the models in ``shown``)."""
    now = replicas.observe(t.spec, names)
    changed = {m: replicas.changes(now.get(m), wanted.get(m)) for m in names}
    if not any(changed.values()):
        return []
    # Phase 1: the wanted versions beside those the current labels point at, current labels kept.
    bridge: tfs_config.Serving = {}
    for m in names:
        have = now.get(m) or ModelServing(())
        want = wanted.get(m) or ModelServing(())
        keep = {k: v for k, v in have.labels.items() if v in have.versions}
        bridge[m] = ModelServing(tuple(sorted(set(want.versions) | set(keep.values()))), keep)
    _push(paths, t, bridge)
    for m, want in wanted.items():
        Driver(paths, m, [t], deadline).wait_available("reconcile", list(want.versions), {})
    # Phase 2: the recorded state; wait for dropped versions to go.
    _push(paths, t, wanted)
    for m in names:
        dropped = set(bridge[m].versions) - set((wanted.get(m) or ModelServing(())).versions)
        if dropped:
            Driver(paths, m, [t], deadline).wait_unloaded("reconcile", sorted(dropped))
    return [f"{m}: {c}" for m in shown for c in changed[m]]


def _push(paths: Paths, t: DrivenServer, serving: tfs_config.Serving) -> None:
    """Reload one replica with ``serving`` (servers in poll mode read configs/models.config)."""
    if t.spec.reload == "request":
        t.client.reload(tfs_config.build(paths, serving), timeout=RPC_TIMEOUT_S)
