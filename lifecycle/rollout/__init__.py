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
by :func:`recover_pending`, which every mutating command runs first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from lifecycle.errors import (
    ConfigError,
    FailedPrecondition,
    LifecycleError,
    ModelNotFound,
    PromotionFailed,
    ServerUnavailable,
    StepFailed,
    UsageError,
    VersionNotFound,
)
from lifecycle.serving import fleet, tfs_config
from lifecycle.serving.client import ServingClient, VersionState
from lifecycle.serving.tfs_config import ModelServing
from lifecycle.store import journal, registry
from lifecycle.store.config import Paths, Thresholds, load_definition
from lifecycle.store.registry import HistoryEvent, ModelRecord, Registry, VersionRecord

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 120.0
POLL_INTERVAL_S = 0.05
RPC_TIMEOUT_S = 10.0
# How long a failed END state seen before our reload may be a leftover of an earlier attempt
# (TF Serving's file-system source aspires new versions on its next poll, not at once).
STALE_END_GRACE_S = 3.0

SUCCESS_RESULTS = ("ok", "recovered")


# --- data returned to the CLI ----------------------------------------------------------------


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


# --- preconditions ---------------------------------------------------------------------------


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
    return vrec


def _definition_thresholds(paths: Paths, model: str) -> Thresholds:
    """The model definition's thresholds; the defaults for a model without a definition."""
    try:
        return load_definition(paths, model).thresholds
    except ModelNotFound:
        return Thresholds()


def quality_gate(paths: Paths, rec: ModelRecord, candidate: VersionRecord, force: bool) -> str | None:
    """Refuse a candidate whose mIoU is below stable's by more than the definition's tolerance.

    The tolerance is ``thresholds.max_miou_drop`` in configs/<model>.yaml (default 0). The gate
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
    new, old = new_metrics.get("miou"), old_metrics.get("miou")
    if new is None or old is None:
        return None
    new_eval, old_eval = new_metrics.get("eval"), old_metrics.get("eval")
    if new_eval and old_eval and new_eval != old_eval:
        # mIoU on another evaluation set (the definition's changed in between) says nothing
        # about which version is better.
        why = (
            f"quality gate: version {candidate.version} and stable {rec.stable} were scored on different "
            f"evaluation sets ({_describe_eval(new_eval)} vs {_describe_eval(old_eval)}), so their mIoU "
            f"cannot be compared"
        )
        if not force:
            raise FailedPrecondition(f"{why}; promote with --force --reason TEXT to override")
        return f"forced past the {why}"
    tolerance = _definition_thresholds(paths, rec.name).max_miou_drop
    if float(new) >= float(old) - tolerance:
        return None
    why = (
        f"quality gate: version {candidate.version} has mIoU {float(new):.4f}, below stable {rec.stable}'s "
        f"{float(old):.4f} by more than the tolerance {tolerance:g}"
    )
    if not force:
        raise FailedPrecondition(f"{why}; promote with --force --reason TEXT to override")
    return f"forced past the {why}"


def _describe_eval(spec: Any) -> str:
    if not isinstance(spec, dict):
        return str(spec)
    return ", ".join(f"{k} {v}" for k, v in spec.items() if k != "classes")


def stable_chain(rec: ModelRecord) -> list[int]:
    """The stack of stable versions the history built: promotes push, rollbacks pop."""
    stack: list[int] = []
    for event in rec.history:
        if event.result not in SUCCESS_RESULTS or event.to_version is None:
            continue
        if event.action == "promote":
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


# --- the golden live check -------------------------------------------------------------------


@dataclass
class LiveCheck:
    """The warmup request of one version and the digest its output must have."""

    version: int
    requests: list[Any]  # PredictRequest
    golden: str | None
    output: str | None

    @classmethod
    def of(cls, paths: Paths, rec: ModelRecord, version: int) -> LiveCheck:
        """Read the version's warmup records and golden digest."""
        vrec = rec.version(version)
        golden = vrec.report.get("golden") or {}
        requests = read_warmup_requests(paths.store.version_path(rec.name, version))
        output = golden.get("output")
        if output is None:
            try:
                outputs = load_definition(paths, rec.name).signature.outputs
                output = outputs[0].name if len(outputs) == 1 else None
            except (ModelNotFound, ConfigError):
                output = None
        return cls(version, requests, golden.get("digest"), output)

    def request(self, model: str, version: int | None = None, label: str | None = None) -> Any:
        """The first warmup request addressed to ``version`` or ``label``."""
        request = type(self.requests[0])()
        request.CopyFrom(self.requests[0])
        request.model_spec.name = model
        if version is not None:
            request.model_spec.version.value = version
        elif label is not None:
            request.model_spec.version_label = label
        return request

    def run(self, client: ServingClient, model: str, version: int | None = None, label: str | None = None,
            timeout: float = RPC_TIMEOUT_S) -> int:
        """Replay the request; return the version that answered.

        When that version is this check's version, its output must have the golden digest
        (another version answering, e.g. a label not moved yet, is for the caller to judge).
        """
        import tensorflow as tf

        from lifecycle.build.validate import output_digest

        if not self.requests:
            return version if version is not None else -1
        response = client.predict(self.request(model, version, label), timeout=timeout)
        answered = response.model_spec.version.value
        if self.golden and answered == self.version:
            name = self.output if self.output in response.outputs else (
                next(iter(response.outputs)) if len(response.outputs) == 1 else None
            )
            if name is None:
                raise StepFailed("verify", f"server {client.grpc_address}: the response of {model} has no output {self.output!r}")
            digest = output_digest(tf.make_ndarray(response.outputs[name]))
            if digest != self.golden:
                raise StepFailed(
                    "verify",
                    f"server {client.grpc_address}: version {answered} of {model} answered the test request with "
                    f"digest {digest[:19]}..., expected the golden {self.golden[:19]}...",
                )
        return answered


