"""A fleet on separate hosts: three mlc-model-servers, each in its own network namespace.

The replicas are found through one DNS name (``dns:`` in configs/servers.yaml) served by a real
DNS server (dnslib) on the test bridge; mlc runs in a fourth namespace whose resolv.conf names
that server, so it resolves the way it would in a pod. Label-addressed REST load runs from every
namespace. Traffic stays inside these namespaces (198.18.0.0/15 on a bridge of this run). Needs
root (``ip netns``); skipped elsewhere with the reason.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest

from lifecycle.errors import LifecycleError
from lifecycle.serving import tfs_config
from lifecycle.serving.client import rest_model_status
from lifecycle.serving.tfs_config import ModelServing
from lifecycle.store import journal, registry
from lifecycle.store.config import Paths
from tests.support import netns
from tests.support.polling import wait_until
from tests.support.rollout_support import MODEL, build_versions, make_home

REASON = netns.unavailable()
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(REASON is not None, reason=f"fleet namespace tests: {REASON}")]

GRPC_PORT, REST_PORT = 8500, 8501
NAME = "hpt.mlct.test"
REPLICAS = ("r0", "r1", "r2")
T = TypeVar("T")


@dataclass
class Fleet:
    lab: netns.NetLab
    paths: Paths
    env: dict[str, str]
    addresses: dict[str, str]  # replica -> address
    startup: Path  # the config a replica starts on: version 1, no labels
    servers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, r: str) -> None:
        """Start replica ``r``'s mlc-model-server in its namespace (on the startup config)."""
        self.servers[r] = self.lab.popen(
            r,
            [sys.executable, "-m", "lifecycle.server.main", f"--port={GRPC_PORT}", f"--rest_api_port={REST_PORT}",
             f"--mlc_bind_address={self.addresses[r]}", f"--model_config_file={self.startup}", "--max_num_load_retries=0"],
            env=self.env, stdout=(self.startup.parent / f"{r}.log").open("ab"), stderr=subprocess.STDOUT,
        )

    def wait_serving(self, r: str) -> None:
        wait_until(lambda: _answers(self.lab, r, self.addresses[r], None), 120, f"replica {r} to serve version 1")

    def mlc(self, *args: str, timeout: float = 120, **env: str) -> tuple[int, str, str]:
        """Run mlc inside the client namespace (it resolves NAME through the test DNS server)."""
        out = self.lab.run("c", [sys.executable, "-m", "lifecycle", *args], env={**self.env, **env}, timeout=timeout)
        return out.returncode, out.stdout, out.stderr

    def status(self, settle: bool = True) -> dict:
        """``mlc status --json``. Status gives each server 1 s to answer, and this test's DNS server
        (a thread of the test process) has been seen not to answer for seconds on a loaded 2-core
        machine; so unless ``settle`` is False (a replica is meant to be unreachable), a report
        with an unreachable server or an unresolved name is asked for again, for up to 30 s."""
        give_up = time.monotonic() + 30
        while True:
            code, out, err = self.mlc("status", MODEL, "--json")
            assert code == 0, err
            report = json.loads(out)
            unsettled = any(state.startswith("unreachable") for state in report["servers"].values()) or any(
                w.startswith("cannot resolve") for w in report["warnings"]
            )
            if not settle or not unsettled or time.monotonic() > give_up:
                return report


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, subprocess_env: dict[str, str]) -> Iterator[Fleet]:
    netns.clean_stale()
    root = tmp_path_factory.mktemp("fleet")
    built = build_versions(root / "built", [1, 2])
    paths = make_home(root / "home", built, [1, 2], stable=1)
    (paths.configs / "servers.yaml").write_text(f"servers:\n  - dns: {NAME}:{GRPC_PORT}\n    rest_port: {REST_PORT}\n")
    # A replica starts on the versions alone (labels may point only at AVAILABLE versions);
    # `mlc reconcile` gives it the labels once they have loaded.
    startup = root / "startup.config"
    startup.write_text(tfs_config.render(tfs_config.build(paths, {MODEL: ModelServing((1,), {})})))
    env = dict(subprocess_env, MLC_HOME=str(paths.home))
    lab = netns.NetLab()
    try:
        addresses = {r: lab.add_host(r) for r in REPLICAS}
        lab.add_host("c")
        lab.names[NAME] = sorted(addresses.values())
        lab.serve_dns()
        f = Fleet(lab, paths, env, addresses, startup)
        for r in REPLICAS:
            f.start(r)
        for r in REPLICAS:
            f.wait_serving(r)
        code, out, err = f.mlc("reconcile")
        assert code == 0, out + err
        assert out.count("label stable: - -> 1") == 3, out
        yield f
    finally:
        lab.close()


