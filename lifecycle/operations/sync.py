"""``mlc sync``: mirror the versions the serving config needs into a local folder.

This is the storage initializer (one pass) or sidecar (``--follow``) of a server that reads only
a local disk, such as ``tensorflow_model_server`` (which reads no ``s3://`` since TF Serving
2.7). One pass:

1. read the registry from the repository and compute the serving state it asks for (each
   model's stable and canary, as ``configs/models.config`` would list them);
2. copy every version of it that the folder lacks: into a temp folder, verified file by file
   against the version's manifest, renamed into place (:meth:`Store.copy_version`), so a
   server polling the folder never sees a partial version;
3. only then write ``<DIR>/models.config`` (atomically, base paths ``<DIR>/<model>``), so the
   config never names a version that is not complete on disk. Labels are applied only after
   the versions are AVAILABLE (TF Serving #1608), in two steps as ``mlc promote`` moves them:
   first the new versions beside the old ones (on an empty folder: the versions without
   labels), then the labels once every ``--server`` reports them AVAILABLE;
4. remove versions the config no longer lists, once no server has them loaded: the servers
   named with ``--server`` are asked over REST (an unreachable one keeps everything); with no
   server named, a version goes once ``models.config`` has been unchanged for the unload grace
   period (a polling server has re-read it and unloaded the version by then).

This module must not import TensorFlow.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lifecycle import progress
from lifecycle.errors import (
    LifecycleError,
    ModelNotFound,
    ServerUnavailable,
    ServingError,
)
from lifecycle.serving import tfs_config
from lifecycle.serving.client import rest_model_status
from lifecycle.store import registry
from lifecycle.store.config import Paths
from lifecycle.store.files import atomic_write_text, sweep_incoming

if TYPE_CHECKING:
    from lifecycle.serving.tls import Tls

CONFIG_NAME = "models.config"
DEFAULT_UNLOAD_GRACE_S = 60.0
DEFAULT_INTERVAL_S = 2.0
# States in which a server still holds a version (TF Serving's ManagerState).
HELD_STATES = {"START", "LOADING", "AVAILABLE", "UNLOADING"}


@dataclass
class SyncResult:
    """What one pass did to the folder."""

    target: str
    copied: list[str] = field(default_factory=list)  # "model/N"
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # "model/N: why"
    interrupted: list[str] = field(default_factory=list)  # "model/.incoming-N-...": a killed copy, removed
    config_changed: bool = False
    serving: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for --json."""
        return asdict(self)


def loaded_on(server: str, model: str, unknown_is_empty: bool = False, tls: Tls | None = None) -> set[int]:
    """Versions of ``model`` the server at REST ``server`` holds; ServerUnavailable if it does not answer.

    A server that does not know the model holds none of it with ``unknown_is_empty``; else it
    counts as not answering: a server polling a config file may not know the model yet, or not
    right now, while it re-reads the file.
    """
    try:
        states = rest_model_status(server, model, timeout=5.0, tls=tls)
    except ModelNotFound as e:
        if unknown_is_empty:
            return set()
        raise ServerUnavailable(f"server {server} does not report {model}: {e.message}") from e
    except ServingError as e:
        raise ServerUnavailable(f"server {server} did not report {model}: {e.message}") from e
    return {v for v, s in states.items() if s.state in HELD_STATES}


def wanted_serving(paths: Paths, models: Sequence[str]) -> tfs_config.Serving:
    """The serving state the registry asks for, restricted to ``models`` when given."""
    reg = registry.load(paths)
    serving = tfs_config.served_from_registry(reg)
    if not models:
        return serving
    for name in models:
        reg.model(name)  # ModelNotFound names the registered ones
    return {name: serving[name] for name in models if name in serving}


def _copies(folder: Path) -> list[int]:
    try:
        return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit() and p.is_dir())
    except FileNotFoundError:
        return []


