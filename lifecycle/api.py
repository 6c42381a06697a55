"""The mlc library: one function per command. Functions return data and never print.

TensorFlow is imported lazily inside the functions that need it, so that ``status``,
``history`` and ``--help`` stay fast.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lifecycle.errors import UsageError
from lifecycle.store import registry
from lifecycle.store.config import (
    Paths,
    check_model_name,
    default_model,
    load_definition,
)

if TYPE_CHECKING:
    from lifecycle.build.watch import WatchEvent, WatchSummary


# --- status --------------------------------------------------------------------------------


@dataclass
class VersionStatus:
    """One version as ``mlc status`` shows it."""

    version: int
    checkpoint: str
    step: int | None
    created: str
    validated: bool
    golden_digest: str | None
    miou: float | None
    labels: list[str] = field(default_factory=list)
    in_config: bool = False
    servers: dict[str, str] = field(default_factory=dict)


@dataclass
class ModelStatus:
    """One model as ``mlc status`` shows it."""

    name: str
    stable: int | None
    canary: int | None
    versions: list[VersionStatus]
    config: dict[str, Any] | None = None  # {"versions": [...], "labels": {...}} from models.config
    drift: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    last_event: dict[str, Any] | None = None


@dataclass
class StatusReport:
    """The result of ``mlc status``."""

    models: list[ModelStatus]
    servers: dict[str, str] = field(default_factory=dict)  # address -> "ok" | "unreachable: ..."
    servers_source: str = "none"
    pending_rollout: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return asdict(self)


def status(model: str | None = None, paths: Paths | None = None) -> StatusReport:
    """The registry, configs/models.config and every server's live state, with drift flagged.

    Live state is read over REST, in parallel, with short deadlines; TensorFlow is not imported.
    """
    from lifecycle.errors import LifecycleError, ModelNotFound
    from lifecycle.serving import fleet, tfs_config
    from lifecycle.serving.client import rest_model_status
    from lifecycle.store import journal

    paths = paths or Paths.from_env()
    reg = registry.load(paths)
    if model:
        check_model_name(model)
        reg.model(model)  # ModelNotFound for an unknown model
    names = [model] if model else sorted(reg.models)
    warnings: list[str] = []
    try:
        config = tfs_config.read(paths)
    except LifecycleError as e:
        config, warnings = None, [*warnings, e.message]
    try:
        servers = fleet.load(paths)
    except LifecycleError as e:
        servers, warnings = fleet.Fleet([], "none"), [*warnings, e.message]
    try:
        pending = journal.load(paths)
    except LifecycleError as e:
        pending, warnings = None, [*warnings, e.message]

    # Live states, one REST call per (server, model), all at once.
    live: dict[tuple[str, str], Any] = {}
    reachable: dict[str, str] = {}

    def fetch(job: tuple[Any, str]) -> None:
        spec, name = job
        if not spec.rest:
            live[(spec.name, name)] = LifecycleError("no REST address configured; status reads servers over REST")
            return
        try:
            live[(spec.name, name)] = rest_model_status(spec.rest, name, timeout=1.0)
        except LifecycleError as e:
            live[(spec.name, name)] = e

    jobs = [(spec, name) for spec in servers.servers for name in names]
    if jobs:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(16, len(jobs))) as pool:
            list(pool.map(fetch, jobs))
    from lifecycle.serving.client import tcp_ready

    for spec in servers.servers:
        if not names:  # no model to ask about: is anything listening?
            reachable[spec.name] = "ok" if tcp_ready(spec.rest or spec.grpc) else "unreachable: connection refused"
            continue
        errors = [
            e for n in names
            if isinstance(e := live.get((spec.name, n)), LifecycleError) and not isinstance(e, ModelNotFound)
        ]
        if not spec.rest:
            reachable[spec.name] = "unknown: no REST address in configs/servers.yaml (status reads servers over REST)"
        else:
            reachable[spec.name] = f"unreachable: {errors[0].message}" if errors else "ok"

    models = []
    for name in names:
        rec = reg.models[name]
        wanted = tfs_config.ModelServing.of(rec.stable, rec.canary)
        in_config = (config or {}).get(name)
        drift: list[str] = []
        model_warnings: list[str] = []
        if config is not None and (in_config or tfs_config.ModelServing(())) != wanted:
            shown = f"versions {list(in_config.versions)} labels {dict(in_config.labels)}" if in_config else "nothing"
            drift.append(
                f"configs/models.config serves {shown}, the registry says {dict(wanted.labels) or 'nothing'}"
            )
        versions = []
        for v in sorted(rec.versions, key=lambda v: v.version):
            labels = [label for label, n in (("stable", rec.stable), ("canary", rec.canary)) if n == v.version]
            per_server: dict[str, str] = {}
            for spec in servers.servers:
                got = live.get((spec.name, name))
                if isinstance(got, dict):
                    per_server[spec.name] = got[v.version].describe() if v.version in got else "-"
                elif isinstance(got, ModelNotFound):
                    per_server[spec.name] = "-"
                else:
                    per_server[spec.name] = "unreachable" if spec.rest else "unknown"
            versions.append(
                VersionStatus(
                    version=v.version,
                    checkpoint=v.checkpoint,
                    step=v.step,
                    created=v.created,
                    validated=v.validated,
                    golden_digest=(v.report.get("golden") or {}).get("digest"),
                    miou=(v.report.get("metrics") or {}).get("miou"),
                    labels=labels,
                    in_config=bool(in_config and v.version in in_config.versions),
                    servers=per_server,
                )
            )
        for spec in servers.servers:
            got = live.get((spec.name, name))
            if not isinstance(got, dict):
                if isinstance(got, ModelNotFound):
                    if wanted.versions:
                        drift.append(f"server {spec.name} does not serve {name}")
                else:
                    if spec.rest:
                        drift.append(f"server {spec.name} is unreachable")
                continue
            for v in wanted.versions:
                state = got.get(v)
                if state is None or state.state != "AVAILABLE":
                    drift.append(f"server {spec.name}: version {v} is {state.describe() if state else 'not loaded'}")
            available = sorted(v for v, s in got.items() if s.state == "AVAILABLE")
            extra = [v for v in available if v not in wanted.versions]
            if extra:
                drift.append(f"server {spec.name} serves version(s) {extra} the registry does not ask for")
            if available and rec.stable is not None and available[-1] != rec.stable:
                model_warnings.append(
                    f"clients that name no version reach version {available[-1]} on {spec.name}, not stable "
                    f"{rec.stable}; address requests with version_label \"stable\""
                )
        if rec.stable is None and rec.versions:
            model_warnings.append(f"no stable version yet: promote one with `mlc promote {name} N`")
        last = asdict(rec.history[-1]) if rec.history else None
        if last and "by recovery" in str(last.get("detail", "")):
            model_warnings.append(
                f"the last rollout was interrupted and {last['result']} by recovery at {last['time']} "
                f"(see `mlc history {name}`)"
            )
        models.append(
            ModelStatus(
                name=name, stable=rec.stable, canary=rec.canary, versions=versions,
                config=None if in_config is None else {"versions": list(in_config.versions), "labels": dict(in_config.labels)},
                drift=drift, warnings=model_warnings, last_event=last,
            )
        )
    pending_text = None
    if pending is not None:
        pending_text = pending.describe()
        warnings.append(
            f"an interrupted rollout is pending ({pending_text}); the next mlc promote, rollback, serve or register recovers it"
        )
    return StatusReport(
        models=models, servers=reachable, servers_source=servers.source, pending_rollout=pending_text, warnings=warnings
    )


# --- history ---------------------------------------------------------------------------------


@dataclass
class HistoryReport:
    """The result of ``mlc history``."""

    model: str
    stable: int | None
    canary: int | None
    events: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return asdict(self)


def history(model: str, paths: Paths | None = None) -> HistoryReport:
    """Every promote and rollback of ``model``, oldest first."""
    paths = paths or Paths.from_env()
    rec = registry.load(paths).model(check_model_name(model))
    return HistoryReport(rec.name, rec.stable, rec.canary, [asdict(e) for e in rec.history])


# --- promote and rollback --------------------------------------------------------------------


def promote(
    model: str,
    version: int,
    canary: bool = False,
    timeout: float = 120.0,
    reason: str = "",
    expect_current: int | None = None,
    dry_run: bool = False,
    force: bool = False,
    paths: Paths | None = None,
) -> Any:
    """Promote a version to stable (or canary) on every server; returns a RolloutResult."""
    from lifecycle import rollout

    paths = paths or Paths.from_env()
    return rollout.promote(
        paths, check_model_name(model), version, canary=canary, timeout=timeout, reason=reason,
        expect_current=expect_current, dry_run=dry_run, force=force,
    )


def rollback(
    model: str, to: int | None = None, reason: str = "", timeout: float = 120.0, dry_run: bool = False,
    paths: Paths | None = None,
) -> Any:
    """Roll back to the previous known-good stable (or ``to``); returns a RolloutResult."""
    from lifecycle import rollout

    paths = paths or Paths.from_env()
    return rollout.rollback(paths, check_model_name(model), to=to, reason=reason, timeout=timeout, dry_run=dry_run)


# --- serve and stop --------------------------------------------------------------------------


@dataclass
class ServeResult:
    """The servers ``mlc serve`` started."""

    engine: str
    servers: list[dict[str, Any]]
    config_file: str
    detached: bool
    recovered: str | None = None
    exit_code: int | None = None


def serve(
    engine: str = "auto",
    grpc_port: int | None = None,
    rest_port: int | None = None,
    detach: bool = False,
    reload: str = "request",
    timeout: float = 120.0,
    on_ready: Any = None,
    paths: Paths | None = None,
) -> ServeResult:
    """Start the servers to drive on configs/models.config (rewritten from the registry first).

    Without ``detach`` it calls ``on_ready(result)`` once every server is up, then blocks until
    the servers exit or the process is interrupted, and stops them.
    """
    import signal

    from lifecycle import rollout
    from lifecycle.errors import UsageError
    from lifecycle.serving import fleet, tfs_config

    paths = paths or Paths.from_env()
    engine = fleet.resolve_engine(engine)
    if reload not in fleet.RELOAD_MODES:
        raise UsageError(f"--reload must be one of {', '.join(fleet.RELOAD_MODES)}")
    file = fleet.servers_file(paths)
    if file.exists():
        if grpc_port is not None or rest_port is not None:
            raise UsageError(f"ports come from {file} when it exists; edit it instead of passing --grpc-port/--rest-port")
        specs = fleet.load(paths).servers
    else:
        g = fleet.DEFAULT_GRPC_PORT if grpc_port is None else grpc_port
        r = fleet.DEFAULT_REST_PORT if rest_port is None else rest_port
        specs = [fleet.ServerSpec(f"127.0.0.1:{g}", f"127.0.0.1:{r}" if r else None, reload)]
    running = {rec.grpc: rec for rec in fleet.live_records(paths)}
    if file.exists():  # (re)start the listed servers of this machine that do not run
        specs = [spec for spec in specs if spec.grpc not in running and fleet.is_local(spec)]
        if not specs:
            raise UsageError(f"every server of this machine listed in {file} already runs; stop them with `mlc stop`")
    for spec in specs:
        if spec.grpc in running:
            raise UsageError(
                f"a server started by mlc already runs at {spec.grpc} (pid {running[spec.grpc].pid}); stop it with `mlc stop`"
            )
    started: list[tuple[Any, Any]] = []
    # Under the lock from the first config write to the last, so no rollout interleaves.
    with registry.lease(paths):
        recovered = rollout.recover_pending(paths)
        serving = tfs_config.served_from_registry(registry.load(paths))
        expect = {name: s.labels.get("stable", max(s.versions)) for name, s in serving.items()}
        poll = all(spec.reload == "poll" for spec in specs)
        if poll:
            # Polling servers read the labelled file on their own; they start with
            # --allow_version_labels_for_unavailable_models (TF Serving's rule at start-up).
            tfs_config.write(paths, tfs_config.build(paths, serving))
        else:
            # Labels may point only at AVAILABLE versions, and nothing is available before the
            # server has started: start on the versions alone, then add the labels by a reload.
            unlabelled = {name: tfs_config.ModelServing(s.versions, {}) for name, s in serving.items()}
            tfs_config.write(paths, tfs_config.build(paths, unlabelled))
        try:
            for spec in specs:
                started.append(fleet.start_process(paths, engine, spec, detach))
            for proc, record in started:
                fleet.wait_ready(proc, record, expect, timeout)
            if not poll:
                rollout.apply_registry_config(paths, [record.spec() for _, record in started], timeout)
        except BaseException:
            for proc, record in started:
                fleet.stop_record(paths, record, grace=5.0)
            tfs_config.write(paths, tfs_config.build(paths, serving))
            raise
    result = ServeResult(
        engine=engine, servers=[asdict(r) for _, r in started], config_file=str(paths.serving_config),
        detached=detach, recovered=recovered,
    )
    if detach:
        return result
    if on_ready is not None:
        on_ready(result)

    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)
    # Ctrl-C must stop a foreground server even when SIGINT was inherited as ignored (a
    # non-interactive shell starts background jobs that way, and Python keeps SIG_IGN).
    previous_int = signal.signal(signal.SIGINT, terminate)
    try:
        while all(proc.poll() is None for proc, _ in started):
            try:
                started[0][0].wait(timeout=0.5)
            except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired: keep waiting
                pass
        result.exit_code = next(proc.returncode for proc, _ in started if proc.poll() is not None)
    except KeyboardInterrupt:
        result.exit_code = 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
        for proc, record in started:
            fleet.stop_record(paths, record, grace=10.0)
            proc.wait()
    return result


@dataclass
class StopResult:
    """The servers ``mlc stop`` stopped."""

    stopped: list[dict[str, Any]]


def stop(grpc_port: int | None = None, paths: Paths | None = None) -> StopResult:
    """Stop the servers ``mlc serve`` started (all, or the one on ``grpc_port``)."""
    from lifecycle.serving import fleet

    paths = paths or Paths.from_env()
    stopped = []
    for record in fleet.read_records(paths):
        if grpc_port is not None and record.grpc.rpartition(":")[2] != str(grpc_port):
            continue
        if fleet.stop_record(paths, record):
            stopped.append(asdict(record))
    return StopResult(stopped)


# --- train ---------------------------------------------------------------------------------


@dataclass
class TrainedCheckpoint:
    """One checkpoint ``mlc train`` wrote."""

    step: int
    prefix: str
    loss: float


@dataclass
class TrainResult:
    """The result of ``mlc train``."""

    run_dir: str
    model: str
    network: dict[str, Any]
    start_step: int
    steps: int
    checkpoints: list[TrainedCheckpoint]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return asdict(self)


def train(
    run_dir: str | Path,
    steps: int = 300,
    save_every: int = 100,
    backbone: str | None = None,
    model: str | None = None,
    paths: Paths | None = None,
    on_checkpoint: Callable[[TrainedCheckpoint], None] | None = None,
) -> TrainResult:
    """Train the model's network on the synthetic set, writing a checkpoint every ``save_every`` steps.

    A run folder that already holds checkpoints is resumed from its latest one.
    """
    paths = paths or Paths.from_env()
    if steps < 1 or save_every < 1:
        raise UsageError("--steps and --save-every must be at least 1")
    name = check_model_name(model) if model else default_model(paths)
    definition = load_definition(paths, name)
    from lifecycle.build import deeplab  # TensorFlow: only here

    spec = deeplab.NetworkSpec.from_definition(definition.network, f"{definition.path}: network", backbone)
    settings = deeplab.TrainSettings.from_definition(
        dict(definition.raw.get("training") or {}), f"{definition.path}: training"
    )
    run = Path(run_dir)
    if run.exists() and not run.is_dir():
        raise UsageError(f"{run_dir} exists and is not a folder")

    def saved(c: Any) -> None:
        if on_checkpoint is not None:
            on_checkpoint(TrainedCheckpoint(c.step, c.prefix, c.loss))

    report = deeplab.train(run, spec, settings, steps, save_every, saved)
    return TrainResult(
        run_dir=str(run),
        model=name,
        network=report.network,
        start_step=report.start_step,
        steps=report.steps,
        checkpoints=[TrainedCheckpoint(c.step, c.prefix, c.loss) for c in report.checkpoints],
    )


# --- register ------------------------------------------------------------------------------


@dataclass
class RegisterResult:
    """The result of ``mlc register``."""

    model: str
    version: int
    reused: bool
    checkpoint: str
    step: int | None
    checkpoint_digest: str
    validated: bool
    path: str
    golden_digest: str | None
    miou: float | None
    report: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return asdict(self)


def _register_result(paths: Paths, model: str, v: registry.VersionRecord, reused: bool) -> RegisterResult:
    return RegisterResult(
        model=model,
        version=v.version,
        reused=reused,
        checkpoint=v.checkpoint,
        step=v.step,
        checkpoint_digest=v.checkpoint_digest,
        validated=v.validated,
        path=str(paths.version_dir(model, v.version)),
        golden_digest=(v.report.get("golden") or {}).get("digest"),
        miou=(v.report.get("metrics") or {}).get("miou"),
        report=v.report,
    )


def register(path: str | Path, model: str | None = None, paths: Paths | None = None) -> RegisterResult:
    """Export a checkpoint, validate the export, and publish it as the model's next version.

    ``path`` is a run folder (its latest checkpoint) or a checkpoint prefix. The same
    checkpoint content registered again returns its existing version. Refused input (a missing
    or corrupt checkpoint, a bad name, a malformed file) changes nothing on disk; a checkpoint
    that fails validation publishes nothing and is recorded as a failed attempt.
    """
    from lifecycle.build import checkpoints, validate
    from lifecycle.errors import ConfigError, SignatureMismatch
    from lifecycle.store.config import validation_settings

    paths = paths or Paths.from_env()
    name = check_model_name(model) if model else default_model(paths)
    definition = load_definition(paths, name)
    settings = validation_settings(definition)
    contract = validate.contract_to_dict(definition.signature)
    try:
        validate.check_contract_kind(contract)
    except SignatureMismatch as e:
        raise ConfigError(f"model definition {definition.path}: {e.message}") from e
    if contract["method"] != validate.PREDICT or set(contract["inputs"]) != {"images", "height", "width"}:
        raise ConfigError(
            f"model definition {definition.path}: register exports the images/height/width predict "
            f"signature; signature {contract['key']!r} is not one"
        )
    current = registry.load(paths)  # a malformed registry is refused before any work
    ref = checkpoints.resolve(path)
    validate.load_image(settings.test_image)
    known = current.models.get(name)
    existing = known.version_for_digest(ref.digest) if known else None
    if existing is not None:
        return _register_result(paths, name, existing, True)

    from lifecycle import rollout

    rollout.recover(paths)  # a promote or rollback left by an mlc that died is finished first

    from lifecycle.build import export  # TensorFlow from here on

    outcome = export.register_checkpoint(paths, definition, settings, ref)
    return _register_result(paths, name, outcome.version, outcome.reused)


# --- watch ---------------------------------------------------------------------------------


def watch(
    run_dirs: Sequence[str | Path],
    model: str | None = None,
    promote_if_better: bool = False,
    settle: float = 2.0,
    max_events: int | None = None,
    exit_after: float | None = None,
    once: bool = False,
    stop: threading.Event | None = None,
    on_event: Callable[[WatchEvent], None] | None = None,
    paths: Paths | None = None,
) -> WatchSummary:
    """Register each new checkpoint of the run folders once it has settled; report what happened.

    Registration goes through :func:`register` (idempotent by content digest), so a restarted
    watch registers nothing twice. A checkpoint whose exact content already failed validation
    is skipped until the model definition changes (``mlc register`` retries it at once). With
    ``promote_if_better`` a new version is promoted through :func:`promote` unless the quality
    gate refuses it. Stops when ``stop``
    is set, after ``max_events`` settled checkpoints, after ``exit_after`` seconds, or with
    ``once`` as soon as nothing is left to wait for.
    """
    from lifecycle.build import checkpoints
    from lifecycle.build import watch as watching
    from lifecycle.errors import PreviouslyFailed

    paths = paths or Paths.from_env()
    if not run_dirs:
        raise UsageError("name at least one run folder to watch")
    for d in run_dirs:
        p = Path(d)
        if (p.exists() and not p.is_dir()) or p.with_name(p.name + ".index").exists():
            raise UsageError(
                f"{d} is not a folder: mlc watch takes run folders (where a trainer writes checkpoints), "
                f"e.g. mlc watch {p.parent}"
            )
    if settle < 0:
        raise UsageError("--settle must be 0 or more seconds")
    if max_events is not None and max_events < 1:
        raise UsageError("--max-events must be at least 1")
    if exit_after is not None and exit_after <= 0:
        raise UsageError("--exit-after must be a positive number of seconds")
    name = check_model_name(model) if model else default_model(paths)
    load_definition(paths, name)  # a missing or malformed definition is refused before watching
    registry.load(paths)  # so is a malformed registry

    def register_one(prefix: Path) -> watching.Registered:
        ref = checkpoints.resolve(prefix)
        rec = registry.load(paths).models.get(name)
        if rec is not None and rec.version_for_digest(ref.digest) is None:
            failed = _failed_validation(rec, ref.digest, paths.definition_file(name))
            if failed is not None:
                raise PreviouslyFailed(
                    f"{prefix.name} failed validation check '{failed.check}' before ({failed.time}): {failed.error}; "
                    f"not retried until configs/{name}.yaml changes (or retry now with: mlc register {prefix})"
                )
        r = register(prefix, name, paths)
        return watching.Registered(r.version, r.reused, r.step, r.miou)

    def promote_one(version: int) -> str:
        result = promote(name, version, reason="mlc watch --promote-if-better", paths=paths)
        if result.message:
            return str(result.message)
        servers = len(result.plan.servers)
        where = f"on {servers} server{'s' if servers != 1 else ''}" if servers else "in the config (no servers running)"
        return f"{name}: version {version} is now stable {where}, after {result.seconds:.1f} s of safe rollout"

    watcher = watching.Watcher(
        run_dirs, register_one, promote_one if promote_if_better else None, settle=settle, on_event=on_event,
    )
    return watcher.run(stop, max_events=max_events, exit_after=exit_after, once=once)


def _failed_validation(rec: registry.ModelRecord, digest: str, definition: Path) -> registry.Attempt | None:
    """The latest attempt at ``digest`` that failed a validation check since the definition last changed.

    Export failures (a full disk, a killed process) are not remembered: they may pass next time.
    """
    from datetime import datetime

    try:
        changed = definition.stat().st_mtime
    except OSError:
        changed = 0.0
    for a in reversed(rec.attempts):
        if a.checkpoint_digest != digest or a.check == "export":
            continue
        try:
            when = datetime.fromisoformat(a.time).timestamp()
        except ValueError:
            continue
        return a if when >= int(changed) else None
    return None


# --- predict -------------------------------------------------------------------------------


@dataclass
class ImagePrediction:
    """One photo's answer as ``mlc predict`` reports it."""

    image: str
    width: int
    height: int
    version: int | None
    mask: str
    overlay: str
    classes: dict[str, float]


