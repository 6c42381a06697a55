"""The progressive rollout's transaction: a promote whose candidate earns its traffic step by step.

It is :class:`~lifecycle.rollout.transaction.Rollout` (the same preconditions, journal, sandbox
check, revert and commit as ``mlc promote``) with traffic steps between loading the candidate
and moving the ``stable`` label:

1. **split**: a split {stable S, candidate C, weight 0} on every replica, *before* C loads, so
   that C never takes default-route traffic by being the highest version;
2. **load, available, verify**: C beside S on every replica, as promote;
3. **traffic**, once per step of the plan (:mod:`lifecycle.rollout.steps`): set the step's
   weight (or shadow) on every replica, wait until all report it, hold, scrape every replica and
   judge C against S over the same interval (:mod:`lifecycle.rollout.analysis`);
4. **label, drop, unloaded, commit**: every step passed: weight 1, the promote's commit, and the
   split cleared.

A failing step, ``mlc rollout MODEL --abort`` or Ctrl-C aborts: weight 0 everywhere, C unloaded
(the promote's revert), the split cleared, and the history records the step, the metric, its
value and its threshold (result ``aborted``).
"""

from __future__ import annotations

import time
from typing import Any

from lifecycle.errors import LifecycleError, RolloutAborted
from lifecycle.rollout import split as fleet_split
from lifecycle.rollout.analysis import FAIL, PASS, TOO_FEW, StepReport, judge
from lifecycle.rollout.driver import DrivenServer, Driver
from lifecycle.rollout.live_check import LiveCheck
from lifecycle.rollout.plan import Plan
from lifecycle.rollout.steps import TrafficPlan, TrafficStep
from lifecycle.rollout.transaction import Rollout, complete_forward
from lifecycle.serving import fleet
from lifecycle.serving.tfs_config import ModelServing
from lifecycle.serving.traffic import Split
from lifecycle.store import journal, outbox
from lifecycle.store.config import CLASSIFICATION, Paths, load_definition
from lifecycle.store.registry import ModelRecord

CHECK_INTERVAL_S = 0.2  # how often a hold looks at the abort flag
PROGRESS_INTERVAL_S = 1.0  # how often a hold scrapes and journals its figures so far (status shows them)


def compare_spec(paths: Paths, model: str) -> dict[str, str]:
    """How the server compares shadowed answers: the model's task, output and signature."""
    try:
        definition = load_definition(paths, model)
    except LifecycleError:  # a model without a (readable) definition is compared generically
        return {"kind": "generic"}
    output = definition.signature.outputs[0] if definition.signature.outputs else None
    if definition.task == CLASSIFICATION:
        kind = "classification"
    elif "task" in definition.raw or (output is not None and output.dtype.startswith("int") and
                                      output.shape is not None and len(output.shape) == 3):
        kind = "segmentation"
    else:
        kind = "generic"
    spec = {"kind": kind, "signature": definition.signature.key}
    if output is not None:
        spec["output"] = output.name
    return spec


