"""Driving servers: push a config to every server at once and wait for version states.

Every step polls all servers within one deadline; any failure is a :class:`StepFailed`
naming the step and the server.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from lifecycle.errors import (
    LifecycleError,
    ModelNotFound,
    ServerUnavailable,
    StepFailed,
)
from lifecycle.rollout.live_check import RPC_TIMEOUT_S, LiveCheck
from lifecycle.serving import fleet, tfs_config
from lifecycle.serving.client import ServingClient, VersionState
from lifecycle.store import registry
from lifecycle.store.config import Paths

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 120.0
POLL_INTERVAL_S = 0.05
# How long a failed END state seen before our reload may be a leftover of an earlier attempt
# (TF Serving's file-system source aspires new versions on its next poll, not at once).
STALE_END_GRACE_S = 3.0


def parallel(servers: Sequence[T], fn: Callable[[T], Any]) -> list[tuple[T, BaseException | None]]:
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
        return list(zip(servers, pool.map(call, servers), strict=True))


@dataclass
class DrivenServer:
    """One server being driven, with its client."""

    spec: fleet.ServerSpec
    client: ServingClient

    @property
    def name(self) -> str:
        """The server's name in output (its gRPC address)."""
        return self.spec.name


def driven(servers: Sequence[fleet.ServerSpec]) -> list[DrivenServer]:
    """A client for each server (the caller closes them)."""
    return [DrivenServer(s, ServingClient.of(s, RPC_TIMEOUT_S)) for s in servers]