def read_warmup_requests(version_dir: Path) -> list[Any]:
    """The PredictRequests of a version's ``assets.extra/tf_serving_warmup_requests``."""
    from lifecycle.build import validate

    reader = getattr(validate, "read_warmup_requests", None)
    if reader is not None:
        return list(reader(version_dir))
    file = version_dir / "assets.extra" / "tf_serving_warmup_requests"
    if not file.exists():
        return []
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    out = []
    for record in tf.compat.v1.io.tf_record_iterator(str(file)):
        log = prediction_log_pb2.PredictionLog.FromString(record)
        if log.HasField("predict_log"):
            out.append(log.predict_log.request)
    return out


# --- servers ---------------------------------------------------------------------------------


def _parallel(servers: Sequence[T], fn: Callable[[T], Any]) -> list[tuple[T, BaseException | None]]:
    """Run ``fn`` on every server at once; return each server's exception (or None)."""
    if not servers:
        return []

    def call(s: T) -> BaseException | None:
        try:
            fn(s)
            return None
        except Exception as e:  # noqa: BLE001 - reported per server by the caller
            return e

    with ThreadPoolExecutor(max_workers=len(servers)) as pool:
        return list(zip(servers, pool.map(call, servers)))


@dataclass
class Target:
    """One production server being driven."""

    spec: fleet.ServerSpec
    client: ServingClient

    @property
    def name(self) -> str:
        return self.spec.name