@dataclass
class PredictResult:
    """The result of ``mlc predict``."""

    model: str
    server: str
    transport: str  # grpc | rest
    call: str  # sync | async
    asked: str  # "version 3", "label stable" or "latest"
    images: list[ImagePrediction]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return asdict(self)


def _serving_target(paths: Paths, model: str, version: int | None, label: str | None) -> Any:
    """The request target: signature and output from configs/<model>.yaml, else the classic contract."""
    from lifecycle.predictions.predict import Target
    from lifecycle.store.config import load_definition

    if not paths.definition_file(model).exists():
        return Target(model, version, label)
    definition = load_definition(paths, model)
    output = definition.signature.outputs[0].name
    num_classes = int(definition.network.get("num_classes", 21))
    return Target(model, version, label, definition.signature.key, output, num_classes)


def _server_addresses(paths: Paths, server: str | None, rest: bool) -> tuple[str | None, str | None]:
    """(gRPC address, REST address): ``--server`` names the one the transport uses."""
    from lifecycle.errors import ServerUnavailable
    from lifecycle.serving import fleet

    if server is not None:
        return (None, server) if rest else (server, None)
    known = fleet.load(paths)
    for spec in known.servers:
        if not rest or spec.rest:
            return spec.grpc, spec.rest
    if known.servers:
        raise ServerUnavailable(
            f"no server in {known.source} has a REST address; pass --server HOST:PORT with --rest"
        )
    raise ServerUnavailable(
        "no server is known: start one with `mlc serve`, list yours in configs/servers.yaml, "
        "or pass --server HOST:PORT"
    )


