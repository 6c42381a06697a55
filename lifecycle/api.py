"""The mlc library: one function per command. Functions return data and never print.

Each function checks its arguments, then calls the one package that does the work (status in
:mod:`lifecycle.operations.status`, promote and rollback in :mod:`lifecycle.rollout`, server
processes in :mod:`lifecycle.operations.processes`, predict and diff in :mod:`lifecycle.predictions`,
train in :mod:`lifecycle.train`, register and watch in :mod:`lifecycle.register`). Results are
dataclasses with ``to_dict()``.

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
from lifecycle.hooks import sender
from lifecycle.operations.processes import ServeResult, StopResult
from lifecycle.operations.status import ModelStatus, ServedConfig, StatusReport, VersionStatus
from lifecycle.store import approvals, registry
from lifecycle.store import verify as verifier
from lifecycle.store.config import Paths, check_model_name, load_definition
from lifecycle.store.registry import HistoryEvent
from lifecycle.train.runs import TrainedCheckpoint, TrainResult

if TYPE_CHECKING:
    from lifecycle.operations.homes import InitResult
    from lifecycle.operations.processes import Engine
    from lifecycle.operations.retention import GcResult, PinResult
    from lifecycle.operations.sync import SyncResult
    from lifecycle.predictions.card import CardResult
    from lifecycle.predictions.diff import DiffResult
    from lifecycle.predictions.predict import PredictResult
    from lifecycle.register.pipeline import RegisterResult
    from lifecycle.register.watch import WatchEvent, WatchSummary
    from lifecycle.rollout import RolloutResult
    from lifecycle.rollout.progressive import ProgressiveResult
    from lifecycle.rollout.reconcile import ReconcileResult
    from lifecycle.serving.fleet import ReloadMode

__all__ = [
    "HistoryEvent", "HistoryReport", "ModelStatus", "ServeResult", "ServedConfig", "StatusReport", "StopResult",
    "TrainResult", "TrainedCheckpoint", "VersionStatus", "card", "decide", "diff", "gc", "history", "hooks", "init",
    "k8s_render", "pin", "predict", "promote", "reconcile", "register", "rollback", "rollout", "serve", "status", "stop",
    "sync", "train", "verify", "watch",
]


# --- init, status and history ----------------------------------------------------------------


def init(home: str | Path = ".", builtin: str | None = None, saved_model: str | Path | None = None,
         name: str | None = None) -> InitResult:
    """Make ``home`` an mlc home: configs/, model_repo/ and a built-in definition or one for a SavedModel."""
    from lifecycle.operations.homes import init as make_home

    return make_home(Path(home), builtin, None if saved_model is None else Path(saved_model), name)


def status(model: str | None = None, paths: Paths | None = None, all_versions: bool = False) -> StatusReport:
    """The registry, configs/models.config and every server's live state, with drift flagged.

    Live state is read over REST, in parallel, with short deadlines; TensorFlow is not imported.
    A pending rollout journal is reported (``pending_rollout``), not recovered. Each model lists
    stable, canary, the versions configured or loaded and the 20 newest; ``versions_total`` and
    ``versions_omitted`` say how many there are and how many were left out
    (``all_versions=True`` lists every one).
    """
    from lifecycle.operations.status import report

    return report(paths or Paths.from_env(), model, all_versions)


@dataclass
class HistoryReport:
    """The result of ``mlc history``."""

    model: str
    stable: int | None
    canary: int | None
    events: list[HistoryEvent]
    approvals: list[approvals.ApprovalState] = field(default_factory=list)  # of each version with a decision

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return asdict(self)


def history(model: str, paths: Paths | None = None) -> HistoryReport:
    """Every promote and rollback of ``model``, oldest first, and each version's approval state."""
    paths = paths or Paths.from_env()
    rec = registry.load(paths, versions=False).model(check_model_name(model))  # the head holds the history
    return HistoryReport(rec.name, rec.stable, rec.canary, list(rec.history), approvals.states(paths, rec))


def decide(model: str, version: int, decision: str, reason: str, paths: Paths | None = None) -> approvals.DecisionResult:
    """``mlc approve`` and ``mlc reject``: record who decided, when, why and on which bytes."""
    return approvals.decide(paths or Paths.from_env(), check_model_name(model), version, decision, reason)


def verify(model: str | None = None, paths: Paths | None = None) -> verifier.VerifyReport:
    """``mlc verify``: the registry's chains and pages, every version's files and every label (see lifecycle.store.verify)."""
    return verifier.verify(paths or Paths.from_env(), check_model_name(model) if model else None)


def hooks(action: str, paths: Paths | None = None) -> sender.DeliveryReport:
    """``mlc hooks deliver|status|test``: send the outbox, list it, or send a test event."""
    return sender.act(paths or Paths.from_env(), action)


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
    replica_timeout: float | None = None,
    allow_breaking: bool = False,
) -> RolloutResult:
    """Promote a version to stable (or canary) on every server; a pending rollout is recovered first."""
    from lifecycle import rollout

    paths = paths or Paths.from_env()
    return rollout.promote(
        paths, check_model_name(model), version, canary=canary, timeout=timeout, reason=reason,
        expect_current=expect_current, dry_run=dry_run, force=force, replica_timeout=replica_timeout,
        allow_breaking=allow_breaking,
    )


