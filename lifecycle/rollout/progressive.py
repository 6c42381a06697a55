"""``mlc rollout``: the entry points of the progressive rollout (run, resume, revert, abort).

The preconditions are promote's (:func:`~lifecycle.rollout.plan.check_servable`, the quality
gate), and so are the journal, the sandbox, the revert and the commit
(:class:`~lifecycle.rollout.stepping.Progressive` is promote's transaction with traffic steps).
What only a rollout checks, before it changes anything: a stable version to compare with, no
canary label in the way, running servers, and on every one of them mlc-model-server's traffic
split (tensorflow_model_server has none: it refuses in one line and points to
``mlc promote --canary`` with label-addressed clients).
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from lifecycle.errors import FailedPrecondition, LifecycleError, PromotionFailed, UsageError
from lifecycle.rollout.analysis import StepReport
from lifecycle.rollout.driver import DEFAULT_TIMEOUT_S, ensure_servers_reachable
from lifecycle.rollout.plan import Plan, check_servable, plan_rollout, quality_gate, state_of
from lifecycle.rollout.recovery import recover_pending
from lifecycle.rollout.split import request_abort
from lifecycle.rollout.stepping import Progressive, compare_spec
from lifecycle.rollout.steps import TrafficPlan, traffic_plan
from lifecycle.serving import fleet, metrics, traffic
from lifecycle.store import journal, registry
from lifecycle.store.config import Paths

STEP_KEYS = ("step", "weight", "requests", "error_rate", "p99_ratio", "agreement", "verdict")
REFUSAL = ("mlc rollout needs mlc-model-server's traffic split and shadow, which {why}; use "
           "`mlc promote {model} VERSION --canary` with clients that address the labels 'stable' and 'canary' instead")


@dataclass
class ProgressiveResult:
    """The outcome of ``mlc rollout``: promoted, aborted, or the plan (dry run)."""

    model: str
    version: int | None
    result: str  # promoted | aborted | dry-run | reverted | completed | abort-requested
    reason: str = ""
    steps: list[StepReport] = field(default_factory=list)
    plan: Plan | None = None
    traffic: TrafficPlan | None = None
    recovered: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """``--json``: model, version, result, reason and each step's figures and verdict."""
        out: dict[str, Any] = {
            "model": self.model, "version": self.version, "result": self.result, "reason": self.reason,
            "steps": [{k: getattr(s, k) for k in STEP_KEYS} for s in self.steps],
        }
        if self.result == "dry-run" and self.plan is not None and self.traffic is not None:
            out["plan"] = {"steps": self.traffic.describe(), "promote": self.plan.steps, "servers": self.plan.servers}
        if self.recovered:
            out["recovered"] = self.recovered
        return out


def command(
    paths: Paths, model: str, version: int | None, steps: str | None = None, limits: dict[str, Any] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S, reason: str = "", dry_run: bool = False, force: bool = False,
    replica_timeout: float | None = None, action: str = "run",
) -> ProgressiveResult:
    """``mlc rollout``: run (needs VERSION), or ``abort``, ``resume`` or ``revert`` the rollout of ``model``."""
    if action != "run":
        if version is not None or steps is not None or dry_run or any(v is not None for v in (limits or {}).values()):
            raise UsageError(f"--{action} takes only MODEL (and --timeout): `mlc rollout {model} --{action}`")
        if action == "abort":
            return abort(paths, model)
        if action == "resume":
            return resume(paths, model, timeout, replica_timeout)
        return revert(paths, model)
    if version is None:
        raise UsageError(f"say which version to roll out: `mlc rollout {model} VERSION` (or --abort, --resume, --revert)")
    plan = traffic_plan(paths, model, steps, **(limits or {}))
    return rollout(paths, model, version, plan, timeout, reason, dry_run, force, replica_timeout)


def refuse_without_split(paths: Paths, model: str, fleet_: fleet.Fleet) -> str | None:
    """The token, after checking that every server has the traffic split; else FailedPrecondition (one line)."""
    engines = {r.grpc: r.engine for r in fleet.live_records(paths)}
    tfs = [s.name for s in fleet_.servers if engines.get(s.name) == "tfserving"]
    if tfs:
        why = f"tensorflow_model_server (the engine of {', '.join(tfs)}) does not have"
        raise FailedPrecondition(REFUSAL.format(why=why, model=model))
    token = traffic.read_token(paths)
    for spec in fleet_.servers:
        problem = traffic.supports_split(spec, model, token)
        if problem:
            raise FailedPrecondition(REFUSAL.format(why=f"server {spec.name} does not offer ({problem})", model=model))
        try:
            metrics.scrape(spec, timeout=2.0)
        except LifecycleError as e:
            raise FailedPrecondition(f"mlc rollout judges the candidate by the servers' metrics: {e.message}") from e
    return token