def predict(
    model: str,
    images: list[str | Path],
    version: int | None = None,
    label: str | None = None,
    server: str | None = None,
    rest: bool = False,
    use_async: bool = False,
    timeout: float = 30.0,
    out: str | Path = ".",
    paths: Paths | None = None,
) -> PredictResult:
    """Send photos to the served model; write ``<name>.mask.png`` and ``<name>.overlay.png`` for each.

    Every photo is read before anything is sent, so a file that is not an image sends nothing.
    """
    from lifecycle.errors import UsageError

    paths = paths or Paths.from_env()
    check_model_name(model)
    if version is not None and label is not None:
        raise UsageError("give --version or --label, not both")
    if use_async and rest:
        raise UsageError("--async is a gRPC call (Predict.future); it does not combine with --rest")
    if timeout <= 0:
        raise UsageError("--timeout must be positive")
    if not images:
        raise UsageError("name at least one image")
    stems = [Path(p).name.rsplit(".", 1)[0] for p in images]
    clash = sorted({s for s in stems if stems.count(s) > 1})
    if clash:
        raise UsageError(f"several images would write {clash[0]}.mask.png; predict them into different --out folders")

    from lifecycle.predictions import images as pictures  # TensorFlow from here on
    from lifecycle.predictions import predict as predicting
    from lifecycle.serving.client import ServingClient

    photos = [pictures.read_photo(p) for p in images]
    target = _serving_target(paths, model, version, label)
    grpc_address, rest_address = _server_addresses(paths, server, rest)
    with ServingClient(grpc_address or "", rest_address, timeout=timeout) as client:
        if rest:
            answers = predicting.predict_rest(client, target, photos, timeout)
        else:
            answers = predicting.predict_grpc(client, target, photos, timeout, use_async)

    folder = Path(out)
    results = []
    for path, stem, photo, answer in zip(images, stems, photos, answers, strict=True):
        mask_file = pictures.write_png(folder / f"{stem}.mask.png", pictures.mask_image(answer.mask))
        overlay_file = pictures.write_png(folder / f"{stem}.overlay.png", pictures.overlay(photo, answer.mask))
        results.append(
            ImagePrediction(
                image=str(path), width=int(photo.shape[1]), height=int(photo.shape[0]), version=answer.version,
                mask=str(mask_file), overlay=str(overlay_file),
                classes=pictures.class_shares(answer.mask, target.num_classes),
            )
        )
    return PredictResult(
        model=model,
        server=(rest_address if rest else grpc_address) or "",
        transport="rest" if rest else "grpc",
        call="async" if use_async else "sync",
        asked=target.describe(),
        images=results,
    )