def rollback(
    model: str, to: int | None = None, reason: str = "", timeout: float = 120.0, dry_run: bool = False,
    paths: Paths | None = None, replica_timeout: float | None = None,
) -> RolloutResult:
    """Roll back to the previous known-good stable (or ``to``); a pending rollout is recovered first."""
    from lifecycle import rollout

    paths = paths or Paths.from_env()
    return rollout.rollback(
        paths, check_model_name(model), to=to, reason=reason, timeout=timeout, dry_run=dry_run, replica_timeout=replica_timeout,
    )


def rollout(
    model: str, version: int | None = None, steps: str | None = None, limits: dict[str, Any] | None = None,
    timeout: float = 120.0, reason: str = "", dry_run: bool = False, force: bool = False, action: str = "run",
    paths: Paths | None = None, replica_timeout: float | None = None,
) -> ProgressiveResult:
    """Progressive promote step by step (action run), or abort, resume or revert the rollout of ``model``."""
    from lifecycle.rollout.progressive import command

    return command(paths or Paths.from_env(), check_model_name(model), version, steps, limits, timeout, reason, dry_run,
                   force, replica_timeout, action)


def reconcile(
    model: str | None = None, timeout: float = 120.0, paths: Paths | None = None, replica_timeout: float | None = None,
) -> ReconcileResult:
    """Bring every reachable replica to the recorded serving state; report what changed."""
    from lifecycle.rollout.reconcile import reconcile as reconcile_fleet

    return reconcile_fleet(paths or Paths.from_env(), model, timeout=timeout, replica_timeout=replica_timeout)


def k8s_render(
    model: str, replicas: int, repository: str | None = None, image: str | None = None, engine: str = "tfserving",
    mlc_image: str | None = None, namespace: str = "default", secret: str = "mlc-s3",
) -> list[dict[str, Any]]:
    """Kubernetes manifests for ``replicas`` pods of ``model`` (repository: $MLC_REPOSITORY by default)."""
    import os

    from lifecycle.operations import k8s

    repository = repository or os.environ.get("MLC_REPOSITORY") or ""
    if not repository:
        raise UsageError("say where the pods read versions from: --repository s3://bucket/prefix (or set MLC_REPOSITORY)")
    return k8s.render(
        check_model_name(model), replicas, repository, image=image, engine=engine,
        mlc_image=mlc_image or k8s.MLC_IMAGE, namespace=namespace, secret=secret,
    )


# --- serve and stop --------------------------------------------------------------------------


def serve(
    engine: Engine | str = "auto",
    grpc_port: int | None = None,
    rest_port: int | None = None,
    detach: bool = False,
    reload: ReloadMode | str = "request",
    timeout: float = 120.0,
    on_ready: Callable[[ServeResult], None] | None = None,
    paths: Paths | None = None,
) -> ServeResult:
    """Start the servers to drive on configs/models.config (rewritten from the registry first).

    A pending rollout journal is recovered first. Without ``detach`` it calls
    ``on_ready(result)`` once every server is up, then blocks until the servers exit or the
    process is interrupted (SIGTERM, Ctrl-C), and stops them.
    """
    from lifecycle.operations import processes

    return processes.serve(paths or Paths.from_env(), engine, grpc_port, rest_port, detach, reload, timeout, on_ready)


def stop(grpc_port: int | None = None, paths: Paths | None = None) -> StopResult:
    """Stop the servers ``mlc serve`` started (all, or the one on ``grpc_port``)."""
    from lifecycle.operations import processes

    return StopResult(processes.stop(paths or Paths.from_env(), grpc_port))


# --- train ---------------------------------------------------------------------------------


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
    from lifecycle.train import runs

    return runs.train(paths or Paths.from_env(), Path(run_dir), steps, save_every, backbone, model, on_checkpoint)


# --- register ------------------------------------------------------------------------------