def _answers(lab: netns.NetLab, host: str, address: str, label: str | None) -> bool:
    """Whether ``address`` answers a Predict (asked from inside ``host``)."""
    return _answer(lab, host, address, label) is not None


def _answer(lab: netns.NetLab, host: str, address: str, label: str | None) -> int | None:
    """The version that answers a Predict at ``address`` (asked from inside ``host``), or None."""
    return _inside(lab, host, lambda: _predict(http.client.HTTPConnection(address, REST_PORT, timeout=2), label))


def _inside(lab: netns.NetLab, host: str, fn: Callable[[], T]) -> T | None:
    """``fn()`` run from inside ``host``'s namespace; None when it fails on the network or HTTP."""
    result: list[T | None] = []

    def ask() -> None:
        try:
            result.append(fn())
        except (OSError, http.client.HTTPException, ValueError, LifecycleError):
            result.append(None)

    t = lab.thread(host, ask)
    t.start()
    t.join()
    return result[0]


def _predict(conn: http.client.HTTPConnection, label: str | None) -> int:
    """One REST Predict; the version that answered, from y = 0.5 * x + version."""
    where = f"/labels/{label}" if label else ""
    conn.request("POST", f"/v1/models/{MODEL}{where}:predict", body=json.dumps({"instances": [[1.0]]}),
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 200:
        raise ValueError(f"HTTP {resp.status}: {body[:200]!r}")
    return round(json.loads(body)["predictions"][0][0] - 0.5)


@dataclass
class Load:
    """Label-addressed REST Predicts from every namespace to every replica, counted."""

    fleet: Fleet
    allowed: set[int]
    label: str = "stable"
    failures: list[str] = field(default_factory=list)
    answers: dict[tuple[str, int], int] = field(default_factory=dict)  # (replica, version) -> count
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _run(self) -> None:
        conns = {r: http.client.HTTPConnection(a, REST_PORT, timeout=10) for r, a in self.fleet.addresses.items()}
        while not self._stop.is_set():
            for r, conn in conns.items():
                try:
                    version = _predict(conn, self.label)
                except (OSError, http.client.HTTPException, ValueError) as e:
                    self.failures.append(f"{r}: {e}")
                    conn.close()
                    continue
                if version not in self.allowed:
                    self.failures.append(f"{r}: answered by version {version}, allowed {self.allowed}")
                self.answers[(r, version)] = self.answers.get((r, version), 0) + 1

    def seen(self, version: int) -> bool:
        """Every replica has answered from ``version``."""
        return all(self.answers.get((r, version), 0) > 0 for r in REPLICAS)

    def __enter__(self) -> Load:
        for host in (*REPLICAS, "c"):
            t = self.fleet.lab.thread(host, self._run)
            t.start()
            self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)


def test_promote_and_rollback_across_namespaces_under_load(fleet: Fleet) -> None:
    with Load(fleet, allowed={1, 2}) as load:
        wait_until(lambda: load.seen(1), 30, "load on every replica")
        code, out, err = fleet.mlc("promote", MODEL, "2", "--reason", "fleet test")
        assert code == 0, out + err
        wait_until(lambda: load.seen(2), 30, "every replica to answer stable from version 2")
        code, out, err = fleet.mlc("rollback", MODEL)
        assert code == 0, out + err
        after_rollback = {r: load.answers.get((r, 1), 0) for r in REPLICAS}
        wait_until(lambda: all(load.answers.get((r, 1), 0) > after_rollback[r] for r in REPLICAS), 30,
                 "every replica to answer stable from version 1 again")
    assert load.failures == []
    assert sum(load.answers.values()) > 50
    report = fleet.status()
    assert report["models"][0]["drift"] == []
    assert set(report["servers"]) == {f"{a}:{GRPC_PORT}" for a in fleet.addresses.values()}
    # Every replica serves the newest recorded generation (promote and rollback each recorded one).
    assert set(report["models"][0]["generations"].values()) == {report["generation"]}