# --- diff ----------------------------------------------------------------------------------


@dataclass
class ImageDiff:
    """How B's mask of one image compares with A's."""

    image: str
    width: int
    height: int
    agreement: float
    miou: float
    differing_pixels: int
    picture: str


@dataclass
class EvalDiff:
    """How B compares with A on the evaluation set, and each against the ground truth."""

    images: int
    size: int
    agreement: float
    miou: float
    differing_pixels: int
    miou_a: float
    miou_b: float


@dataclass
class DiffResult:
    """The result of ``mlc diff``."""

    model: str
    a: int
    b: int
    signature_changes: list[dict[str, Any]]
    images: list[ImageDiff]
    eval: EvalDiff | None

    @property
    def identical(self) -> bool:
        """Same signatures and the same mask in every pixel compared."""
        return not self.signature_changes and all(i.differing_pixels == 0 for i in self.images) and (
            self.eval is None or self.eval.differing_pixels == 0
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return {**asdict(self), "identical": self.identical}


def diff(
    model: str,
    a: int,
    b: int,
    images: list[str | Path] | None = None,
    out: str | Path = ".",
    paths: Paths | None = None,
) -> DiffResult:
    """Compare versions A and B: signatures, and masks on the test image, ``images`` and the eval set.

    Both versions are loaded in-process from model_repo with the embedded server's loader (see
    :mod:`lifecycle.predictions.diff`). Writes ``<model>-<A>-vs-<B>.<image>.png`` (photo | mask A | mask B
    | disagreement) into ``out`` for each image.
    """
    from lifecycle.store.config import load_definition, validation_settings

    paths = paths or Paths.from_env()
    definition = load_definition(paths, model)
    record = registry.load(paths).model(model)
    record.version(a)  # VersionNotFound names the registered versions
    record.version(b)
    settings = validation_settings(definition)
    photo_paths = [settings.test_image, *(Path(p) for p in images or [])]
    stems = [p.name.rsplit(".", 1)[0] for p in photo_paths]
    clash = sorted({s for s in stems if stems.count(s) > 1})
    if clash:
        from lifecycle.errors import UsageError

        raise UsageError(f"several images are named {clash[0]}; their pictures would overwrite each other")

    import numpy as np

    from lifecycle.build import deeplab  # TensorFlow from here on
    from lifecycle.build.validate import read_signatures
    from lifecycle.predictions import diff as diffing
    from lifecycle.predictions import images as pictures

    photos = [pictures.read_photo(p) for p in photo_paths]
    dir_a, dir_b = paths.store.version_path(model, a), paths.store.version_path(model, b)
    changes = diffing.signature_changes(read_signatures(dir_a), read_signatures(dir_b))
    num_classes = int(definition.network.get("num_classes", 21))
    names = [deeplab.class_name(i, num_classes) for i in range(num_classes)]
    key, output = definition.signature.key, definition.signature.outputs[0].name
    ev = settings.eval
    eval_images, eval_labels = deeplab.SyntheticSet(ev.seed, ev.count, ev.size).arrays()

    folder = Path(out)
    image_diffs = []
    with diffing.loaded(model, a, dir_a, key, output) as va, diffing.loaded(model, b, dir_b, key, output) as vb:
        for path, stem, photo in zip(photo_paths, stems, photos, strict=True):
            batch = photo[None].astype(np.float32)
            mask_a, mask_b = va.segment(batch)[0], vb.segment(batch)[0]
            agree = diffing.agreement(mask_a, mask_b, num_classes, names)
            picture = pictures.write_png(folder / f"{model}-{a}-vs-{b}.{stem}.png",
                                         pictures.diff_strip(photo, mask_a, mask_b))
            image_diffs.append(
                ImageDiff(str(path), int(photo.shape[1]), int(photo.shape[0]), agree.agreement, agree.miou,
                          agree.differing, str(picture))
            )
        masks_a, masks_b = va.segment(eval_images), vb.segment(eval_images)
    agree = diffing.agreement(masks_a, masks_b, num_classes, names)
    eval_diff = EvalDiff(
        images=len(eval_images), size=ev.size, agreement=agree.agreement, miou=agree.miou,
        differing_pixels=agree.differing,
        miou_a=diffing.miou_against_truth(eval_labels, masks_a, num_classes, names),
        miou_b=diffing.miou_against_truth(eval_labels, masks_b, num_classes, names),
    )
    return DiffResult(model, a, b, [asdict(c) | {"description": c.describe()} for c in changes], image_diffs, eval_diff)



# --- ui ------------------------------------------------------------------------------------


def ui(
    host: str = "127.0.0.1",
    port: int = 8600,
    on_ready: Callable[[str], None] | None = None,
    paths: Paths | None = None,
) -> None:
    """Serve the read-only web page of the home (:mod:`lifecycle.ui`) until Ctrl-C or SIGTERM.

    ``on_ready(url)`` is called once the page answers. The page reads through :func:`status`,
    :func:`history` and :func:`diff`; TensorFlow is imported only for the first picture.
    """
    from lifecycle.ui.app import create_server, serve_until_stopped

    server = create_server(paths or Paths.from_env(), host, port)
    if on_ready is not None:
        on_ready(server.url)
    serve_until_stopped(server)
