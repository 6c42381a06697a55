"""One of three replicas (each in its own network namespace) loses its link after the load step
of a promote: the promote reverts the other two and names the lost one; they answer every
label-addressed request throughout; when the link returns, `mlc reconcile` brings the lost one to
the recorded state. The same fault during a step of `mlc rollout` is the second cell.

The fleet (namespaces, DNS, three replicas) is tests/e2e/test_fleet_netns.py's module fixture; the
rollout cell adds three replicas as `mlc serve` starts them (tests/support/progressive_netns.py) to
its namespaces, with a home of their own.
"""

from __future__ import annotations

import http.client
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from lifecycle import failpoints
from lifecycle.serving import traffic
from lifecycle.serving.client import rest_model_status
from lifecycle.store import journal, registry
from tests.e2e.test_fleet_netns import GRPC_PORT, REASON, REST_PORT, Fleet, _predict, fleet  # noqa: F401 - fleet is the fixture
from tests.e2e.test_progressive_netns import Clients
from tests.support.faults import FAULT_PAUSE_S
from tests.support.polling import wait_until
from tests.support.progressive_netns import Lab, answer, start_lab
from tests.support.rollout_support import MODEL

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(REASON is not None, reason=f"link-loss cells: {REASON}")]


class UpLoad:
    """Label-addressed REST Predicts from the client namespace to the replicas that stay up."""

    def __init__(self, f: Fleet | Lab, replicas: list[str]) -> None:
        self.fleet, self.replicas = f, replicas
        self.failures: list[str] = []
        self.answers = 0
        self._stop = threading.Event()
        self._thread = f.lab.thread("c", self._run)

    def _run(self) -> None:
        conns = {r: http.client.HTTPConnection(self.fleet.addresses[r], REST_PORT, timeout=10) for r in self.replicas}
        while not self._stop.wait(0.01):
            for r, conn in conns.items():
                try:
                    version = _predict(conn, "stable")
                except (OSError, http.client.HTTPException, ValueError) as e:
                    self.failures.append(f"{r}: {e}")
                    conn.close()
                    continue
                if version not in (1, 2):
                    self.failures.append(f"{r}: answered by version {version}")
                self.answers += 1

    def __enter__(self) -> UpLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def test_a_replica_loses_its_link_after_the_load_step(fleet: Fleet, tmp_path: Path, record_property: Any) -> None:  # noqa: F811 - the fixture
    lost = f"{fleet.addresses['r2']}:{GRPC_PORT}"
    log = tmp_path / "points.log"
    env = {**fleet.env, failpoints.ENV: f"journal:load:done=pause:{FAULT_PAUSE_S}", failpoints.LOG_ENV: str(log)}
    with UpLoad(fleet, ["r0", "r1"]) as load:
        proc = fleet.lab.popen("c", [sys.executable, "-m", "lifecycle", "promote", MODEL, "2", "--timeout", "20",
                                     "--replica-timeout", "6"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_until(lambda: log.exists() and "journal:load:done" in log.read_text(), 120, "the promote's load step")
            fleet.lab.link("r2", up=False)
            Path(f"{log}.release").touch()
            out, err = proc.communicate(timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
        try:
            assert proc.returncode == 1, out + err
            lines = [x for x in err.strip().splitlines() if x.startswith("Error:")]
            assert len(lines) == 1 and "reverted" in lines[0] and lost in lines[0], err
            assert registry.load(fleet.paths).model(MODEL).stable == 1
            unreachable = [f"server {lost} is unreachable"]
            wait_until(lambda: fleet.status(settle=False)["models"][0]["drift"] == unreachable, 60,
                       "r0 and r1 back on version 1 alone")
        finally:
            fleet.lab.link("r2", up=True)
    record_property("requests", load.answers + len(load.failures))
    record_property("failed_requests", len(load.failures))
    code, out, err = fleet.mlc("reconcile", MODEL)
    assert code == 0, out + err
    report = fleet.status()
    assert report["models"][0]["drift"] == [], report["models"][0]["drift"]
    assert set(report["models"][0]["generations"].values()) == {report["generation"]}
    assert load.answers > 0 and load.failures == []


def _loaded(rl: Lab, r: str) -> set[int]:
    return rl.inside(lambda: {v for v, s in rest_model_status(f"{rl.addresses[r]}:{REST_PORT}", MODEL, timeout=5).items() if s.state != "END"})


def test_a_replica_loses_its_link_during_a_rollout_step(fleet: Fleet, tmp_path: Path, subprocess_env: dict[str, str],  # noqa: F811 - the fixture
                                                        record_property: Any) -> None:
    rl = start_lab(fleet.lab, tmp_path, subprocess_env, ("p0", "p1", "p2"))
    lost = f"{rl.addresses['p2']}:{GRPC_PORT}"
    log = tmp_path / "points.log"
    env = {**rl.env, failpoints.ENV: f"journal:traffic:begin=pause:{FAULT_PAUSE_S}", failpoints.LOG_ENV: str(log)}
    with UpLoad(rl, ["p0", "p1"]) as load, Clients(rl, ("p0", "p1")):  # Clients: the candidate's default-route share
        proc = rl.lab.popen("c", [sys.executable, "-m", "lifecycle", "rollout", MODEL, "2", "--steps", "10%:1s,50%:1s",
                                  "--min-requests", "5", "--max-p99-ratio", "1000", "--timeout", "20",
                                  "--replica-timeout", "4"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:  # the split (weight 0, candidate loaded) is on every replica; the 10% step begins
            wait_until(lambda: log.exists() and "journal:traffic:begin" in log.read_text(), 120, "the rollout's 10% step")
            rl.lab.link("p2", up=False)
            Path(f"{log}.release").touch()
            out, err = proc.communicate(timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
        try:
            assert proc.returncode == 1, out + err
            lines = [x for x in err.strip().splitlines() if x.startswith("Error:")]
            assert len(lines) == 1 and "reverted" in lines[0] and lost in lines[0], err
            assert registry.load(rl.paths).model(MODEL).stable == 1 and journal.load(rl.paths) is None
            assert rl.weights(("p0", "p1")) == [None, None]
            wait_until(lambda: [_loaded(rl, r) for r in ("p0", "p1")] == [{1}, {1}], 60, "the candidate unloaded on p0, p1")
            assert [answer(rl, r, "stable") for r in ("p0", "p1")] == [1, 1]
        finally:
            rl.lab.link("p2", up=True)
    record_property("requests", load.answers + len(load.failures))
    record_property("failed_requests", len(load.failures))
    code = rl.mlc("reconcile", MODEL)
    assert code.returncode == 0, code.stdout + code.stderr
    assert rl.weights() == [None, None, None] and traffic.read_traffic_file(rl.paths) == {}
    assert [_loaded(rl, r) for r in ("p0", "p1", "p2")] == [{1}, {1}, {1}]
    assert load.answers > 0 and load.failures == []