class Progressive(Rollout):
    """One progressive rollout under the lock: the promote's transaction with traffic steps."""

    def __init__(self, paths: Paths, plan: Plan, traffic: TrafficPlan, timeout: float, reason: str,
                 fleet_: fleet.Fleet, token: str | None, compare: dict[str, str], resumed: journal.Journal | None = None) -> None:
        super().__init__(paths, plan, timeout, reason, fleet_)
        self.traffic = traffic
        self.token = token
        self.compare = compare
        stable, candidate = plan.before["stable"], plan.version
        assert stable is not None and candidate is not None  # checked by the entry point
        self.stable, self.candidate = stable, candidate
        self.reports: list[StepReport] = []
        self.aborted = ""
        self.passed = 0  # steps that passed before (a resumed rollout skips them)
        if resumed is not None:
            self.journal = resumed
            self.reports = [StepReport(**{k: v for k, v in r.items() if k != "versions"})
                            for r in resumed.progress.get("steps", [])]
            self.passed = sum(1 for r in self.reports if r.verdict == PASS)
        self.journal.progress = {"plan": traffic.to_dict(), "steps": [r.to_dict() for r in self.reports],
                                 "current": None, "stable": stable, "candidate": candidate}

    def split(self, weight: float, shadow: float = 0.0) -> Split:
        """The split of this rollout at ``weight`` (pinned to stable at weight 0 without a shadow)."""
        if weight == 0 and shadow == 0:
            return Split.pinned(self.stable, self.candidate, self.compare)
        return Split(self.stable, self.candidate, weight, shadow, self.compare)

    def production(self, driver: Driver, b: ModelServing, a: ModelServing, checks: dict[int, LiveCheck]) -> None:
        """Split at weight 0, load the candidate, the traffic steps, then the promote's commit."""
        try:
            with self.step("split"):
                fleet_split.push(self.paths, driver, "split", self.model, self.split(0.0), self.token)
            self.load_new(driver, b, a, checks)
            for i, step in enumerate(self.traffic.steps):
                if i >= self.passed:
                    driver.deadline = time.monotonic() + self.timeout
                    self.run_step(driver, step)
            driver.deadline = time.monotonic() + self.timeout
            journal.step(self.paths, self.journal, "traffic", "begin", "100%")
            fleet_split.push(self.paths, driver, "traffic", self.model, self.split(1.0), self.token)
            journal.step(self.paths, self.journal, "traffic", "done", "100%")
            self.move_labels(driver, b, a, checks)
            with self.step("split"):
                fleet_split.push(self.paths, driver, "split", self.model, None, self.token)
        except KeyboardInterrupt:
            self.aborted = "interrupted (Ctrl-C)"
            raise RolloutAborted(self.current_step(), "interrupted (Ctrl-C)") from None
        passed = ", ".join(f"{r.step} ({r.requests} requests)" for r in self.reports if r.verdict == PASS)
        complete_forward(self, driver, a, "ok", "; ".join([f"steps passed: {passed}", *self.plan.notes]))
        fleet_split.clear_abort(self.paths)

    def current_step(self) -> str:
        """The traffic step in progress (or the last journal step)."""
        current = self.journal.progress.get("current")
        if isinstance(current, dict) and current.get("step"):
            return str(current["step"])
        return self.journal.steps[-1]["step"] if self.journal.steps else "?"

    def check_abort(self, step: str) -> None:
        """Abort when someone asked for it (``mlc rollout MODEL --abort``)."""
        who = fleet_split.abort_requested(self.paths, self.journal.id)
        if who:
            self.aborted = f"aborted by `mlc rollout {self.model} --abort` ({who})"
            raise RolloutAborted(step, self.aborted)

    def run_step(self, driver: Driver, step: TrafficStep) -> None:
        """One traffic step: set it everywhere, hold, scrape, judge; a failing verdict aborts."""
        journal.step(self.paths, self.journal, "traffic", "begin", step.name)
        self.check_abort(step.name)
        fleet_split.push(self.paths, driver, "traffic", self.model, self.split(step.weight, step.shadow), self.token)
        before = fleet_split.scrape_all(step.name, driver.targets, self.model)
        started = time.monotonic()
        hold_until = started + step.hold
        limits = self.traffic.limits
        while True:
            self.hold(driver, step, before, started, hold_until)
            now = time.monotonic()
            report = judge(step, fleet_split.since(fleet_split.scrape_all(step.name, driver.targets, self.model), before),
                           self.stable, self.candidate, limits, now - started)
            if report.verdict == TOO_FEW and limits.too_few == "wait" and now - started < step.hold + limits.max_wait:
                self.note(report)
                hold_until = min(now + max(CHECK_INTERVAL_S, min(1.0, step.hold)), started + step.hold + limits.max_wait)
                continue
            break
        if report.verdict == TOO_FEW:
            report.verdict = FAIL
            if limits.too_few == "wait":
                report.reason += f" after waiting {limits.max_wait:g} s beyond the hold (max_wait)"
        self.reports.append(report)
        self.journal.progress["steps"] = [r.to_dict() for r in self.reports]
        self.journal.progress["current"] = None
        if report.verdict != PASS:
            self.aborted = report.reason
            journal.write(self.paths, self.journal)
            raise RolloutAborted(step.name, report.reason)
        journal.step(self.paths, self.journal, "traffic", "done", step.name)
        outbox.emit(self.paths, "rollout-step", self.model, {"version": self.candidate, **report.to_dict()})

    def hold(self, driver: Driver, step: TrafficStep, before: dict[str, Any], started: float, until: float) -> None:
        """Wait until ``until``, looking at the abort flag and journaling the figures so far."""
        last = time.monotonic()
        while (now := time.monotonic()) < until:
            self.check_abort(step.name)
            if now - last >= PROGRESS_INTERVAL_S and until - now > PROGRESS_INTERVAL_S / 2:
                last = now
                counts = fleet_split.since(fleet_split.scrape_all(step.name, driver.targets, self.model), before)
                self.note(judge(step, counts, self.stable, self.candidate, self.traffic.limits, now - started))
            time.sleep(min(CHECK_INTERVAL_S, max(0.0, until - now)))

    def note(self, report: StepReport) -> None:
        """Journal a step's figures so far (``mlc status`` shows them)."""
        self.journal.progress["current"] = report.to_dict()
        journal.write(self.paths, self.journal)

    def undo(self, targets: list[DrivenServer], rec: ModelRecord) -> list[str]:
        """Weight 0 everywhere, the promote's revert (the candidate unloads), then the split cleared."""
        problems = fleet_split.set_everywhere(self.paths, targets, self.model, self.split(0.0), self.token)
        problems += super().undo(targets, rec)
        problems += fleet_split.set_everywhere(self.paths, targets, self.model, None, self.token)
        return problems

    def finish(self, result: str, detail: str) -> None:
        """Record the event (a reverted rollout is ``aborted``) and clear the journal."""
        if result == "reverted":
            result = "aborted"
        super().finish(result, detail)
        fleet_split.clear_abort(self.paths)
