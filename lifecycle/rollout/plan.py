"""What a rollout will do: preconditions, the quality gate, the stable chain and the plan.

Nothing here touches a server: :func:`plan_rollout` is also what ``--dry-run`` prints.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from lifecycle.errors import (
    CorruptVersion,
    FailedPrecondition,
    LifecycleError,
    ModelNotFound,
    UsageError,
    VersionNotFound,
)
from lifecycle.rollout import compatibility
from lifecycle.serving import tfs_config
from lifecycle.serving.tfs_config import ModelServing
from lifecycle.store import approvals
from lifecycle.store.config import Paths, Thresholds, load_definition
from lifecycle.store.registry import ModelRecord, Registry, VersionRecord

SUCCESS_RESULTS = ("ok", "recovered")


@dataclass
class Plan:
    """What a rollout will do: states, versions loaded and dropped, steps, config diff."""

    action: str
    model: str
    version: int | None
    before: dict[str, int | None]
    after: dict[str, int | None]
    load: list[int]
    drop: list[int]
    steps: list[str]
    servers: list[str]
    config_diff: str
    forced: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass
class RolloutResult:
    """The outcome of a promote or rollback that succeeded (failures raise)."""

    plan: Plan
    result: str  # ok | noop | dry-run
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    recovered: list[str] = field(default_factory=list)
    message: str = ""
    warnings: list[str] = field(default_factory=list)  # e.g. a rollback to a version the gate would refuse

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return asdict(self)


def check_servable(paths: Paths, rec: ModelRecord, version: int) -> VersionRecord:
    """The version record if ``version`` exists, is validated and is on disk; else refuse."""
    vrec = rec.version(version)
    if not vrec.validated:
        raise FailedPrecondition(
            f"version {version} of {rec.name} is not validated; only validated versions can serve "
            f"(see `mlc status {rec.name}`)"
        )
    try:
        vdir = paths.store.version_path(rec.name, version)
    except VersionNotFound as e:
        raise FailedPrecondition(f"version {version} of {rec.name} is registered but not published: {e.message}") from e
    if not ((vdir / "saved_model.pb").exists() or (vdir / "saved_model.pbtxt").exists()):
        raise FailedPrecondition(f"version {version} of {rec.name} is registered but {vdir} holds no SavedModel")
    try:
        paths.store.verify_version(rec.name, version)
    except CorruptVersion as e:
        raise FailedPrecondition(f"version {version} of {rec.name} is refused before any server loads it: {e.message}") from e
    return vrec


def _definition_thresholds(paths: Paths, model: str) -> Thresholds:
    """The model definition's thresholds; the defaults for a model without a definition."""
    try:
        return load_definition(paths, model).thresholds
    except ModelNotFound:
        return Thresholds()


def quality_gate(paths: Paths, rec: ModelRecord, candidate: VersionRecord, force: bool) -> str | None:
    """Refuse a candidate whose mIoU (a classifier's: accuracy) is below stable's by more than the tolerance.

    The tolerance is ``thresholds.max_miou_drop`` (``max_accuracy_drop``) in configs/<model>.yaml (default 0). The gate
    is skipped when either version has no mIoU, and refuses when the two were scored on
    different evaluation sets. With ``force`` the refusal becomes a note that the history
    records (``promote`` then insists on a reason). Returns that note, or None when it passed.
    """
    if rec.stable is None or rec.stable == candidate.version:
        return None
    try:
        stable = rec.version(rec.stable)
    except LifecycleError:
        return None
    new_metrics, old_metrics = candidate.report.get("metrics") or {}, stable.report.get("metrics") or {}
    # Segmentation versions are compared by mIoU, classifiers by accuracy.
    metric = "miou" if "miou" in new_metrics else "accuracy"
    label = "mIoU" if metric == "miou" else "accuracy"
    new, old = new_metrics.get(metric), old_metrics.get(metric)
    if new is None or old is None:
        return None
    new_eval, old_eval = new_metrics.get("eval"), old_metrics.get("eval")
    if new_eval and old_eval and new_eval != old_eval:
        # mIoU on another evaluation set (the definition's changed in between) says nothing
        # about which version is better.
        why = (
            f"quality gate: version {candidate.version} and stable {rec.stable} were scored on different "
            f"evaluation sets ({_describe_eval(new_eval)} vs {_describe_eval(old_eval)}), so their {label} "
            f"cannot be compared"
        )
        if not force:
            raise FailedPrecondition(f"{why}; promote with --force --reason TEXT to override")
        return f"forced past the {why}"
    thresholds = _definition_thresholds(paths, rec.name)
    tolerance = thresholds.max_miou_drop if metric == "miou" else thresholds.max_accuracy_drop
    if float(new) >= float(old) - tolerance:
        return None
    why = (
        f"quality gate: version {candidate.version} has {label} {float(new):.4f}, below stable {rec.stable}'s "
        f"{float(old):.4f} by more than the tolerance {tolerance:g}"
    )
    if not force:
        raise FailedPrecondition(f"{why}; promote with --force --reason TEXT to override")
    return f"forced past the {why}"


@dataclass(frozen=True)
class Gates:
    """What the gates said of a candidate that may take traffic: notes for the history, and whether one was overridden."""

    notes: list[str]
    forced: bool


