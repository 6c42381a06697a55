"""``mlc status``: the registry, configs/models.config and each server's live state, with drift flagged.

Live state is read over REST, in parallel, with short deadlines. This module must not import
TensorFlow or grpc: ``mlc status`` is a fast command.

It shows the versions that matter (as TF Serving's model status and gto's ``show`` do, not a
model's whole past): stable, canary, those in configs/models.config or on a server, and the
:data:`RECENT` newest; ``all_versions`` shows every one. It reads the registry's head and only
the pages holding those versions, so its time does not grow with the number of versions.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from lifecycle.errors import LifecycleError, ModelNotFound
from lifecycle.operations import retention
from lifecycle.serving import desired, fleet, replicas, tfs_config
from lifecycle.serving.client import VersionState, rest_model_status, tcp_ready
from lifecycle.store import approvals, journal, registry
from lifecycle.store.config import Paths, check_model_name
from lifecycle.store.registry import HistoryEvent

T = TypeVar("T")

#: How many of the newest versions status shows besides the labelled, configured and loaded ones.
RECENT = 20


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
    accuracy: float | None = None  # a classifier's eval accuracy (it has no mIoU)
    approval: str = ""  # "approved by alice", "pending (1 of 2)", "rejected by bob"; "" when none required

    def score(self, metric: str) -> float | None:
        """This version's eval ``metric`` (``miou`` or ``accuracy``; see :func:`scored_by`)."""
        return self.accuracy if metric == "accuracy" else self.miou


def scored_by(versions: list[VersionStatus]) -> str:
    """The eval metric a model's versions are scored by: ``accuracy`` for a classifier (no mIoU), else ``miou``."""
    return "accuracy" if any(v.miou is None and v.accuracy is not None for v in versions) else "miou"


@dataclass
class ServedConfig:
    """What configs/models.config serves of one model."""

    versions: list[int]
    labels: dict[str, int]


@dataclass
class ModelStatus:
    """One model as ``mlc status`` shows it."""

    name: str
    stable: int | None
    canary: int | None
    versions: list[VersionStatus]
    config: ServedConfig | None = None  # what configs/models.config serves of this model
    drift: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    last_event: HistoryEvent | None = None
    generations: dict[str, int | None] = field(default_factory=dict)  # server -> recorded generation it serves
    metric: str = "miou"  # what its versions are scored by (scored_by): miou, or accuracy for a classifier
    versions_total: int = 0  # how many versions are registered
    versions_omitted: int = 0  # how many of them ``versions`` leaves out (0 with all_versions)


@dataclass
class StatusReport:
    """The result of ``mlc status``."""

    models: list[ModelStatus]
    servers: dict[str, str] = field(default_factory=dict)  # address -> "ok" | "unreachable: ..."
    servers_source: str = "none"
    pending_rollout: str | None = None
    warnings: list[str] = field(default_factory=list)
    rollout: dict[str, Any] | None = None  # a progressive rollout in progress (see rollout_progress)
    generation: int = 0  # the recorded desired state's generation (serving/desired.json)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return asdict(self)


def state_words(state: str) -> str:
    """A server's state of a version for people: ``failed: <error>`` and ``unloaded`` for TF Serving's END.

    A plain ``END`` (unloaded, or never loaded) reads ``unloaded``; other states stay as TF Serving names them.
    """
    if state == "END":
        return "unloaded"
    if state.startswith("END:"):
        return "failed:" + state.removeprefix("END:")
    return state


# What one server said about one model: its versions' states, or why it could not say.
Live = dict[tuple[str, str], dict[int, VersionState] | LifecycleError]
# The labels one server has set for one model (read when it answered).
LiveLabels = dict[tuple[str, str], dict[str, int]]


def _or_warn(read: Callable[[], T], fallback: T, warnings: list[str]) -> T:
    """``read()``, or ``fallback`` with the error's message added to ``warnings``."""
    try:
        return read()
    except LifecycleError as e:
        warnings.append(e.message)
        return fallback