class Driver:
    """Pushes configs to servers and waits for states, within one deadline."""

    def __init__(self, paths: Paths, model: str, targets: list[Target], deadline: float) -> None:
        self.paths = paths
        self.model = model
        self.targets = targets
        self.deadline = deadline

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def push(self, step: str, serving: tfs_config.Serving) -> None:
        """Write configs/models.config and reload every server in request mode."""
        config = tfs_config.build(self.paths, serving)
        tfs_config.write(self.paths, config)

        def reload(t: Target) -> None:
            if t.spec.reload == "request":
                t.client.reload(config, timeout=max(1.0, self.remaining()))

        self._raise_first(step, _parallel(self.targets, reload))

    def _raise_first(self, step: str, results: list[tuple[Target, BaseException | None]]) -> None:
        errors = [(t, e) for t, e in results if e is not None]
        if errors:
            t, e = errors[0]
            message = e.message if isinstance(e, LifecycleError) else f"{type(e).__name__}: {e}"
            if not message.startswith("server "):
                message = f"server {t.name}: {message}"
            raise StepFailed(step, message) from e

    def status(self, t: Target) -> dict[int, VersionState]:
        try:
            return t.client.model_status(self.model, timeout=min(RPC_TIMEOUT_S, max(0.5, self.remaining())))
        except ModelNotFound:
            return {}

    def wait(self, step: str, what: str, done: Callable[[Target, dict[int, VersionState]], bool]) -> None:
        """Poll every server until ``done`` holds on each; StepFailed on timeout or error."""
        pending = list(self.targets)
        while pending:
            still = []
            for t in pending:
                try:
                    states = self.status(t)
                except LifecycleError as e:
                    raise StepFailed(step, e.message) from e
                if not done(t, states):
                    still.append(t)
            pending = still
            if not pending:
                return
            if self.remaining() <= 0:
                raise StepFailed(step, f"timed out waiting for {what} on {', '.join(t.name for t in pending)}")
            time.sleep(POLL_INTERVAL_S)

    def wait_available(self, step: str, versions: Sequence[int], baseline: dict[str, dict[int, VersionState]]) -> None:
        """Wait until ``versions`` are AVAILABLE everywhere; a load failure fails at once."""
        started = time.monotonic()

        def done(t: Target, states: dict[int, VersionState]) -> bool:
            ok = True
            for v in versions:
                s = states.get(v)
                if s is not None and s.state == "AVAILABLE":
                    continue
                ok = False
                if s is not None and s.failed:
                    old = baseline.get(t.name, {}).get(v)
                    stale = old is not None and old == s and time.monotonic() - started < STALE_END_GRACE_S + t.spec.poll_seconds
                    if not stale:
                        raise StepFailed(step, f"version {v} of {self.model} failed to load on {t.name}: {s.error_message or s.error_code}")
            return ok

        self.wait(step, f"version(s) {', '.join(map(str, versions))} AVAILABLE", done)

    def wait_unloaded(self, step: str, versions: Sequence[int]) -> None:
        """Wait until ``versions`` are gone (END or absent) everywhere."""

        def done(t: Target, states: dict[int, VersionState]) -> bool:
            return all(states.get(v) is None or states[v].state == "END" for v in versions)

        self.wait(step, f"version(s) {', '.join(map(str, versions))} to unload", done)

    def snapshot(self) -> dict[str, dict[int, VersionState]]:
        """Each reachable server's current states of the model (for stale END detection)."""
        out: dict[str, dict[int, VersionState]] = {}
        for t in self.targets:
            try:
                out[t.name] = self.status(t)
            except LifecycleError:
                out[t.name] = {}
        return out

    def verify(self, step: str, check: LiveCheck) -> None:
        """Round-trip the test request on every server, addressed to the check's version."""

        def run(t: Target) -> None:
            answered = check.run(t.client, self.model, version=check.version, timeout=max(1.0, min(RPC_TIMEOUT_S * 3, self.remaining())))
            if answered != check.version:
                raise StepFailed(step, f"server {t.name}: a request for version {check.version} was answered by {answered}")

        self._raise_first(step, _parallel(self.targets, run))

    def confirm_labels(self, step: str, labels: dict[str, int], checks: dict[int, LiveCheck]) -> None:
        """Wait until a label-addressed request answers from the labelled version on every server."""
        for label, version in sorted(labels.items()):
            check = checks.get(version)
            if check is None or not check.requests:
                continue

            def run(t: Target, label: str = label, version: int = version, check: LiveCheck = check) -> None:
                while True:
                    try:
                        answered = check.run(t.client, self.model, label=label, timeout=max(1.0, min(RPC_TIMEOUT_S, self.remaining())))
                        if answered == version:
                            return
                        why = f"label {label!r} answers from version {answered}, expected {version}"
                    except StepFailed:
                        raise
                    except LifecycleError as e:
                        if t.spec.reload == "request":
                            raise
                        why = e.message  # poll mode: the server may not have read the file yet
                    if self.remaining() <= 0:
                        raise StepFailed(step, f"server {t.name}: {why}")
                    time.sleep(POLL_INTERVAL_S)

            self._raise_first(step, _parallel(self.targets, run))


# --- the rollout -----------------------------------------------------------------------------


def _state(stable: int | None, canary: int | None) -> dict[str, int | None]:
    return {"stable": stable, "canary": canary}


