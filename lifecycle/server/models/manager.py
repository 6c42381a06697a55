"""Sources, aspired versions, loading and unloading, version states and labels.

This mirrors TF Serving's ServerCore + FileSystemStoragePathSource + AspiredVersionsManager
with the AvailabilityPreservingPolicy:

- each model's base path is polled; integer subfolders are versions, anything else is ignored;
- the model's version policy (latest{N} by default, all, specific) picks the *aspired* versions;
- a not-aspired AVAILABLE version is unloaded only once an aspired version is AVAILABLE (or
  when nothing is aspired any more), so a transition never leaves a model without a version;
- a failed load is retried ``max_num_load_retries`` times, then the version stays at END with
  its error until it stops being aspired;
- labels may point only at AVAILABLE versions (see :meth:`ServableManager.apply_config`).

Requests look servables up in copy-on-write maps without taking the manager lock, and hold a
handle while they run so that an unload waits for them. Loading, unloading, states and the
reconcile loop share one lock and one condition; the config checks, the label rule and the
version policy live in :mod:`lifecycle.server.config.model_configs`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from lifecycle.errors import (
    FailedPrecondition,
    InvalidArgument,
    LifecycleError,
    ServableNotFound,
    ServingError,
)
from lifecycle.failpoints import failpoint
from lifecycle.server.config.model_configs import ModelConfig, ServerConfig, aspired_versions, label_map, validate_model_configs
from lifecycle.server.models.loader import Servable, release_memory
from lifecycle.server.monitoring import note_served

log = logging.getLogger("mlc-model-server")


class State(Enum):
    """A version's manager state, named as in ModelVersionStatus.State."""

    START = "START"
    LOADING = "LOADING"
    AVAILABLE = "AVAILABLE"
    UNLOADING = "UNLOADING"
    END = "END"


@dataclass(frozen=True)
class ServableState:
    """What GetModelStatus reports for one version: its state and its error (None = OK)."""

    version: int
    state: State
    error: LifecycleError | None = None


@dataclass
class ManagerOptions:
    """The knobs of the manager, with TF Serving's defaults."""

    file_system_poll_wait_seconds: float = 1.0
    max_num_load_retries: int = 5
    load_retry_interval_micros: int = 60_000_000
    allow_version_labels_for_unavailable_models: bool = False
    enable_model_warmup: bool = True
    saved_model_tags: tuple[str, ...] = ("serve",)
    num_load_threads: int = 4
    num_unload_threads: int = 4
    prefer_tflite_model: bool = False  # serve <version>/model.tflite when there is one
    session_config: bytes | None = None  # serialized tensorflow.ConfigProto for every session


@dataclass
class _Harness:
    model: str
    version: int
    path: Path
    state: State = State.START
    error: LifecycleError | None = None
    servable: Servable | None = None
    aspired: bool = True
    cancel: threading.Event = field(default_factory=threading.Event)


Warmup = Callable[[Servable], None]


