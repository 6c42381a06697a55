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
``--timeout``); one that does not answer is reported and the others still converge. A reload
replaces a server's whole config, so every model is brought to its recorded state; ``MODEL``
narrows what is reported.

Replicas in poll mode (``reload: poll`` in configs/servers.yaml: they re-read
``configs/models.config`` every ``--model_config_file_poll_wait_seconds`` instead of taking a
ReloadConfig) are told through the file, which they share: the same two steps are written to it,
and a replica counts as reconciled only once it reports exactly the recorded state, i.e. its
poll has read the file; one that has not by its deadline is reported as not reconciled.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from lifecycle.errors import LifecycleError, StepFailed
from lifecycle.rollout.driver import (
    DEFAULT_TIMEOUT_S,
    POLL_INTERVAL_S,
    DrivenServer,
    Driver,
    driven,
    parallel,
)
from lifecycle.rollout.live_check import RPC_TIMEOUT_S
from lifecycle.rollout.recovery import recover_pending
from lifecycle.serving import desired, fleet, replicas, tfs_config, traffic
from lifecycle.serving.tfs_config import ModelServing
from lifecycle.store import registry
from lifecycle.store.config import Paths, check_model_name


@dataclass
class ReplicaResult:
    """What reconcile did on one replica."""

    server: str
    found_by: str | None = None
    changes: list[str] = field(default_factory=list)  # "hpt: unloaded version(s) [2]"
    via: str = "reload"  # or "poll": it was told through configs/models.config, and seen to take it
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
        """The replicas that could not be brought to the desired state."""
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
        reg = registry.load(paths, lazy=True)
        if model is not None:
            check_model_name(model)
            reg.model(model)  # ModelNotFound for an unknown model
        wanted = tfs_config.served_from_registry(reg)
        generation = desired.record(paths, wanted)
        known = fleet.load(paths, replica_timeout)
        names = sorted(reg.models)
        shown = [model] if model else names
        results = {s.name: ReplicaResult(s.name, s.found_by) for s in known.servers}
        targets = driven(known.servers)
        polling = [t for t in targets if t.spec.reload == "poll"]
        if not polling:
            tfs_config.write(paths, tfs_config.build(paths, wanted))  # else written step by step below
        deadline = time.monotonic() + timeout

        def converge(t: DrivenServer) -> None:
            own = min(deadline, time.monotonic() + t.spec.replica_timeout)  # each replica's own deadline
            results[t.name].changes = _converge(paths, t, names, shown, wanted, own)

        try:
            reloading = [t for t in targets if t.spec.reload != "poll"]
            work: list[Callable[[], object]] = [lambda: _note_errors(parallel(reloading, converge), results)]
            if polling:
                work.append(lambda: _converge_polling(paths, polling, names, shown, wanted, deadline, results))
            for _, e in parallel(work, lambda fn: fn()):
                if e is not None:
                    raise e
        finally:
            for t in targets:
                t.client.close()
            if polling:  # whatever happened, the file ends on the recorded state
                tfs_config.write(paths, tfs_config.build(paths, wanted))
        return ReconcileResult(generation, shown, list(results.values()), known.source, recovered)


def _bridge(names: list[str], wanted: tfs_config.Serving, held: list[tfs_config.Serving]) -> tfs_config.Serving:
    """Step 1: the wanted versions beside those the replicas' labels point at, with the labels they agree on."""
    bridge: tfs_config.Serving = {}
    for m in names:
        have = [h.get(m) or ModelServing(()) for h in held]
        want = wanted.get(m) or ModelServing(())
        keep = {k: v for k, v in have[0].labels.items() if all(h.labels.get(k) == v and v in h.versions for h in have)}
        labelled = {v for h in have for v in h.labels.values()}
        bridge[m] = ModelServing(tuple(sorted(set(want.versions) | labelled)), keep)
    return bridge


def _converge(
    paths: Paths, t: DrivenServer, names: list[str], shown: list[str], wanted: tfs_config.Serving, deadline: float
) -> list[str]:
    """Drive one replica to ``wanted`` by reloads; return the changes made (for the models in ``shown``)."""
    now = replicas.observe(t.spec, names)
    splits = _align_splits(paths, t, shown)  # before any unload: no weight left on a version about to go
    changed = {m: replicas.changes(now.get(m), wanted.get(m)) for m in names}
    if not any(changed.values()):
        return splits
    bridge = _bridge(names, wanted, [now])
    _push(paths, t, bridge)
    for m, want in wanted.items():
        Driver(paths, m, [t], deadline).wait_available("reconcile", list(want.versions), {})
    # Phase 2: the recorded state; wait for dropped versions to go.
    _push(paths, t, wanted)
    for m in names:
        dropped = set(bridge[m].versions) - set((wanted.get(m) or ModelServing(())).versions)
        if dropped:
            Driver(paths, m, [t], deadline).wait_unloaded("reconcile", sorted(dropped))
    return splits + [f"{m}: {c}" for m in shown for c in changed[m]]