def report(paths: Paths, model: str | None = None, all_versions: bool = False) -> StatusReport:
    """The registry, configs/models.config and every server's live state, with drift flagged.

    Live state is read over REST, in parallel, with short deadlines; TensorFlow is not imported.
    A pending rollout journal is reported, not recovered: recovery drives servers, and only the
    commands that drive servers (promote, rollback, serve) run it. Each model lists the versions
    that matter and the :data:`RECENT` newest (every version with ``all_versions``).
    """
    reg = registry.load(paths, versions=False)
    if model:
        check_model_name(model)
        reg.model(model)  # ModelNotFound for an unknown model
    names = [model] if model else sorted(reg.models)
    warnings: list[str] = []
    # A broken config, servers file, journal or desired state is a warning: status still reports.
    config = _or_warn(lambda: tfs_config.read(paths), None, warnings)
    # A server mlc serve started that has died: said once, before fleet.load drops its record.
    for gone in (r for r in fleet.read_records(paths) if not fleet.is_ours(r)):
        warnings.append(f"the server mlc serve started on {gone.grpc} (pid {gone.pid}) is not running any more; "
                        "`mlc serve` starts it again on the recorded config")
    servers = _or_warn(lambda: fleet.load(paths), fleet.Fleet([], "none"), warnings)
    pending = _or_warn(lambda: journal.load(paths), None, warnings)
    recorded = _or_warn(lambda: desired.load(paths), desired.Desired(), warnings)
    live_labels: LiveLabels = {}
    live = _read_live(servers.servers, names, live_labels)
    models = [
        _model_status(reg.models[name], _shown(paths, reg.models[name], config, live, all_versions), config,
                      servers.servers, live, approvals.policy(paths, name))
        for name in names
    ]
    for m in models:
        _replica_labels(m, reg.models[m.name], servers.servers, live, live_labels, recorded)
    no_paths: dict[str, str] = {}
    foreign = _or_warn(lambda: foreign_base_paths(paths), no_paths, warnings)
    for m in models:
        if m.name in foreign:
            m.drift.append(_foreign_text(paths, m.name, foreign[m.name]))
    warnings += [_foreign_text(paths, name, base) for name, base in foreign.items() if name not in reg.models]
    unfinished_gc = _or_warn(lambda: retention.interrupted_gc(paths), None, warnings)
    if unfinished_gc is not None:
        warnings.append(f"an interrupted mlc gc is pending ({unfinished_gc}); the next mlc gc finishes it")
    pending_text = None
    progress = rollout_progress(pending)
    for m in models:
        if progress is not None and m.name == progress["model"]:
            # The rollout's split, not the highest version, decides where those clients go (shown below).
            m.warnings = [w for w in m.warnings if not w.startswith("clients that name no version reach")]
    if pending is not None:
        pending_text = pending.describe()
        if pending.action != "rollout":
            warnings.append(
                f"an interrupted rollout is pending ({pending_text}); the next mlc promote, rollback or serve recovers it"
            )
        elif progress is not None and not progress["running"]:
            warnings.append(
                f"an interrupted rollout is pending ({pending_text}): resume it with `mlc rollout {pending.model} --resume` "
                f"or revert it with `mlc rollout {pending.model} --revert`"
            )
    return StatusReport(
        models=models, servers=_reachability(servers.servers, names, live), servers_source=servers.source,
        pending_rollout=pending_text, warnings=warnings, generation=recorded.generation, rollout=progress,
    )


def rollout_progress(pending: journal.Journal | None) -> dict[str, Any] | None:
    """A progressive rollout's journal as status shows it: its step, weights and per-version figures.

    ``running`` says whether the mlc that runs it is alive on this machine; ``versions`` holds,
    per version, the requests, error rate, p99 (ms) and agreement of the step so far (or of the
    last judged step), as the rollout journals them while it holds each step.
    """
    if pending is None or pending.action != "rollout":
        return None
    p = pending.progress
    stable, candidate = p.get("stable"), p.get("candidate")
    judged = list(p.get("steps") or [])
    current = p.get("current") or (judged[-1] if judged else None) or {}
    traffic = [s for s in pending.steps if s["step"] == "traffic"]
    step = traffic[-1]["detail"] if traffic else pending.last()
    planned = {s["name"]: s for s in (p.get("plan") or {}).get("steps", [])}
    weight = 1.0 if step == "100%" else float(planned.get(step, {}).get("weight", current.get("weight", 0.0)))
    shadow = float(planned.get(step, {}).get("shadow", 0.0))
    return {
        "model": pending.model, "stable": stable, "candidate": candidate, "step": step, "state": pending.last(),
        "weights": {str(stable): round(1.0 - weight, 6), str(candidate): weight}, "shadow": shadow,
        "versions": current.get("versions") or {}, "judged": [{"step": s["step"], "verdict": s["verdict"]} for s in judged],
        "running": fleet.pid_alive(pending.pid), "pid": pending.pid, "started": pending.started,
    }