class ServableManager:
    """Owns every model's versions: what is aspired, loaded, serving, and what each label means."""

    def __init__(self, options: ManagerOptions, warmup: Warmup | None = None,
                 prepare: Warmup | None = None) -> None:
        self.options = options
        self._warmup = warmup
        self._prepare = prepare  # runs on every loaded servable before warmup (e.g. batching)
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._configs: dict[str, ModelConfig] = {}  # model name -> ModelConfig proto
        self._harnesses: dict[str, dict[int, _Harness]] = {}
        self._history: dict[str, dict[int, ServableState]] = {}
        # Copy-on-write maps read by requests without the lock.
        self._serving: dict[str, dict[int, Servable]] = {}
        self._labels: dict[str, dict[str, int]] = {}
        self._executor = ThreadPoolExecutor(
            max_workers=max(1, options.num_load_threads), thread_name_prefix="mlc-load"
        )
        self._unload_executor = ThreadPoolExecutor(
            max_workers=max(1, options.num_unload_threads), thread_name_prefix="mlc-unload"
        )
        self.polls = 0  # finished file-system polls, so tests can wait for one (wait_for)
        self._stopping = threading.Event()
        self._poller: threading.Thread | None = None
        self._config_lock = threading.Lock()  # one reload at a time

    # --- configuration ------------------------------------------------------------------

    def apply_config(self, config: ServerConfig, wait_for_new_models: bool = True) -> None:
        """Make ``config`` (a ModelServerConfig) the whole config: TF Serving's ReloadConfig.

        Validation and the label rule are checked before anything changes, so a refused config
        leaves the previous one serving. Models missing from ``config`` are unloaded. Returns
        once every model new to this config has a version AVAILABLE, or raises if one failed.
        """
        with self._config_lock:
            kind = config.WhichOneof("config")
            if kind is None:
                log.info("Taking no action for empty config.")
                return
            if kind != "model_config_list":
                raise FailedPrecondition(
                    "Cannot transition to requested config. It is only legal to transition "
                    "from one ModelConfigList to another."
                )
            model_configs = list(config.model_config_list.config)
            validate_model_configs(model_configs, self._configs)
            with self._lock:
                new_labels = label_map(model_configs, self._is_available, self._labels,
                                       self.options.allow_version_labels_for_unavailable_models)
            for name, labels in new_labels.items():
                for label, version in labels.items():
                    if self._labels.get(name, {}).get(label) != version:
                        failpoint(f"server:label:{name}:{label}:{version}")  # tests: a replica slow to take a label
            with self._lock:
                new_names = [c.name for c in model_configs if c.name not in self._configs]
                self._configs = {c.name: c for c in model_configs}
                self._labels = new_labels
                for name in list(self._harnesses):
                    if name not in self._configs:
                        self._set_aspired(name, {})
            self.poll_file_system()
            if wait_for_new_models:
                self._wait_until_available(new_names)

    def _is_available(self, name: str, version: int) -> bool:
        harness = self._harnesses.get(name, {}).get(version)
        return harness is not None and harness.state is State.AVAILABLE

    def _wait_until_available(self, names: list[str]) -> None:
        """Wait until every aspired version of these models has loaded or failed.

        (TF Serving waits for Latest(model) only; waiting for all of them makes a returned
        reload or start-up mean "everything that could load has loaded".)
        """
        failed: list[str] = []
        with self._lock:
            for name in names:
                while True:
                    harnesses = self._harnesses.get(name, {})
                    pending = [h for h in harnesses.values() if h.aspired and h.state in (State.START, State.LOADING)]
                    if pending and not self._stopping.is_set():
                        self._changed.wait(timeout=0.5)
                        continue
                    if not harnesses:
                        # No version folder yet: TF Serving would wait for one forever; we
                        # return and let the poller pick versions up when they appear.
                        log.warning("No versions of servable %s found under its base path", name)
                    elif not any(h.state is State.AVAILABLE for h in harnesses.values()):
                        errored = [h for h in harnesses.values() if h.error is not None] or list(harnesses.values())
                        for h in errored:
                            reason = f" due to error: {h.error.grpc_code}: {h.error.message}" if h.error else ""
                            failed.append(f"{{name: {name} version: {h.version}}}{reason}")
                    break
        if failed:
            raise ServingError(
                f"{len(failed)} model(s) did not become available: {{{', '.join(failed)}, }}",
                "UNKNOWN",
            )

    # --- the file-system source -----------------------------------------------------------

    def start_polling(self) -> None:
        """Poll every model's base path every file_system_poll_wait_seconds (if > 0)."""
        if self.options.file_system_poll_wait_seconds <= 0 or self._poller is not None:
            return
        self._poller = threading.Thread(target=self._poll_loop, name="mlc-fs-poll", daemon=True)
        self._poller.start()

    def _poll_loop(self) -> None:
        while not self._stopping.wait(self.options.file_system_poll_wait_seconds):
            try:
                self.poll_file_system()
            except Exception:  # a poll must never kill the poller
                log.exception("file system poll failed")

    def poll_file_system(self) -> None:
        """Read every base path once and update each model's aspired versions."""
        with self._lock:
            configs = dict(self._configs)
        found = {name: aspired_versions(config) for name, config in configs.items()}
        with self._lock:
            for name, versions in found.items():
                if name in self._configs:
                    self._set_aspired(name, versions)
            self.polls += 1
            self._changed.notify_all()

    # --- aspired versions -> actions (AvailabilityPreservingPolicy) ------------------------

    def _set_aspired(self, name: str, versions: dict[int, Path]) -> None:
        harnesses = self._harnesses.setdefault(name, {})
        for version, harness in list(harnesses.items()):
            harness.aspired = version in versions
            if harness.aspired:
                harness.cancel.clear()  # wanted again: let a load in progress keep retrying
            else:
                harness.cancel.set()
                if harness.state is State.END or (harness.state is State.START):
                    if harness.state is State.START:
                        self._record(harness, State.END)
                    del harnesses[version]
        for version, path in versions.items():
            if version not in harnesses:
                harness = _Harness(name, version, path)
                harnesses[version] = harness
                self._record(harness, State.START)
        self._reconcile(name)

    def _reconcile(self, name: str) -> None:
        """Start every action the availability-preserving policy allows now."""
        if self._stopping.is_set():
            return
        harnesses = self._harnesses.get(name, {})
        while True:
            aspired = [h for h in harnesses.values() if h.aspired]
            aspired_serving = [h for h in aspired if h.state is State.AVAILABLE]
            unaspired_serving = [
                h for h in harnesses.values() if not h.aspired and h.state is State.AVAILABLE
            ]
            if unaspired_serving and (not aspired or aspired_serving or len(unaspired_serving) > 1):
                victim = min(unaspired_serving, key=lambda h: h.version)
                self._record(victim, State.UNLOADING)
                self._publish_serving(name)
                self._unload_executor.submit(self._unload, victim)
                continue
            new = [h for h in aspired if h.state is State.START]
            if new:
                chosen = max(new, key=lambda h: h.version)
                self._record(chosen, State.LOADING)
                self._executor.submit(self._load, chosen)
                continue
            return

    def _load(self, harness: _Harness) -> None:
        retries = max(0, self.options.max_num_load_retries)
        interval = self.options.load_retry_interval_micros / 1e6
        attempt = 0
        while True:
            try:
                failpoint(f"server:load:{harness.model}:{harness.version}")  # tests: a slow replica
                servable = self._new_servable(harness)
                try:
                    if self._prepare is not None:
                        self._prepare(servable)
                    if self.options.enable_model_warmup and self._warmup is not None:
                        self._warmup(servable)
                except BaseException:
                    servable.close()
                    raise
                error = None
                break
            except LifecycleError as e:
                error = e
            except Exception as e:  # a loader bug must still end the version with an error
                log.exception("loading %s version %s failed", harness.model, harness.version)
                error = ServingError(f"{type(e).__name__}: {e}", "UNKNOWN")
            log.error(
                "Loading servable: {name: %s version: %s} failed: %s: %s",
                harness.model, harness.version, error.grpc_code, error.message,
            )
            attempt += 1
            if attempt > retries or harness.cancel.is_set() or self._stopping.is_set():
                break
            log.info("Retrying load of %s version %s (%d of %d)", harness.model, harness.version, attempt, retries)
            if interval > 0 and harness.cancel.wait(interval):
                break
        with self._lock:
            if error is not None:
                self._record(harness, State.END, error)
                if not harness.aspired:
                    self._harnesses.get(harness.model, {}).pop(harness.version, None)
            else:
                harness.servable = servable
                self._record(harness, State.AVAILABLE)
                self._publish_serving(harness.model)
                log.info("Successfully loaded servable version {name: %s version: %s}", harness.model, harness.version)
            self._reconcile(harness.model)
            self._changed.notify_all()

    def _new_servable(self, harness: _Harness) -> Servable:
        if self.options.prefer_tflite_model:
            from lifecycle.server.models.tflite import TfLiteServable, has_tflite_model

            if has_tflite_model(harness.path):
                return TfLiteServable(harness.model, harness.version, harness.path)
        return Servable(harness.model, harness.version, harness.path, list(self.options.saved_model_tags),
                        session_config=self.options.session_config)

    def _unload(self, harness: _Harness) -> None:
        servable = harness.servable
        if servable is not None:
            servable.close()  # waits for in-flight requests on this version
        with self._lock:
            harness.servable = None
            self._record(harness, State.END)
            current = self._harnesses.get(harness.model, {})
            if current.get(harness.version) is harness:
                del current[harness.version]
            log.info("Unloaded servable version {name: %s version: %s}", harness.model, harness.version)
            self._reconcile(harness.model)
            self._changed.notify_all()
        del servable  # the last reference: the collection frees the version's graph
        release_memory()

    def _record(self, harness: _Harness, state: State, error: LifecycleError | None = None) -> None:
        harness.state = state
        harness.error = error
        self._history.setdefault(harness.model, {})[harness.version] = ServableState(harness.version, state, error)
        self._changed.notify_all()

    def _publish_serving(self, name: str) -> None:
        serving = dict(self._serving)
        versions = {
            v: h.servable
            for v, h in self._harnesses.get(name, {}).items()
            if h.state is State.AVAILABLE and h.servable is not None
        }
        serving[name] = versions
        self._serving = serving

    # --- requests -----------------------------------------------------------------------

    @contextmanager
    def servable(self, name: str, version: int | None = None, label: str | None = None) -> Iterator[Servable]:
        """Hold the servable a request names: a version, a label, or neither (= highest)."""
        servable = self.acquire(name, version, label)
        try:
            yield servable
        finally:
            servable.release()

    def acquire(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        """Take a handle on the servable a request names; the caller must ``release()`` it."""
        if not name:
            raise InvalidArgument("ModelSpec has no name specified.")
        servable = self._acquire(name, version, label)
        note_served(servable.version)  # for the request metrics of this thread's request
        return servable

    def _acquire(self, name: str, version: int | None, label: str | None) -> Servable:
        wanted: int | None
        for _ in range(1000):
            if label is not None:
                resolved = self._labels.get(name, {}).get(label)
                if resolved is None:
                    raise InvalidArgument(f"Unrecognized servable version label: {label}")
                wanted = resolved
            else:
                wanted = version
            versions = self._serving.get(name, {})
            if wanted is None:
                if not versions:
                    raise ServableNotFound(f"Servable not found for request: Latest({name})")
                candidate = versions[max(versions)]
            else:
                found = versions.get(wanted)
                if found is None:
                    raise ServableNotFound(f"Servable not found for request: Specific({name}, {wanted})")
                candidate = found
            if candidate.acquire():
                return candidate
            time.sleep(0)  # the version is unloading: the maps have moved on, look again
        raise ServableNotFound(f"Servable not found for request: Latest({name})")

    def available_versions(self, name: str) -> Collection[int]:
        """The model's versions that answer requests now (read without the lock)."""
        return self._serving.get(name, {}).keys()

    # --- status -------------------------------------------------------------------------

    def servable_states(self, name: str) -> list[ServableState]:
        """Every version of a model the server has seen, newest first, with its last state."""
        with self._lock:
            return sorted(self._history.get(name, {}).values(), key=lambda s: -s.version)

    def labels(self, name: str) -> dict[str, int]:
        """The model's label map as currently in force."""
        return dict(self._labels.get(name, {}))

    def model_names(self) -> list[str]:
        """Names of the models in the current config."""
        with self._lock:
            return list(self._configs)

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block until ``predicate()`` (evaluated under the manager lock) holds, or time out."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 0.5))
        return True

    # --- shutdown -----------------------------------------------------------------------

    def stop(self) -> None:
        """Stop polling, cancel retries and unload everything."""
        self._stopping.set()
        with self._lock:
            for harnesses in self._harnesses.values():
                for harness in harnesses.values():
                    harness.cancel.set()
            self._changed.notify_all()
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._unload_executor.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            servables = [h.servable for hs in self._harnesses.values() for h in hs.values() if h.servable]
            self._serving = {}
        for servable in servables:
            servable.close()