def _serving(state: dict[str, int | None]) -> ModelServing:
    return ModelServing.of(state.get("stable"), state.get("canary"))


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
    before = _state(rec.stable, rec.canary)
    b, a = _serving(before), _serving(after)
    load = sorted(set(a.versions) - set(b.versions))
    drop = sorted(set(b.versions) - set(a.versions))
    steps = []
    if load:
        steps.append(f"sandbox: load {model} {', '.join(map(str, load))} alone on 127.0.0.1:0 and check the golden digest")
        steps.append(f"load: serve {list(b.union(a, b.labels).versions)} with labels {dict(b.labels)} and reload")
        steps.append(f"available: wait for {', '.join(map(str, load))} AVAILABLE on every server")
        steps.append("verify: round-trip the test request on every server, addressed to the new version")
    if dict(a.labels) != dict(b.labels):
        steps.append(f"label: move labels to {dict(a.labels)} and confirm with label-addressed requests")
    if drop:
        steps.append(f"drop: serve {list(a.versions)} only and reload")
        steps.append(f"unloaded: wait for {', '.join(map(str, drop))} to unload on every server")
    steps.append(f"commit: record stable={after['stable']} canary={after['canary']} in the registry and the history")
    current = tfs_config.read_text(paths)
    serving_after = tfs_config.served_from_registry(reg)
    serving_after.pop(model, None)
    if a.versions:
        serving_after[model] = a
    new_text = tfs_config.render(tfs_config.build(paths, serving_after))
    return Plan(
        action=action, model=model, version=version, before=before, after=after, load=load, drop=drop,
        steps=steps, servers=servers, config_diff=tfs_config.diff(current, new_text), forced=forced, notes=list(notes),
    )


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
        serving = tfs_config.served_from_registry(registry.load(self.paths))
        serving.pop(self.model, None)
        if model_state.versions:
            serving[self.model] = model_state
        return serving

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Journal ``name`` begin/done (or failed) around a block, and time it."""
        journal.step(self.paths, self.journal, name, "begin")
        t0 = time.monotonic()
        try:
            yield
        except BaseException as e:
            journal.step(self.paths, self.journal, name, "failed", getattr(e, "message", str(e)))
            raise
        self.timings[name] = time.monotonic() - t0
        journal.step(self.paths, self.journal, name, "done")

    def targets(self) -> list[Target]:
        return [Target(s, ServingClient(s.grpc, s.rest, timeout=RPC_TIMEOUT_S)) for s in self.fleet.servers]

    def run(self) -> None:
        """Execute the plan; on failure revert, record and raise PromotionFailed."""
        plan = self.plan
        b, a = _serving(plan.before), _serving(plan.after)
        rec = registry.load(self.paths).model(self.model)
        # Test requests of the versions that load (sandbox, verify) or gain a label (confirm).
        needed = set(plan.load) | {v for k, v in a.labels.items() if b.labels.get(k) != v}
        try:
            checks = {v: LiveCheck.of(self.paths, rec, v) for v in sorted(needed)}
        except LifecycleError as e:
            raise FailedPrecondition(f"cannot check {self.model} live: {e.message}") from e
        journal.write(self.paths, self.journal)
        journal.step(self.paths, self.journal, "intent", "done")
        if plan.load:
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
            moved = self.journal.reached("label", "begin")
            problems = revert(self.paths, self.model, targets, plan.before, checks_before(self.paths, rec, plan.before, targets),
                              after=plan.after if moved else None)
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

    def production(self, driver: Driver, b: ModelServing, a: ModelServing, checks: dict[int, LiveCheck]) -> None:
        """Steps 2-8 on the production servers."""
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
        if dict(a.labels) != dict(b.labels):
            with self.step("label"):
                driver.push("label", self.serving(b.union(a, a.labels)))
                moved = {k: v for k, v in a.labels.items() if b.labels.get(k) != v}
                driver.confirm_labels("label", moved, checks)
        complete_forward(self, driver, a, "ok", "; ".join(plan.notes))

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
        reg = registry.load(rollout.paths)
        rec = reg.model(rollout.model)
        rec.stable = plan.after["stable"]
        rec.canary = plan.after["canary"]
        rec.history.append(_event(rollout.journal, result, detail))
        registry.save(rollout.paths, reg)
    journal.clear(rollout.paths)


def _event(j: journal.Journal, result: str, detail: str) -> HistoryEvent:
    return HistoryEvent(
        action=j.action, from_version=j.before.get("stable"),
        to_version=j.version if j.version is not None else j.after.get("stable"),
        result=result, reason=j.reason, forced=j.forced, detail=detail, user=j.user, journal=j.id,
    )


def record_event(paths: Paths, j: journal.Journal, result: str, detail: str) -> None:
    """Append one history event for the journal's rollout (caller holds the lock)."""
    reg = registry.load(paths)
    reg.model(j.model).history.append(_event(j, result, detail))
    registry.save(paths, reg)