def preconditions(
    paths: Paths, rec: ModelRecord, candidate: VersionRecord, force: bool = False, allow_breaking: bool = False,
    reason: str = "",
) -> Gates:
    """The gates a servable candidate must pass before it takes traffic: approvals, signatures, then quality.

    ``promote`` and ``rollout`` call this. Each refusal is one line. Approvals have no override
    (``mlc approve``, :mod:`lifecycle.store.approvals`); ``force`` (the quality gate)
    and ``allow_breaking`` (the signature gate) turn a refusal into a history note, and then
    ``reason`` must say why.
    """
    approvals.check(paths, rec, candidate.version)
    notes: list[str] = []
    breaking = compatibility.check(paths, rec, candidate, rec.stable, allow_breaking)
    if breaking:
        if not reason.strip():
            raise UsageError(f"--allow-breaking overrides the {breaking.removeprefix('allowed breaking change past the ')}; "
                             "say why with --reason TEXT (recorded in the history)")
        notes.append(breaking)
    gate = quality_gate(paths, rec, candidate, force)
    if gate:
        if not reason.strip():
            # A forced promotion is an audit-trail event: the history must say why.
            raise UsageError(f"--force overrides the {gate.removeprefix('forced past the ')}; "
                             "say why with --reason TEXT (recorded in the history)")
        notes.append(gate)
    return Gates(notes, bool(notes))


def _describe_eval(spec: Any) -> str:
    if not isinstance(spec, dict):
        return str(spec)
    return ", ".join(f"{k} {str(v)[:19]}" for k, v in spec.items() if k != "classes" and v is not None)


def stable_chain(rec: ModelRecord) -> list[int]:
    """The stack of stable versions the history built: promotes push, rollbacks pop."""
    stack: list[int] = []
    for event in rec.history:
        if event.result not in SUCCESS_RESULTS or event.to_version is None:
            continue
        if event.action in ("promote", "rollout"):  # a progressive rollout ends with the promote's commit
            if not stack or stack[-1] != event.to_version:
                stack.append(event.to_version)
        elif event.action == "rollback":
            if event.to_version in stack:
                del stack[len(stack) - stack[::-1].index(event.to_version):]
            else:
                stack.append(event.to_version)
    if rec.stable is not None and (not stack or stack[-1] != rec.stable):
        stack.append(rec.stable)  # a stable set outside the history
    return stack


def rollback_target(paths: Paths, rec: ModelRecord) -> int:
    """The previous known-good stable: walk the stable chain back past unusable versions."""
    chain = stable_chain(rec)
    for candidate in reversed(chain[:-1]):
        if candidate == rec.stable:
            continue
        try:
            check_servable(paths, rec, candidate)
        except LifecycleError:
            continue
        return candidate
    raise FailedPrecondition(
        f"nothing to roll back to for {rec.name}: no earlier stable version in its history "
        f"(stable is {rec.stable if rec.stable is not None else 'unset'}; see `mlc history {rec.name}`)"
    )


def state_of(stable: int | None, canary: int | None) -> dict[str, int | None]:
    """A model's registry state as a plan and the journal record it: ``{"stable": .., "canary": ..}``."""
    return {"stable": stable, "canary": canary}


def serving_from_state(state: dict[str, int | None]) -> ModelServing:
    """What serving a registry state means: its versions and labels (see ``ModelServing.of``)."""
    return ModelServing.of(state.get("stable"), state.get("canary"))


def serving_with(reg: Registry, model: str, state: ModelServing) -> tfs_config.Serving:
    """Every model's registry state, with ``model`` replaced by ``state`` (left out when it serves nothing)."""
    serving = tfs_config.served_from_registry(reg)
    serving.pop(model, None)
    if state.versions:
        serving[model] = state
    return serving


def plan_rollout(
    paths: Paths,
    reg: Registry,
    action: str,
    model: str,
    version: int | None,
    after: dict[str, int | None],
    servers: list[str],
    forced: bool = False,
    notes: Sequence[str] = (),
) -> Plan:
    """The plan for moving ``model`` from its registry state to ``after``."""
    rec = reg.model(model)
    before = state_of(rec.stable, rec.canary)
    b, a = serving_from_state(before), serving_from_state(after)
    load = sorted(set(a.versions) - set(b.versions))
    drop = sorted(set(b.versions) - set(a.versions))
    steps = []
    if load:
        steps.append(f"sandbox: load {model} {', '.join(map(str, load))} alone on 127.0.0.1:0 and check the golden digest")
        steps.append(f"load: serve {_listed(b.union(a, b.labels).versions)} with labels {_labelled(b.labels)} and reload")
        steps.append(f"available: wait for {', '.join(map(str, load))} AVAILABLE on every server")
        steps.append("verify: round-trip the test request on every server, addressed to the new version")
    if dict(a.labels) != dict(b.labels):
        steps.append(f"label: move labels to {_labelled(a.labels)} and confirm with label-addressed requests")
    if drop:
        steps.append(f"drop: serve {_listed(a.versions)} only and reload")
        steps.append(f"unloaded: wait for {', '.join(map(str, drop))} to unload on every server")
    recorded = _labelled({k: v for k, v in after.items() if v is not None})
    steps.append(f"commit: record {'labels ' + recorded if after['stable'] or after['canary'] else 'no labels'}"
                 " in the registry and the history")
    current = tfs_config.read_text(paths)
    new_text = tfs_config.render(tfs_config.build(paths, serving_with(reg, model, a)))
    return Plan(
        action=action, model=model, version=version, before=before, after=after, load=load, drop=drop,
        steps=steps, servers=servers, config_diff=tfs_config.diff(current, new_text), forced=forced, notes=list(notes),
    )


def _listed(versions: Iterable[int]) -> str:
    """Versions as people write them: ``3, 4`` (``none`` when empty)."""
    return ", ".join(map(str, versions)) or "none"


def _labelled(labels: Mapping[str, int]) -> str:
    """Labels as people write them: ``stable=3, canary=4`` (``none`` when empty)."""
    return ", ".join(f"{k}={v}" for k, v in labels.items()) or "none"