def test_lost_replica_mid_promote_reverts_the_rest_and_reconcile_brings_it_back(fleet: Fleet) -> None:
    lost = fleet.addresses["r2"]
    proc = fleet.lab.popen(
        "c", [sys.executable, "-m", "lifecycle", "promote", MODEL, "2", "--timeout", "12"],
        env={**fleet.env, "MLC_FAILPOINTS": "journal:available:done=pause:3"}, stdout=-1, stderr=-1, text=True,
    )
    try:
        wait_until(lambda: (j := journal.load(fleet.paths)) is not None and j.reached("available"), 60,
                 "the promote to load version 2 everywhere")
        fleet.lab.link("r2", up=False)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode != 0, out
        assert "reverted" in err and f"{lost}:{GRPC_PORT}" in err.split("revert problems")[-1], err
        assert registry.load(fleet.paths).model(MODEL).stable == 1
        # r0 and r1 are back on version 1 alone (version 2 unloads after the revert's reload).
        unreachable = [f"server {lost}:{GRPC_PORT} is unreachable"]
        wait_until(lambda: fleet.status(settle=False)["models"][0]["drift"] == unreachable, 30, "r0 and r1 to drop version 2")
        report = fleet.status(settle=False)
        for r in ("r0", "r1"):
            states = {v["version"]: v["servers"][f"{fleet.addresses[r]}:{GRPC_PORT}"] for v in report["models"][0]["versions"]}
            assert states[1] == "AVAILABLE" and states[2] in ("END", "-"), states
    finally:
        fleet.lab.link("r2", up=True)
        if proc.poll() is None:
            proc.kill()
    # Back on the bridge, r2 still holds what it had loaded when it was lost.
    wait_until(lambda: any("serves version(s) [2]" in d for d in fleet.status()["models"][0]["drift"]), 30,
             "status to show r2's drift")
    report = fleet.status()
    generations = report["models"][0]["generations"]
    assert generations[f"{lost}:{GRPC_PORT}"] is None  # versions [1, 2]: a state never recorded
    assert [generations[f"{fleet.addresses[r]}:{GRPC_PORT}"] for r in ("r0", "r1")] == [report["generation"]] * 2
    code, out, err = fleet.mlc("reconcile", MODEL)
    assert code == 0, out + err
    assert f"{lost}:{GRPC_PORT} (dns {NAME}:{GRPC_PORT}): {MODEL}: unloaded version(s) [2]" in out, out
    assert out.count(": in sync") == 2, out
    report = fleet.status()
    assert report["models"][0]["drift"] == []
    assert set(report["models"][0]["generations"].values()) == {report["generation"]}


def test_a_replica_unreachable_before_the_start_is_named_and_nothing_changes(fleet: Fleet) -> None:
    down = fleet.addresses["r1"]
    before = registry.load(fleet.paths).dump()
    config_before = fleet.paths.serving_config.read_text()
    fleet.lab.link("r1", up=False)
    try:
        code, out, err = fleet.mlc("promote", MODEL, "2")
    finally:
        fleet.lab.link("r1", up=True)
    assert code != 0, out
    assert f"{down}:{GRPC_PORT}" in err and "nothing was changed" in err, err
    assert registry.load(fleet.paths).dump() == before
    assert fleet.paths.serving_config.read_text() == config_before
    wait_until(lambda: fleet.status()["models"][0]["drift"] == [], 30, "r1 back on the bridge, in sync")


def test_a_replica_that_restarts_converges_through_reconcile(fleet: Fleet) -> None:
    again = fleet.addresses["r0"]
    fleet.servers["r0"].kill()
    fleet.servers["r0"].wait(timeout=30)
    fleet.start("r0")  # back on the startup config: version 1 without labels
    fleet.wait_serving("r0")
    drift = fleet.status()["models"][0]["drift"]
    assert drift == [f"server {again}:{GRPC_PORT}: label stable points at nothing, the registry says 1"], drift
    code, out, err = fleet.mlc("reconcile")
    assert code == 0, out + err
    assert f"{again}:{GRPC_PORT} (dns {NAME}:{GRPC_PORT}): {MODEL}: label stable: - -> 1" in out, out
    report = fleet.status()
    assert report["models"][0]["drift"] == []
    assert set(report["models"][0]["generations"].values()) == {report["generation"]}