# A base_path line of a text-format ModelServerConfig: a first, cheap look at configs/models.config.
BASE_PATH_LINE = re.compile(r'^\s*base_path:\s*"((?:[^"\\]|\\.)*)"', re.MULTILINE)


def foreign_base_paths(paths: Paths) -> dict[str, str]:
    """Models whose base_path in configs/models.config lies outside this home's repository (model_repo/).

    A copied home keeps the config of the home it came from, whose servers would load that home's
    versions. The base paths are looked at as text first; only a config where one seems to lie
    outside is parsed as the protobuf message (so status stays without protobuf when all is well).
    """
    text = tfs_config.read_text(paths)
    if text is None:
        return {}
    if all(_inside(paths, raw.encode().decode("unicode_escape")) for raw in BASE_PATH_LINE.findall(text)):
        return {}
    config = tfs_config.parse(text, str(paths.serving_config))
    return {m.name: m.base_path for m in config.model_config_list.config if not _inside(paths, m.base_path)}


def _inside(paths: Paths, base: str) -> bool:
    """Whether a base path lies in this home's model_repo/ (an s3:// base path: in its repository)."""
    if "://" in base:
        from lifecycle.store.config import repository_url

        url = repository_url(paths)
        return url is not None and base.startswith(url.rstrip("/") + "/")
    repo = paths.model_repo.resolve()
    return Path(base).resolve().is_relative_to(repo)


def _foreign_text(paths: Paths, model: str, base: str) -> str:
    return (f"configs/models.config serves {model} from {base}, outside this home's repository {paths.model_repo} "
            "(a config copied from another home?); `mlc serve` or a promote rewrites it from this home's registry")


def _shown(
    paths: Paths, rec: registry.ModelRecord, config: tfs_config.Serving | None, live: Live, all_versions: bool
) -> list[registry.VersionRecord]:
    """The versions status lists: labelled, in the config, on a server, and the newest (or all)."""
    numbers = {n for n in (rec.stable, rec.canary) if n is not None}
    if config and rec.name in config:
        numbers |= set(config[rec.name].versions)
    for (_, name), got in live.items():
        if name == rec.name and isinstance(got, dict):
            numbers |= set(got)
    return registry.select(paths, rec, numbers, None if all_versions else RECENT)


