"""Recovery: a rollout journal left by an mlc that died is completed or reverted.

When the labels had moved on every server (step ``label`` done) the rollout is completed,
otherwise reverted; either way the history records it "by recovery". A progressive rollout's
split is set to weight 0 before a revert and cleared on every replica after either. Only the commands that
drive servers run recovery (promote, rollback, serve); ``status`` reports a pending journal and
``register`` leaves it alone, since recovering reloads production servers.
"""

from __future__ import annotations

import time

from lifecycle.errors import LifecycleError
from lifecycle.rollout.driver import DEFAULT_TIMEOUT_S, Driver
from lifecycle.rollout.plan import plan_rollout, serving_from_state
from lifecycle.rollout.split import clear, quiesce
from lifecycle.rollout.transaction import (
    Rollout,
    checks_before,
    complete_forward,
    record_event,
    revert,
)
from lifecycle.serving import fleet
from lifecycle.store import journal, registry
from lifecycle.store.config import Paths


def recover_pending(paths: Paths) -> str | None:
    """Complete or revert a rollout left by an mlc that died. Caller holds the lock."""
    j = journal.load(paths)
    if j is None:
        return None
    reg = registry.load(paths, lazy=True)
    try:
        rec = reg.model(j.model)
    except LifecycleError:
        journal.clear(paths)
        return f"discarded a rollout journal for unknown model {j.model!r}"
    if any(e.journal == j.id for e in rec.history):
        journal.clear(paths)  # committed; only the journal deletion was lost
        return f"found a finished rollout journal ({j.describe()}); removed it"
    who = f"mlc pid {j.pid} stopped after step {j.last()}"
    plan = plan_rollout(paths, reg, j.action, j.model, j.version, j.after, fleet.load(paths).names, j.forced)
    rollout = Rollout(paths, plan, DEFAULT_TIMEOUT_S, j.reason, fleet.load(paths))
    rollout.journal = j
    targets = rollout.targets()
    forward_error = ""
    try:
        if j.reached("label", "done"):
            # Every server already answered from the new labels: finish the move.
            driver = Driver(paths, j.model, targets, time.monotonic() + DEFAULT_TIMEOUT_S)
            try:
                complete_forward(rollout, driver, serving_from_state(j.after), "recovered", f"interrupted ({who}); completed by recovery")
                left = clear(paths, j, targets)  # a progressive rollout's split goes too
                return f"recovered an interrupted {j.describe()}: completed it" + (f" ({'; '.join(left)})" if left else "")
            except LifecycleError as e:
                forward_error = e.message
        problems = quiesce(paths, j, targets)
        problems += revert(paths, j.model, targets, j.before, checks_before(paths, rec, j.before, targets),
                           after=j.after if j.reached("label", "begin") else None)
        problems += clear(paths, j, targets)
        detail = f"interrupted ({who}); reverted by recovery"
        if forward_error:
            detail += f" after completing it failed: {forward_error}"
        if problems:
            detail += f" ({'; '.join(problems)})"
        record_event(paths, j, "reverted", detail)
        journal.clear(paths)
        return f"recovered an interrupted {j.describe()}: reverted it" + (f" ({'; '.join(problems)})" if problems else "")
    finally:
        for t in targets:
            t.client.close()


def recover(paths: Paths) -> str | None:
    """Take the lock and recover a pending rollout journal, if any (for mutating commands)."""
    if journal.load(paths) is None:
        return None
    with registry.lease(paths):
        return recover_pending(paths)