def test_a_late_replica_fed_by_sync_follow_converges_and_gets_labels_only_once_available(
    fleet: Fleet, tmp_path: Path,
) -> None:
    """A fourth host starts after a promote, as a pod of `mlc k8s render` would: an init pass of
    `mlc sync`, then mlc-model-server polling the folder's models.config, fed by `mlc sync
    --follow --server`. Its version 2 loads slowly (a failpoint in its own environment), so a
    label written too early would be seen pointing at a version still LOADING (or refused by r3)."""
    code, out, err = fleet.mlc("promote", MODEL, "2", "--reason", "before the late replica")
    assert code == 0, out + err
    late = fleet.lab.add_host("r3")
    folder = tmp_path / "r3-models"
    config = folder / "models.config"
    init = fleet.lab.run("r3", [sys.executable, "-m", "lifecycle", "sync", "--to", str(folder)], env=fleet.env, timeout=120)
    assert init.returncode == 0, init.stdout + init.stderr
    # Nothing is loaded on r3 yet: the version, and no label pointing at it.
    assert tfs_config.serving_of(tfs_config.parse(config.read_text())) == {MODEL: ModelServing((2,), {})}
    log = tmp_path / "r3.log"
    slow = ",".join(f"server:load:{MODEL}:{v}=pause:3" for v in (1, 2))  # LOADING for a while, with r3 up for 1
    procs = [fleet.lab.popen(
        "r3",
        [sys.executable, "-m", "lifecycle.server.main", f"--port={GRPC_PORT}", f"--rest_api_port={REST_PORT}",
         f"--mlc_bind_address={late}", f"--model_config_file={config}", "--model_config_file_poll_wait_seconds=1",
         "--max_num_load_retries=0"],
        env={**fleet.env, "MLC_FAILPOINTS": slow}, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )]
    procs.append(fleet.lab.popen(
        "r3", [sys.executable, "-m", "lifecycle", "sync", "--to", str(folder), "--follow", "--interval", "0.2",
               "--server", f"{late}:{REST_PORT}"],
        env=fleet.env, stdout=subprocess.DEVNULL, stderr=(tmp_path / "sidecar.err").open("wb"),
    ))
    watch = LabelWatch(fleet.lab, config, late)
    try:
        with watch:
            wait_until(lambda: _answer(fleet.lab, "c", late, "stable") == 2, 120, "r3 to answer stable from version 2")
            # Found by name like the others, it serves the recorded generation.
            fleet.lab.names[NAME] = sorted([*fleet.addresses.values(), late])
            report = fleet.status()
            assert report["models"][0]["drift"] == [], report["models"][0]["drift"]
            assert report["models"][0]["generations"].get(f"{late}:{GRPC_PORT}") == report["generation"], (report["servers"], report["warnings"])
            # It comes back to a new state too: the fleet rolls back while r3 only follows the repository.
            fleet.lab.names[NAME] = sorted(fleet.addresses.values())
            code, out, err = fleet.mlc("rollback", MODEL)
            assert code == 0, out + err
            wait_until(lambda: _answer(fleet.lab, "c", late, "stable") == 1, 120, "r3 to answer stable from version 1")
            wait_until(lambda: not (folder / MODEL / "2").exists(), 60, "the sidecar to remove version 2 once r3 unloaded it")
            # stable -> 1 stays in the file, so the watch, which may be between two reads on a busy
            # machine, gets to check it against r3 too.
            wait_until(lambda: watch.checked >= {1, 2}, 60, "the watch to check both labels against r3",
                       details=lambda: (watch.checked, watch.early))
    finally:
        fleet.lab.names[NAME] = sorted(fleet.addresses.values())
        for proc in procs:
            proc.kill()
            proc.wait(timeout=30)
    assert watch.early == [], watch.early
    assert "failed to ReloadConfig" not in log.read_text(errors="replace")  # r3 never refused a config


@dataclass
class LabelWatch:
    """Checks, in a tight loop, that a label in the replica's models.config points at a version it has AVAILABLE.

    The file is read first and the replica asked after: a version that was AVAILABLE stays so
    until its label has moved away, so a label seen in the file with its version not AVAILABLE
    a moment later was written too early.
    """

    lab: netns.NetLab
    config: Path
    address: str
    early: list[str] = field(default_factory=list)
    checked: set[int] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            try:
                serving = tfs_config.serving_of(tfs_config.parse(self.config.read_text()))
            except (OSError, LifecycleError):
                continue
            labelled = serving.get(MODEL, ModelServing(())).labels.get("stable")
            if labelled is None:
                continue
            try:
                states = rest_model_status(f"{self.address}:{REST_PORT}", MODEL, timeout=2)
            except LifecycleError:
                continue  # the server is not up yet: it reads the file when it is
            if states.get(labelled) is None or states[labelled].state != "AVAILABLE":
                self.early.append(f"stable -> {labelled} in models.config while r3 reports {labelled}: "
                                  f"{states[labelled].state if labelled in states else 'absent'}")
            self.checked.add(labelled)

    def __enter__(self) -> LabelWatch:
        self._thread = self.lab.thread("r3", self._run)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