def rollout(
    paths: Paths, model: str, version: int, plan: TrafficPlan, timeout: float = DEFAULT_TIMEOUT_S,
    reason: str = "", dry_run: bool = False, force: bool = False, replica_timeout: float | None = None,
) -> ProgressiveResult:
    """Roll ``version`` of ``model`` out step by step; promote it when every step passes."""
    fleet_ = fleet.load(paths, replica_timeout)
    with registry.lease(paths) if not dry_run else nullcontext():
        pending = journal.load(paths)
        if pending is not None and not dry_run:
            if pending.action == "rollout":
                raise FailedPrecondition(
                    f"an interrupted rollout is pending ({pending.describe()}): resume it with `mlc rollout "
                    f"{pending.model} --resume` or revert it with `mlc rollout {pending.model} --revert`"
                )
            recovered = [m for m in [recover_pending(paths)] if m]
        else:
            recovered = []
        reg = registry.load(paths, lazy=True)
        rec = reg.model(model)
        vrec = check_servable(paths, rec, version)
        if rec.stable is None:
            raise FailedPrecondition(f"{model} has no stable version to compare with; promote one first with `mlc promote`")
        if rec.stable == version:
            raise FailedPrecondition(f"version {version} of {model} is already stable")
        if rec.canary is not None:
            raise FailedPrecondition(
                f"{model} has a canary ({rec.canary}); finish it with `mlc promote {model} {rec.canary}` or withdraw it "
                f"with `mlc rollback {model}` before a rollout"
            )
        notes = []
        gate = quality_gate(paths, rec, vrec, force)
        if gate:
            if not reason.strip():
                raise UsageError(f"--force overrides the {gate.removeprefix('forced past the ')}; "
                                 "say why with --reason TEXT (recorded in the history)")
            notes.append(gate)
        after = state_of(version, None)
        promote_plan = plan_rollout(paths, reg, "rollout", model, version, after, fleet_.names, bool(gate), notes)
        if dry_run:
            return ProgressiveResult(model, version, "dry-run", plan=promote_plan, traffic=plan)
        if not fleet_.servers:
            raise FailedPrecondition(
                "mlc rollout judges the candidate on live traffic and no servers run or are listed in "
                "configs/servers.yaml; start them with `mlc serve`"
            )
        ensure_servers_reachable(fleet_.servers)
        token = refuse_without_split(paths, model, fleet_)
        run = Progressive(paths, promote_plan, plan, timeout, reason, fleet_, token, compare_spec(paths, model))
        return _run(run, recovered)


def _run(run: Progressive, recovered: list[str]) -> ProgressiveResult:
    t0 = time.monotonic()
    try:
        run.run()
    except KeyboardInterrupt:
        # Ctrl-C before the traffic steps (sandbox, load): revert what the journal says, as recovery does.
        pending = journal.load(run.paths)
        done = recover_pending(run.paths) if pending is not None and pending.id == run.journal.id else None
        return ProgressiveResult(run.model, run.candidate, "aborted", "interrupted (Ctrl-C)" + (f"; {done}" if done else ""),
                                 run.reports, run.plan, run.traffic, recovered, time.monotonic() - t0)
    except PromotionFailed as e:
        return ProgressiveResult(run.model, run.candidate, "aborted", e.message, run.reports, run.plan, run.traffic,
                                 recovered, time.monotonic() - t0)
    return ProgressiveResult(run.model, run.candidate, "promoted", f"every step passed; version {run.candidate} is stable",
                             run.reports, run.plan, run.traffic, recovered, time.monotonic() - t0)


def resume(paths: Paths, model: str, timeout: float = DEFAULT_TIMEOUT_S, replica_timeout: float | None = None) -> ProgressiveResult:
    """Resume an interrupted rollout of ``model`` at the step it stopped in (passed steps are not redone)."""
    with registry.lease(paths):
        j = _pending(paths, model)
        if j.reached("label", "begin") or "plan" not in j.progress:
            # The labels were moving: completing or reverting is recovery's decision.
            return ProgressiveResult(model, j.version, "recovered", recover_pending(paths) or "")
        fleet_ = fleet.load(paths, replica_timeout)
        reg = registry.load(paths, lazy=True)
        promote_plan = plan_rollout(paths, reg, "rollout", model, j.version, j.after, fleet_.names, j.forced)
        promote_plan.before = dict(j.before)
        ensure_servers_reachable(fleet_.servers)
        token = refuse_without_split(paths, model, fleet_)
        plan = TrafficPlan.from_dict(j.progress["plan"])
        run = Progressive(paths, promote_plan, plan, timeout, j.reason, fleet_, token, compare_spec(paths, model), resumed=j)
        return _run(run, [f"resumed the interrupted {j.describe()}"])


def revert(paths: Paths, model: str) -> ProgressiveResult:
    """Revert an interrupted rollout of ``model`` (weight 0, candidate unloaded, split cleared)."""
    with registry.lease(paths):
        j = _pending(paths, model)
        message = recover_pending(paths) or ""
        return ProgressiveResult(model, j.version, "completed" if "completed it" in message else "reverted", message)


def abort(paths: Paths, model: str) -> ProgressiveResult:
    """Ask the running rollout of ``model`` to abort at its next check (no lock: it holds it)."""
    described = request_abort(paths, model)
    return ProgressiveResult(model, None, "abort-requested", f"asked the running {described} to abort at its next check")


def _pending(paths: Paths, model: str) -> journal.Journal:
    j = journal.load(paths)
    if j is None or j.model != model:
        raise FailedPrecondition(f"no interrupted rollout of {model} is pending (see `mlc status {model}`)")
    if j.action != "rollout":
        raise FailedPrecondition(f"the pending journal is a {j.action}, not a rollout ({j.describe()}); "
                                 "the next mlc promote, rollback or serve recovers it")
    return j