def _align_splits(paths: Paths, t: DrivenServer, models: list[str]) -> list[str]:
    """Set each model's traffic split on one replica to configs/traffic.json's (none, once no rollout is pending).

    A replica that was cut off while a rollout reverted still holds that rollout's split. One
    without the admin path (a tensorflow_model_server, no REST address) or whose REST side does
    not answer is left as it is.
    """
    recorded = traffic.read_traffic_file(paths)
    token = traffic.read_token(paths)
    out: list[str] = []
    for m in models:
        try:
            held = traffic.get_split(t.spec, m, token, RPC_TIMEOUT_S)
        except LifecycleError:  # NoTrafficSplit, or its REST side unreachable: nothing to align there
            return out
        want = recorded.get(m)
        if held is None and want is None or want is not None and want.same_weights(held):
            continue
        traffic.set_split(t.spec, m, want, token, RPC_TIMEOUT_S)
        out.append(f"{m}: split {'cleared' if want is None else 'set to ' + want.describe()} (was {held.describe() if held else 'none'})")
    return out


def _push(paths: Paths, t: DrivenServer, serving: tfs_config.Serving) -> None:
    """Reload one replica with ``serving``."""
    t.client.reload(tfs_config.build(paths, serving), timeout=RPC_TIMEOUT_S)


def _converge_polling(
    paths: Paths, targets: list[DrivenServer], names: list[str], shown: list[str], wanted: tfs_config.Serving,
    deadline: float, results: dict[str, ReplicaResult],
) -> None:
    """Drive the replicas that poll configs/models.config: both steps go through the file they share.

    Each is waited for within its own deadline, and counts as reconciled only once it reports
    exactly the recorded state (its poll has read the file).
    """
    now: dict[str, tfs_config.Serving] = {}

    def observe(t: DrivenServer) -> None:
        now[t.name] = replicas.observe(t.spec, names)

    _note_errors(parallel(targets, observe), results)
    changed = {t.name: {m: replicas.changes(now[t.name].get(m), wanted.get(m)) for m in names}
               for t in targets if t.name in now}
    moving = [t for t in targets if any(changed.get(t.name, {}).values())]
    for t in targets:
        results[t.name].via = "poll"
    if not moving:
        tfs_config.write(paths, tfs_config.build(paths, wanted))
        return
    tfs_config.write(paths, tfs_config.build(paths, _bridge(names, wanted, [now[t.name] for t in moving])))

    def loaded(t: DrivenServer) -> None:
        own = min(deadline, time.monotonic() + t.spec.replica_timeout)
        try:
            for m, want in wanted.items():
                Driver(paths, m, [t], own).wait_available("reconcile", list(want.versions), {})
        except LifecycleError as e:
            raise _not_picked_up(t, e.message) from e

    moving = [t for t, e in _note_errors(parallel(moving, loaded), results) if e is None]
    tfs_config.write(paths, tfs_config.build(paths, wanted))

    def settled(t: DrivenServer) -> None:
        own = min(deadline, time.monotonic() + t.spec.replica_timeout)
        while True:
            serving = replicas.observe(t.spec, names)
            if all((serving.get(m) or ModelServing(())) == (wanted.get(m) or ModelServing(())) for m in names):
                return
            if time.monotonic() >= own:
                state = "; ".join(f"{m} {replicas.describe(serving.get(m))}" for m in names)
                raise _not_picked_up(t, f"it serves {state}")
            time.sleep(POLL_INTERVAL_S)

    for t, e in _note_errors(parallel(moving, settled), results):
        if e is None:
            results[t.name].changes = [f"{m}: {c}" for m in shown for c in changed[t.name][m]]


def _not_picked_up(t: DrivenServer, why: str) -> LifecycleError:
    return StepFailed("reconcile", f"did not pick up configs/models.config in time (it polls the file every "
                                   f"{t.spec.poll_seconds} s; replica timeout {t.spec.replica_timeout:g} s): {why}")


def _note_errors(
    results: list[tuple[DrivenServer, BaseException | None]], out: dict[str, ReplicaResult],
) -> list[tuple[DrivenServer, BaseException | None]]:
    """Record each failed replica's error in ``out``; return ``results`` unchanged."""
    for t, e in results:
        if e is not None:
            out[t.name].error = e.message if isinstance(e, LifecycleError) else f"{type(e).__name__}: {e}"
    return results
