"""One rollout as a transaction: journal, sandbox, production steps, then commit or revert.

The rollout holds the registry lock from start to end and journals every step before and
after it runs (:mod:`lifecycle.store.journal`), so an mlc that dies part-way leaves a state
that :mod:`lifecycle.rollout.recovery` completes or reverts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lifecycle import progress
from lifecycle.errors import FailedPrecondition, LifecycleError, PromotionFailed
from lifecycle.rollout.driver import (
    DEFAULT_TIMEOUT_S,
    RPC_TIMEOUT_S,
    DrivenServer,
    Driver,
    driven,
    parallel,
)
from lifecycle.rollout.live_check import LiveCheck
from lifecycle.rollout.plan import Plan, serving_from_state, serving_with
from lifecycle.rollout.sandbox import sandbox_check
from lifecycle.serving import desired, fleet, tfs_config
from lifecycle.serving.tfs_config import ModelServing
from lifecycle.store import journal, registry
from lifecycle.store.config import Paths
from lifecycle.store.registry import HistoryEvent, ModelRecord

# What each journalled step does, as the status line of promote and rollback says it.
STEP_WORDS = {
    "sandbox": "checking it alone in a private sandbox", "load": "loading it beside stable on every server",
    "available": "waiting until every server reports it AVAILABLE", "verify": "replaying its warmup request",
    "label": "moving the labels", "drop": "dropping the old version", "unloaded": "waiting for the old version to unload",
    "commit": "recording the event",
}


class Rollout:
    """One rollout under the lock: journal, sandbox, production steps, commit or revert."""

    def __init__(self, paths: Paths, plan: Plan, timeout: float, reason: str, fleet_: fleet.Fleet) -> None:
        self.paths = paths
        self.plan = plan
        self.model = plan.model
        self.timeout = timeout
        self.reason = reason
        self.fleet = fleet_
        self.timings: dict[str, float] = {}
        self.journal = journal.Journal(
            action=plan.action, model=plan.model, version=plan.version, before=plan.before, after=plan.after,
            reason=reason, forced=plan.forced, servers=fleet_.names,
        )

    # --- serving states of the whole config ---------------------------------------------------

    def serving(self, model_state: ModelServing) -> tfs_config.Serving:
        """Every model's registry state, with this model replaced by ``model_state``."""
        return serving_with(registry.load(self.paths, lazy=True), self.model, model_state)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Journal ``name`` begin/done (or failed) around a block, and time it; tell the progress listener."""
        plan = self.plan
        progress.step(f"{plan.action} {plan.model} {plan.version}: {STEP_WORDS.get(name, name)}")
        journal.step(self.paths, self.journal, name, "begin")
        t0 = time.monotonic()
        try:
            yield
        except BaseException as e:
            journal.step(self.paths, self.journal, name, "failed", getattr(e, "message", str(e)))
            raise
        self.timings[name] = time.monotonic() - t0
        journal.step(self.paths, self.journal, name, "done")

    def targets(self) -> list[DrivenServer]:
        """A client for each server of the fleet (closed when the rollout ends)."""
        return driven(self.fleet.servers)

    def run(self) -> None:
        """Execute the plan; on failure revert, record and raise PromotionFailed."""
        plan = self.plan
        b, a = serving_from_state(plan.before), serving_from_state(plan.after)
        rec = registry.load(self.paths, lazy=True).model(self.model)
        # Test requests of the versions that load (sandbox, verify) or gain a label (confirm).
        needed = set(plan.load) | {v for k, v in a.labels.items() if b.labels.get(k) != v}
        try:
            checks = {v: LiveCheck.of(self.paths, rec, v) for v in sorted(needed)}
        except LifecycleError as e:
            raise FailedPrecondition(f"cannot check {self.model} live: {e.message}") from e
        journal.write(self.paths, self.journal)
        journal.step(self.paths, self.journal, "intent", "done")
        if plan.load and not self.journal.reached("sandbox", "done"):  # a resumed rollout passed it already
            try:
                with self.step("sandbox"):
                    for v in plan.load:
                        sandbox_check(self.paths, self.model, checks[v], self.timeout)
            except LifecycleError as e:
                self.finish("failed", f"sandbox check failed: {e.message}")
                raise PromotionFailed(
                    f"{plan.action} of {self.model} {plan.version} failed its sandbox check, production untouched: {e.message}"
                ) from e
        targets = self.targets()
        driver = Driver(self.paths, self.model, targets, time.monotonic() + self.timeout)
        try:
            self.production(driver, b, a, checks)
        except BaseException as e:
            cause = e.message if isinstance(e, LifecycleError) else f"{type(e).__name__}: {e}"
            step = getattr(e, "step", self.journal.steps[-1]["step"] if self.journal.steps else "?")
            problems = self.undo(targets, rec)
            detail = f"failed at step {step}: {cause}; reverted" + (f" ({'; '.join(problems)})" if problems else "")
            self.finish("reverted", detail)
            if not isinstance(e, Exception):
                raise
            stable = plan.before.get("stable")
            restored = f"stable {stable} serves again" if stable is not None else "nothing serves, as before"
            raise PromotionFailed(
                f"{plan.action} of {self.model} {plan.version} failed at step '{step}': {cause}; reverted, {restored}"
                + (f" (revert problems: {'; '.join(problems)})" if problems else "")
            ) from e
        finally:
            for t in targets:
                t.client.close()

    def undo(self, targets: list[DrivenServer], rec: ModelRecord) -> list[str]:
        """Revert production to the previous state after a failure; return the problems met."""
        moved = self.journal.reached("label", "begin")
        return revert(self.paths, self.model, targets, self.plan.before, checks_before(self.paths, rec, self.plan.before, targets),
                      after=self.plan.after if moved else None)

    def production(self, driver: Driver, b: ModelServing, a: ModelServing, checks: dict[int, LiveCheck]) -> None:
        """Steps 2-8 on the production servers."""
        self.load_new(driver, b, a, checks)
        self.move_labels(driver, b, a, checks)
        complete_forward(self, driver, a, "ok", "; ".join(self.plan.notes))

    def load_new(self, driver: Driver, b: ModelServing, a: ModelServing, checks: dict[int, LiveCheck]) -> None:
        """Steps load, available and verify: the new versions beside the old ones, labels unchanged."""
        plan = self.plan
        if plan.load:
            baseline = driver.snapshot()
            with self.step("load"):
                driver.push("load", self.serving(b.union(a, b.labels)))
            with self.step("available"):
                driver.wait_available("available", plan.load, baseline)
            with self.step("verify"):
                for v in plan.load:
                    driver.verify("verify", checks[v])

    def move_labels(self, driver: Driver, b: ModelServing, a: ModelServing, checks: dict[int, LiveCheck]) -> None:
        """Step label: move the labels and confirm them with label-addressed requests."""
        if dict(a.labels) != dict(b.labels):
            with self.step("label"):
                driver.push("label", self.serving(b.union(a, a.labels)))
                moved = {k: v for k, v in a.labels.items() if b.labels.get(k) != v}
                driver.confirm_labels("label", moved, checks)

    def finish(self, result: str, detail: str) -> None:
        """Record the event in the registry history and clear the journal."""
        record_event(self.paths, self.journal, result, detail)
        journal.clear(self.paths)


def complete_forward(rollout: Rollout, driver: Driver, a: ModelServing, result: str = "ok", detail: str = "") -> None:
    """Steps drop, unloaded and commit (also used by recovery to complete a rollout)."""
    plan = rollout.plan
    if plan.drop:
        with rollout.step("drop"):
            driver.push("drop", rollout.serving(a))
        with rollout.step("unloaded"):
            driver.wait_unloaded("unloaded", plan.drop)
    else:
        tfs_config.write(rollout.paths, tfs_config.build(rollout.paths, rollout.serving(a)))
    with rollout.step("commit"):
        reg = registry.load(rollout.paths, lazy=True)  # the commit reads and writes the head and one history page
        rec = reg.model(rollout.model)
        rec.stable = plan.after["stable"]
        rec.canary = plan.after["canary"]
        rec.history.append(_event(rollout.journal, result, detail))
        registry.save(rollout.paths, reg)
        desired.record(rollout.paths, tfs_config.served_from_registry(reg))
    journal.clear(rollout.paths)


def _event(j: journal.Journal, result: str, detail: str) -> HistoryEvent:
    # A withdrawal moves the canary, not stable: from the canary to the stable that stays.
    moved = "canary" if j.action == "withdraw" else "stable"
    return HistoryEvent(
        action=j.action, from_version=j.before.get(moved),
        to_version=j.version if j.version is not None else j.after.get("stable"),
        result=result, reason=j.reason, forced=j.forced, detail=detail, user=j.user, journal=j.id,
    )


def record_event(paths: Paths, j: journal.Journal, result: str, detail: str) -> None:
    """Append one history event for the journal's rollout (caller holds the lock)."""
    reg = registry.load(paths, lazy=True)
    reg.model(j.model).history.append(_event(j, result, detail))
    registry.save(paths, reg)