def _remove(folder: Path) -> None:
    """Take a version folder out of a server's sight in one rename, then delete it."""
    doomed = folder.parent / f".removing-{folder.name}-{uuid.uuid4().hex[:8]}"
    folder.rename(doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def sync_once(
    paths: Paths, target: Path, models: Sequence[str] = (), servers: Sequence[str] = (),
    unload_grace: float = DEFAULT_UNLOAD_GRACE_S,
) -> SyncResult:
    """One pass: copy what the config needs, write the config, remove what no server holds."""
    target = Path(target).resolve()
    target.mkdir(parents=True, exist_ok=True)
    result = SyncResult(str(target))
    wanted = wanted_serving(paths, models)
    for name in sorted(wanted):  # what a copy killed part-way left (its lock is free): reported, removed
        if (target / name).is_dir():
            result.interrupted += [f"{name}/{swept}" for swept in sweep_incoming(target / name)]
    for name, serving in sorted(wanted.items()):
        for version in serving.versions:
            if not (target / name / str(version)).is_dir():
                progress.step(f"copying {name}/{version} into {target}, verified against its manifest")
                paths.store.copy_version(name, version, target / name)
                result.copied.append(f"{name}/{version}")
        result.serving[name] = {"versions": list(serving.versions), "labels": dict(serving.labels)}
    config_file = target / CONFIG_NAME
    try:
        current = config_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        current = None
    age = time.time() - config_file.stat().st_mtime if current is not None else 0.0
    config = _next_config(wanted, current, servers, age, unload_grace)
    text = tfs_config.render(tfs_config.build(paths, config, base=target))
    if config != wanted:
        result.kept.append(f"{CONFIG_NAME}: labels move once the servers have loaded {_describe(wanted)}")
    if current != text:
        atomic_write_text(config_file, text)
        result.config_changed = True
    config_age = time.time() - config_file.stat().st_mtime
    if config != wanted:
        return result  # nothing is removed while the labels have not moved
    names = set(models) if models else {p.name for p in target.iterdir() if p.is_dir() and not p.name.startswith(".")}
    for name in sorted(names):
        stale = [v for v in _copies(target / name) if v not in (wanted[name].versions if name in wanted else ())]
        if not stale:
            continue
        held, why = _held(name, servers, config_age, unload_grace)
        for version in stale:
            if held is None or version in held:
                result.kept.append(f"{name}/{version}: {why or 'loaded on a server'}")
            else:
                progress.step(f"removing {name}/{version}")
                _remove(target / name / str(version))
                result.removed.append(f"{name}/{version}")
    return result


def _describe(serving: tfs_config.Serving) -> str:
    return ", ".join(f"{name} {'/'.join(map(str, s.versions))}" for name, s in sorted(serving.items()))


def _next_config(
    wanted: tfs_config.Serving, current: str | None, servers: Sequence[str], age: float, grace: float,
) -> tfs_config.Serving:
    """The config to write now: ``wanted``, or first a step that adds versions and keeps the labels.

    TF Serving lets a label point only at an AVAILABLE version: a reload that sets one on a
    version still loading is refused, and a server that starts on such a config fails unless
    --allow_version_labels_for_unavailable_models (TF Serving #1608). So a label that is new or
    moves is written only once the config has listed its version and every server named with
    ``--server`` reports it AVAILABLE (with no server to ask, once the config has listed it
    for the grace period). Until then the config lists the new versions beside the old ones,
    with the old labels; on an empty folder (a server about to start) that is no label at all.
    """
    before = {} if current is None else tfs_config.serving_of(tfs_config.parse(current))
    step: tfs_config.Serving = {}
    staged = False
    for name, want in wanted.items():
        old = before.get(name) or tfs_config.ModelServing(())
        moved = sorted({v for k, v in want.labels.items() if old.labels.get(k) != v})
        if all(v in old.versions for v in moved) and _available_everywhere(name, moved, servers, age, grace):
            step[name] = want
            continue
        staged = True
        step[name] = tfs_config.ModelServing(tuple(sorted(set(old.versions) | set(want.versions))), dict(old.labels))
    return step if staged else wanted


def _available_everywhere(name: str, versions: Sequence[int], servers: Sequence[str], age: float, grace: float) -> bool:
    """``versions`` of ``name`` AVAILABLE on every server (no server named: the config is ``grace`` old)."""
    if not versions:
        return True
    if not servers:
        return age >= grace
    for server in servers:
        try:
            states = rest_model_status(server, name, timeout=5.0)
        except (ServerUnavailable, ServingError, ModelNotFound):
            return False
        if any(states.get(v) is None or states[v].state != "AVAILABLE" for v in versions):
            return False
    return True


def _held(model: str, servers: Sequence[str], config_age: float, grace: float) -> tuple[set[int] | None, str]:
    """Versions some server holds (None: cannot tell, keep all) and why they are kept."""
    if not servers:
        if config_age < grace:
            return None, f"{CONFIG_NAME} changed {config_age:.0f} s ago; a polling server may still serve it"
        return set(), ""
    held: set[int] = set()
    for server in servers:
        try:
            held |= loaded_on(server, model)
        except ServerUnavailable as e:
            return None, f"cannot ask {server}: {e.message}"
    return held, ""


def follow(
    paths: Paths, target: Path, models: Sequence[str] = (), servers: Sequence[str] = (),
    unload_grace: float = DEFAULT_UNLOAD_GRACE_S, interval: float = DEFAULT_INTERVAL_S,
    stop: threading.Event | None = None, on_pass: Callable[[SyncResult | LifecycleError], None] | None = None,
    max_passes: int | None = None,
) -> int:
    """Pass after pass every ``interval`` s until ``stop`` is set; return the number of passes.

    The first pass's error is raised (bad credentials, a missing bucket...); later ones are
    reported through ``on_pass`` and retried, so a sidecar outlives a network blip.
    """
    stop = stop or threading.Event()
    passes = 0
    while not stop.is_set():
        try:
            outcome: SyncResult | LifecycleError = sync_once(paths, target, models, servers, unload_grace)
        except LifecycleError as e:
            if passes == 0:
                raise
            outcome = e
        passes += 1
        if on_pass is not None:
            on_pass(outcome)
        if max_passes is not None and passes >= max_passes:
            break
        stop.wait(interval)
    return passes


def run(paths: Paths, to: Path, models: Sequence[str], servers: Sequence[str], unload_grace: float, follow_on: bool,
        interval: float, stop: threading.Event | None, on_pass: Callable[[Any], None] | None) -> SyncResult:
    """One pass, or with ``follow_on`` passes every ``interval`` seconds until ``stop``; the last pass's result."""
    if not follow_on:
        return sync_once(paths, to, models, servers, unload_grace)
    last: list[SyncResult] = []

    def record(outcome: Any) -> None:
        if isinstance(outcome, SyncResult):
            last[:] = [outcome]
        if on_pass is not None:
            on_pass(outcome)

    follow(paths, to, models, servers, unload_grace, interval, stop, record)
    return last[0] if last else SyncResult(str(to.resolve()))