def checks_before(paths: Paths, rec: ModelRecord, before: dict[str, int | None], targets: list[Target]) -> dict[int, LiveCheck]:
    """Live checks of the versions of the previous state (to confirm a revert on ``targets``)."""
    out: dict[int, LiveCheck] = {}
    if not targets:
        return out  # nothing to confirm on, and no reason to import TensorFlow
    for v in _serving(before).versions:
        try:
            out[v] = LiveCheck.of(paths, rec, v)
        except LifecycleError:
            continue
    return out


def revert(
    paths: Paths, model: str, targets: list[Target], before: dict[str, int | None], checks: dict[int, LiveCheck],
    after: dict[str, int | None] | None = None, timeout: float = DEFAULT_TIMEOUT_S,
) -> list[str]:
    """Put the previous config back on every server and confirm the previous stable; return problems.

    With ``after`` (the labels may already have moved and old versions may be unloading), it goes
    back the way a promote goes forward, since labels may point only at AVAILABLE versions:
    first both states' versions with the ``after`` labels, wait for the old versions, then the
    previous config. Unreachable servers are reported, not retried: they read the file when
    they start again.
    """
    b = _serving(before)

    def config_with(state: ModelServing) -> Any:
        serving = tfs_config.served_from_registry(registry.load(paths))
        serving.pop(model, None)
        if state.versions:
            serving[model] = state
        return tfs_config.build(paths, serving)

    problems: list[str] = []
    alive = list(targets)
    driver = Driver(paths, model, alive, time.monotonic() + timeout)

    def push(config: Any) -> None:
        tfs_config.write(paths, config)
        results = _parallel(
            list(driver.targets),
            lambda t: t.client.reload(config, timeout=RPC_TIMEOUT_S) if t.spec.reload == "request" else None,
        )
        for t, e in results:
            if e is not None:
                problems.append(e.message if isinstance(e, LifecycleError) else f"server {t.name}: {e}")
                driver.targets.remove(t)

    try:
        if after is not None and b.versions:
            a = _serving(after)
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


# --- the sandbox -----------------------------------------------------------------------------


def sandbox_check(paths: Paths, model: str, check: LiveCheck, timeout: float) -> None:
    """Load one version alone in a private server on 127.0.0.1:0 and check its golden digest."""
    from lifecycle.server import ServerOptions, create_server

    config = tfs_config.build(paths, {model: ModelServing((check.version,), {})})
    options = ServerOptions(model_config=config, grpc_port=0, rest_api_port=None, max_num_load_retries=0)
    try:
        server = create_server(options)  # returns once the version is AVAILABLE (or raises)
    except LifecycleError as e:
        raise StepFailed("sandbox", f"version {check.version} of {model} does not load: {e.message}") from e
    try:
        client = ServingClient(f"127.0.0.1:{server.grpc_port}", None, timeout=RPC_TIMEOUT_S)
        target = Target(fleet.ServerSpec(client.grpc_address), client)
        driver = Driver(paths, model, [target], time.monotonic() + timeout)
        try:
            driver.wait_available("sandbox", [check.version], {})
            if check.requests and not check.golden:
                raise StepFailed("sandbox", f"version {check.version} of {model} has no golden digest in its report")
            driver.verify("sandbox", check)
        finally:
            client.close()
    finally:
        server.stop(grace=None)


# --- recovery --------------------------------------------------------------------------------


def recover_pending(paths: Paths) -> str | None:
    """Complete or revert a rollout left by an mlc that died. Caller holds the lock."""
    j = journal.load(paths)
    if j is None:
        return None
    reg = registry.load(paths)
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
                complete_forward(rollout, driver, _serving(j.after), "recovered", f"interrupted ({who}); completed by recovery")
                return f"recovered an interrupted {j.describe()}: completed it"
            except LifecycleError as e:
                forward_error = e.message
        problems = revert(paths, j.model, targets, j.before, checks_before(paths, rec, j.before, targets),
                          after=j.after if j.reached("label", "begin") else None)
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