def checks_before(paths: Paths, rec: ModelRecord, before: dict[str, int | None], targets: list[DrivenServer]) -> dict[int, LiveCheck]:
    """Live checks of the versions of the previous state (to confirm a revert on ``targets``)."""
    out: dict[int, LiveCheck] = {}
    if not targets:
        return out  # nothing to confirm on, and no reason to import TensorFlow
    for v in serving_from_state(before).versions:
        try:
            out[v] = LiveCheck.of(paths, rec, v)
        except LifecycleError:
            continue
    return out


def revert(
    paths: Paths, model: str, targets: list[DrivenServer], before: dict[str, int | None], checks: dict[int, LiveCheck],
    after: dict[str, int | None] | None = None, timeout: float = DEFAULT_TIMEOUT_S,
) -> list[str]:
    """Put the previous config back on every server and confirm the previous stable; return problems.

    With ``after`` (the labels may already have moved and old versions may be unloading), it goes
    back the way a promote goes forward, since labels may point only at AVAILABLE versions:
    first both states' versions with the ``after`` labels, wait for the old versions, then the
    previous config. Unreachable servers are reported, not retried: they read the file when
    they start again.
    """
    b = serving_from_state(before)

    def config_with(state: ModelServing) -> Any:
        return tfs_config.build(paths, serving_with(registry.load(paths, lazy=True), model, state))

    problems: list[str] = []
    alive = list(targets)
    driver = Driver(paths, model, alive, time.monotonic() + timeout)

    def push(config: Any) -> None:
        tfs_config.write(paths, config)
        results = parallel(
            list(driver.targets),
            # Each within its own replica deadline: a frozen server delays the revert by no more.
            lambda t: t.client.reload(config, timeout=min(RPC_TIMEOUT_S, t.spec.replica_timeout))
            if t.spec.reload == "request" else None,
        )
        for t, e in results:
            if e is not None:
                problems.append(e.message if isinstance(e, LifecycleError) else f"server {t.name}: {e}")
                driver.targets.remove(t)

    try:
        if after is not None and b.versions:
            a = serving_from_state(after)
            push(config_with(b.union(a, a.labels)))
            driver.wait_available("revert", list(b.versions), {})
        push(config_with(b))
        if b.versions:
            driver.wait_available("revert", list(b.versions), {})
            driver.confirm_labels("revert", dict(b.labels), checks)
    except LifecycleError as e:
        problems.append(e.message)
        tfs_config.write(paths, config_with(b))  # the file says the previous state in any case
    return problems