def _read_live(servers: list[fleet.ServerSpec], names: list[str], live_labels: LiveLabels) -> Live:
    """Live states and labels, a few REST calls per (server, model), all at once."""
    live: Live = {}
    bugs: list[BaseException] = []

    def fetch(job: tuple[fleet.ServerSpec, str]) -> None:
        spec, name = job
        if not spec.rest:
            live[(spec.name, name)] = LifecycleError("no REST address configured; status reads servers over REST")
            return
        try:
            live[(spec.name, name)] = rest_model_status(spec.rest, name, timeout=1.0, tls=spec.tls)
            live_labels[(spec.name, name)] = replicas.labels(spec, name, timeout=1.0)
        except LifecycleError as e:
            live[(spec.name, name)] = e
        except BaseException as e:  # noqa: BLE001 - not ours to judge here: raised again in the caller's thread
            bugs.append(e)

    # One thread per (server, model), not a ThreadPoolExecutor: concurrent.futures imports
    # logging, a tenth of this command's start-up.
    threads = [threading.Thread(target=fetch, args=((spec, name),), daemon=True) for spec in servers for name in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if bugs:
        raise bugs[0]
    return live


def _reachability(servers: list[fleet.ServerSpec], names: list[str], live: Live) -> dict[str, str]:
    """Each server's address -> "ok", "unreachable: ..." or "unknown: ..."."""
    reachable: dict[str, str] = {}
    for spec in servers:
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
    return reachable


def _model_status(
    rec: registry.ModelRecord, listed: list[registry.VersionRecord], config: tfs_config.Serving | None,
    servers: list[fleet.ServerSpec], live: Live, rule: approvals.Policy | None = None,
) -> ModelStatus:
    """One model's versions side by side with the config and the servers; drift and warnings."""
    name = rec.name
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
    rule = rule or approvals.Policy()
    decided = rule.required > 0 or len(rec.approvals) > 0
    for v in listed:
        labels = [label for label, n in (("stable", rec.stable), ("canary", rec.canary)) if n == v.version]
        per_server: dict[str, str] = {}
        for spec in servers:
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
                accuracy=(v.report.get("metrics") or {}).get("accuracy"),
                labels=labels,
                in_config=bool(in_config and v.version in in_config.versions),
                servers=per_server,
                approval=approvals.state_of(rec, v.version, rule, v.user).describe() if decided else "",
            )
        )
    for spec in servers:
        got = live.get((spec.name, name))
        if not isinstance(got, dict):
            if isinstance(got, ModelNotFound):
                if wanted.versions:
                    drift.append(f"server {spec.name} does not serve {name}")
            else:
                if spec.rest:
                    drift.append(f"server {spec.name} is unreachable")
            continue
        for number in wanted.versions:
            state = got.get(number)
            if state is None or state.state != "AVAILABLE":
                drift.append(f"server {spec.name}: version {number} is "
                             f"{state_words(state.describe()) if state else 'not loaded'}")
        available = sorted(v for v, s in got.items() if s.state == "AVAILABLE")
        extra = [v for v in available if v not in wanted.versions]
        if extra:
            drift.append(f"server {spec.name} serves version(s) {extra} the registry does not ask for")
        if available and rec.stable is not None and available[-1] != rec.stable:
            model_warnings.append(
                f"clients that name no version reach version {available[-1]} on {spec.name}, not stable "
                f"{rec.stable}; address requests with version_label \"stable\""
            )
    total = rec.version_count()
    if rec.stable is None and total:
        model_warnings.append(f"no stable version yet: promote one with `mlc promote {name} N`")
    last = rec.history.last  # from the head: no history page is read
    if last and "by recovery" in last.detail:
        model_warnings.append(
            f"the last rollout was interrupted and {last.result} by recovery at {last.time} "
            f"(see `mlc history {name}`)"
        )
    return ModelStatus(
        name=name, stable=rec.stable, canary=rec.canary, versions=versions, metric=scored_by(versions),
        config=None if in_config is None else ServedConfig(list(in_config.versions), dict(in_config.labels)),
        drift=drift, warnings=model_warnings, last_event=last, versions_total=total,
        versions_omitted=total - len(versions),
    )


def _replica_labels(
    m: ModelStatus, rec: registry.ModelRecord, servers: list[fleet.ServerSpec], live: Live, live_labels: LiveLabels,
    recorded: desired.Desired,
) -> None:
    """Each replica's label drift and the recorded generation it serves (None: none recorded matches)."""
    wanted = tfs_config.ModelServing.of(rec.stable, rec.canary)
    for spec in servers:
        states, labels = live.get((spec.name, m.name)), live_labels.get((spec.name, m.name))
        if not isinstance(states, dict) or labels is None:
            continue
        for label in sorted(set(wanted.labels) | set(labels)):
            if labels.get(label) != wanted.labels.get(label):
                m.drift.append(
                    f"server {spec.name}: label {label} points at {labels.get(label, 'nothing')}, "
                    f"the registry says {wanted.labels.get(label, 'nothing')}"
                )
        available = tuple(sorted(v for v, s in states.items() if s.state == "AVAILABLE"))
        m.generations[spec.name] = recorded.generation_of(m.name, tfs_config.ModelServing(available, labels))