# --- entry points ----------------------------------------------------------------------------


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
) -> RolloutResult:
    """Promote ``version`` of ``model`` to stable (or canary) on every server."""
    with _maybe_locked(paths, not dry_run):
        recovered = [] if dry_run else [m for m in [recover_pending(paths)] if m]
        reg = registry.load(paths)
        rec = reg.model(model)
        vrec = check_servable(paths, rec, version)
        if expect_current is not None and rec.stable != expect_current:
            raise FailedPrecondition(
                f"stable of {model} is {rec.stable if rec.stable is not None else 'unset'}, not {expect_current} "
                f"(--expect-current); someone else promoted? see `mlc history {model}`"
            )
        notes: list[str] = []
        if canary:
            if rec.stable is None:
                raise FailedPrecondition(f"{model} has no stable version yet; promote one without --canary first")
            if rec.stable == version:
                raise FailedPrecondition(f"version {version} of {model} is already stable; a canary must be another version")
            after = _state(rec.stable, version)
            action = "canary"
        else:
            after = _state(version, None if rec.canary == version else rec.canary)
            action = "promote"
        gate = quality_gate(paths, rec, vrec, force)
        if gate:
            if not reason.strip():
                # A forced promotion is an audit-trail event: the history must say why.
                raise UsageError(f"--force overrides the {gate.removeprefix('forced past the ')}; "
                                 "say why with --reason TEXT (recorded in the history)")
            notes.append(gate)
        return _execute(paths, reg, action, model, version, after, timeout, reason, force and bool(gate), notes, dry_run, recovered)


def rollback(
    paths: Paths,
    model: str,
    to: int | None = None,
    reason: str = "",
    timeout: float = DEFAULT_TIMEOUT_S,
    dry_run: bool = False,
) -> RolloutResult:
    """Roll back to the previous known-good stable (or to ``to``); a canary is withdrawn first."""
    with _maybe_locked(paths, not dry_run):
        recovered = [] if dry_run else [m for m in [recover_pending(paths)] if m]
        reg = registry.load(paths)
        rec = reg.model(model)
        if to is None and rec.canary is not None:
            after = _state(rec.stable, None)
            version = rec.stable
        else:
            version = rollback_target(paths, rec) if to is None else to
            check_servable(paths, rec, version)
            if version == rec.stable:
                raise FailedPrecondition(f"version {version} of {model} is already stable; nothing to roll back")
            after = _state(version, None)
        return _execute(paths, reg, "rollback", model, version, after, timeout, reason, False, [], dry_run, recovered)


def _execute(
    paths: Paths, reg: Registry, action: str, model: str, version: int | None, after: dict[str, int | None],
    timeout: float, reason: str, forced: bool, notes: list[str], dry_run: bool, recovered: list[str],
) -> RolloutResult:
    fleet_ = fleet.load(paths)
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


@contextmanager
def _maybe_locked(paths: Paths, lock: bool) -> Iterator[None]:
    if lock:
        with registry.lease(paths):
            yield
    else:
        yield


def recover(paths: Paths) -> str | None:
    """Take the lock and recover a pending rollout journal, if any (for mutating commands)."""
    if journal.load(paths) is None:
        return None
    with registry.lease(paths):
        return recover_pending(paths)


def apply_registry_config(paths: Paths, servers: list[fleet.ServerSpec], timeout: float = DEFAULT_TIMEOUT_S) -> None:
    """Write the registry's config (with labels) and make ``servers`` take it. Caller holds the lock."""
    config = tfs_config.build(paths, tfs_config.served_from_registry(registry.load(paths)))
    tfs_config.write(paths, config)
    targets = [Target(s, ServingClient(s.grpc, s.rest, timeout=RPC_TIMEOUT_S)) for s in servers]
    serving = tfs_config.serving_of(config)
    try:
        # Servers in poll mode read the file on their own; the others get it by a reload.
        Driver(paths, "", targets, time.monotonic() + timeout).push("label", serving)
    except StepFailed as e:
        raise ServerUnavailable(f"the servers started but did not take the labels: {e.message}") from e
    finally:
        for t in targets:
            t.client.close()


def ensure_servers_reachable(servers: list[fleet.ServerSpec]) -> None:
    """Refuse early when a listed server does not accept connections."""
    from lifecycle.serving.client import tcp_ready

    down = [s.name for s in servers if not tcp_ready(s.grpc)]
    if down:
        raise ServerUnavailable(
            f"server(s) {', '.join(down)} do not accept connections; nothing was changed. "
            "Start them with `mlc serve` or fix configs/servers.yaml"
        )