def register(path: str | Path, model: str | None = None, paths: Paths | None = None) -> RegisterResult:
    """Validate a checkpoint's export, or a SavedModel folder, and publish it as the model's next version.

    ``path`` is a run folder (its latest checkpoint), a checkpoint prefix, or a SavedModel folder.
    Without ``model``, the model is the one ``mlc train`` recorded in the run folder, else the one
    definition whose network matches the checkpoint (or whose contract the SavedModel satisfies).
    """
    from lifecycle.register import pipeline

    return pipeline.register(paths or Paths.from_env(), Path(path), model)


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
    gate refuses it. Stops when ``stop`` is set, after ``max_events`` settled checkpoints, after ``exit_after`` seconds, or with
    ``once`` as soon as nothing is left to wait for.
    """
    from lifecycle.errors import PreviouslyFailed
    from lifecycle.register import checkpoints, identify
    from lifecycle.register.watch import Registered, Watcher, check_arguments, failed_before

    paths = paths or Paths.from_env()
    check_arguments(run_dirs, settle, max_events, exit_after)
    # Without --model: the model mlc train recorded in the (first) run folder, or the one whose
    # network matches its checkpoint, as mlc register decides.
    name = check_model_name(model) if model else identify.model_for(paths, Path(run_dirs[0]), False)
    load_definition(paths, name)  # a missing or malformed definition is refused before watching
    registry.load(paths)  # so is a malformed registry

    def register_one(prefix: Path) -> Registered:
        ref = checkpoints.resolve(prefix)
        rec = registry.load(paths).models.get(name)
        if rec is not None and rec.version_for_digest(ref.digest) is None:
            failed = failed_before(rec, ref.digest, paths.definition_file(name))
            if failed is not None:
                raise PreviouslyFailed(
                    f"{prefix.name} failed validation check '{failed.check}' before ({failed.time}): {failed.error}; "
                    f"not retried until configs/{name}.yaml changes (or retry now with: mlc register {prefix})"
                )
        r = register(prefix, name, paths)
        return Registered(r.version, r.reused, r.step, r.miou)

    def promote_one(version: int) -> str:
        result = promote(name, version, reason="mlc watch --promote-if-better", paths=paths)
        if result.message:
            return str(result.message)
        servers = len(result.plan.servers)
        where = f"on {servers} server{'s' if servers != 1 else ''}" if servers else "in the config (no servers running)"
        return f"{name}: version {version} is now stable {where}, after {result.seconds:.1f} s of safe rollout"

    watcher = Watcher(
        run_dirs, register_one, promote_one if promote_if_better else None, settle=settle, on_event=on_event,
    )
    return watcher.run(stop, max_events=max_events, exit_after=exit_after, once=once)


# --- predict and diff ------------------------------------------------------------------------


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
    overwrite: bool = False,
) -> PredictResult:
    """Send photos to the served model; write ``<name>.v<N>.mask.png`` and ``.v<N>.overlay.png`` for each.

    Every photo is read before anything is sent, so a file that is not an image sends nothing;
    a picture another version wrote is replaced only with ``overwrite``.
    """
    from lifecycle.predictions.predict import predict_photos

    return predict_photos(
        paths or Paths.from_env(), model, images, version=version, label=label, server=server, rest=rest,
        use_async=use_async, timeout=timeout, out=out, overwrite=overwrite,
    )


def diff(model: str, a: int, b: int, images: list[str | Path] | None = None, out: str | Path = ".",
         paths: Paths | None = None) -> DiffResult:
    """Compare versions A and B: signatures (and the signature gate's verdict), masks on the test image,
    ``images`` and the eval set, loaded in-process (:mod:`lifecycle.predictions.diff`); pictures go to ``out``."""
    from lifecycle.predictions.diff import compare_versions

    return compare_versions(paths or Paths.from_env(), model, a, b, images, out)


def card(model: str, version: int, out: str | Path = ".", paths: Paths | None = None) -> CardResult:
    """``mlc card``: write a version's model card as Markdown and self-contained HTML into ``out``."""
    from lifecycle.predictions import card as cards

    return cards.write(paths or Paths.from_env(), check_model_name(model), version, Path(out))


# --- many machines: sync, gc, pin --------------------------------------------------------------


def sync(
    to: str | Path,
    models: Sequence[str] = (),
    follow: bool = False,
    servers: Sequence[str] = (),
    interval: float = 2.0,
    unload_grace: float = 60.0,
    stop: threading.Event | None = None,
    on_pass: Callable[[Any], None] | None = None,
    paths: Paths | None = None,
) -> SyncResult:
    """Mirror the versions the serving config needs into ``to`` and write ``to/models.config``.

    Each version is downloaded to a temp folder, verified against its manifest and renamed into
    place; versions the config no longer lists go once no server holds them
    (:mod:`lifecycle.operations.sync`). With ``follow`` it repeats every ``interval`` seconds until
    ``stop`` is set, calling ``on_pass`` with each pass's SyncResult (or a later pass's error),
    and returns the last result.
    """
    from lifecycle.operations import sync as syncing

    for name in models:
        check_model_name(name)
    if interval <= 0 or unload_grace < 0:
        raise UsageError("--interval must be positive and --unload-grace not negative")
    return syncing.run(paths or Paths.from_env(), Path(to), models, servers, unload_grace, follow, interval, stop,
                       on_pass)


def gc(
    model: str | None = None, keep: int = 3, dry_run: bool = False, grace: float = 3600.0,
    paths: Paths | None = None,
) -> GcResult:
    """Delete old versions (never labelled, rollback-chain, pinned, configured or loaded ones)
    and incomplete uploads older than ``grace`` seconds; each deletion goes into the history."""
    from lifecycle.operations import retention

    return retention.gc(paths or Paths.from_env(), model, keep, dry_run, grace)


def pin(model: str, version: int, unpin: bool = False, paths: Paths | None = None) -> PinResult:
    """Pin a version so ``gc`` never deletes it (``unpin=True`` lifts the pin)."""
    from lifecycle.operations import retention

    return retention.pin(paths or Paths.from_env(), check_model_name(model), version, pinned=not unpin)