class Driver:
    """Pushes configs to servers and waits for states: each server within its own deadline.

    A server's deadline is its ``replica_timeout`` (configs/servers.yaml, or ``--replica-timeout``)
    counted from when it was asked to change, and never later than the rollout's deadline.
    Servers are polled in parallel, and the first that fails or misses its deadline stops the
    wait: the others are not waited for beyond it.
    """

    def __init__(self, paths: Paths, model: str, targets: list[DrivenServer], deadline: float) -> None:
        self.paths = paths
        self.model = model
        self.targets = targets
        self.deadline = deadline
        self.asked: dict[str, float] = {}  # server -> when the last push asked it to change

    def remaining(self) -> float:
        """Seconds left before the rollout's deadline."""
        return self.deadline - time.monotonic()

    def limit(self, t: DrivenServer, since: float | None = None) -> float:
        """Server ``t``'s deadline: its replica timeout from when it was asked, within the rollout's."""
        start = self.asked.get(t.name, time.monotonic()) if since is None else since
        return min(self.deadline, start + t.spec.replica_timeout)

    def push(self, step: str, serving: tfs_config.Serving) -> None:
        """Write configs/models.config and reload every server in request mode."""
        config = tfs_config.build(self.paths, serving)
        tfs_config.write(self.paths, config)
        now = time.monotonic()

        def reload(t: DrivenServer) -> None:
            self.asked[t.name] = now
            if t.spec.reload == "request":
                t.client.reload(config, timeout=max(1.0, self.limit(t) - time.monotonic()))

        self._raise_first(step, parallel(self.targets, reload))

    def _raise_first(self, step: str, results: list[tuple[DrivenServer, BaseException | None]]) -> None:
        errors = [(t, e) for t, e in results if e is not None]
        if errors:
            t, e = errors[0]
            message = e.message if isinstance(e, LifecycleError) else f"{type(e).__name__}: {e}"
            if not message.startswith("server "):
                message = f"server {t.name}: {message}"
            raise StepFailed(step, message) from e

    def status(self, t: DrivenServer, limit: float | None = None) -> dict[int, VersionState]:
        """The model's version states on server ``t`` (none when it does not serve the model)."""
        left = (self.deadline if limit is None else limit) - time.monotonic()
        try:
            return t.client.model_status(self.model, timeout=min(RPC_TIMEOUT_S, max(0.5, left)))
        except ModelNotFound:
            return {}

    def poll_each(self, step: str, probe: Callable[[DrivenServer, float], str | None],
                  missed: Callable[[DrivenServer, bool, str], str]) -> None:
        """Poll every server at once, each until its own deadline (:meth:`limit`), until ``probe``
        holds on each; StepFailed naming the first that fails or misses its deadline (the rest
        stop waiting then).

        ``probe(t, limit)`` returns None once ``t`` is done, else what ``t`` reports now; it may
        raise to fail at once. ``missed(t, own, reports)`` words a missed deadline: ``own`` when
        it was the server's replica deadline rather than the rollout's.
        """
        started = time.monotonic()
        stop = threading.Event()

        def one(t: DrivenServer) -> None:
            limit = self.limit(t, self.asked.get(t.name, started))
            try:
                while not stop.is_set():
                    reports = probe(t, limit)
                    if reports is None:
                        return
                    if time.monotonic() >= limit:
                        raise StepFailed(step, missed(t, limit < self.deadline, reports))
                    stop.wait(POLL_INTERVAL_S)
            except BaseException:
                stop.set()
                raise

        self._raise_first(step, parallel(self.targets, one))

    @staticmethod
    def _replica_deadline(t: DrivenServer) -> str:
        return f"server {t.name} missed its replica deadline ({t.spec.replica_timeout:g} s)"

    def wait(self, step: str, what: str, done: Callable[[DrivenServer, dict[int, VersionState]], bool]) -> None:
        """:meth:`poll_each` on the servers' version states until ``done`` holds on each."""

        def probe(t: DrivenServer, limit: float) -> str | None:
            try:
                states = self.status(t, limit)
            except LifecycleError as e:
                raise StepFailed(step, e.message) from e
            if done(t, states):
                return None
            return ", ".join(f"{v} {s.describe()}" for v, s in sorted(states.items())) or "nothing"

        def missed(t: DrivenServer, own: bool, reports: str) -> str:
            if own:
                return f"{self._replica_deadline(t)} waiting for {what}; it reports {reports}"
            return f"timed out waiting for {what} on {t.name}; it reports {reports}"

        self.poll_each(step, probe, missed)

    def wait_available(self, step: str, versions: Sequence[int], baseline: dict[str, dict[int, VersionState]]) -> None:
        """Wait until ``versions`` are AVAILABLE everywhere; a load failure fails at once."""
        started = time.monotonic()

        def done(t: DrivenServer, states: dict[int, VersionState]) -> bool:
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

        def done(t: DrivenServer, states: dict[int, VersionState]) -> bool:
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

        def run(t: DrivenServer) -> None:
            answered = check.run(t.client, self.model, version=check.version, timeout=max(1.0, min(RPC_TIMEOUT_S * 3, self.remaining())))
            if answered != check.version:
                raise StepFailed(step, f"server {t.name}: a request for version {check.version} was answered by {answered}")

        self._raise_first(step, parallel(self.targets, run))

    def confirm_labels(self, step: str, labels: dict[str, int], checks: dict[int, LiveCheck]) -> None:
        """Wait until a label-addressed request answers from the labelled version on every server,
        each within its own deadline (as :meth:`wait`: the first that fails stops the others)."""
        for label, version in sorted(labels.items()):
            check = checks.get(version)
            if check is None or not check.requests:
                continue

            def probe(t: DrivenServer, limit: float, label: str = label, version: int = version,
                      check: LiveCheck = check) -> str | None:
                try:
                    left = limit - time.monotonic()
                    answered = check.run(t.client, self.model, label=label, timeout=max(1.0, min(RPC_TIMEOUT_S, left)))
                except StepFailed:
                    raise
                except LifecycleError as e:
                    if t.spec.reload == "request":
                        raise
                    return e.message  # poll mode: the server may not have read the file yet
                if answered == version:
                    return None
                return f"label {label!r} answers from version {answered}, expected {version}"

            def missed(t: DrivenServer, own: bool, why: str, label: str = label) -> str:
                return f"{self._replica_deadline(t)} waiting for label {label!r}: {why}" if own else f"server {t.name}: {why}"

            self.poll_each(step, probe, missed)


def apply_registry_config(paths: Paths, servers: list[fleet.ServerSpec], timeout: float = DEFAULT_TIMEOUT_S) -> None:
    """Write the registry's config (with labels) and make ``servers`` take it. Caller holds the lock."""
    config = tfs_config.build(paths, tfs_config.served_from_registry(registry.load(paths, lazy=True)))
    tfs_config.write(paths, config)
    targets = driven(servers)
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
