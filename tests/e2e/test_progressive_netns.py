"""End to end: `mlc rollout` across a fleet of 3 replicas on separate hosts (network namespaces).

Each replica is an mlc-model-server in its own namespace, started as `mlc serve` starts it (the
home's admin token, configs/traffic.json, Prometheus metrics); mlc runs in a fourth namespace.
While every step holds, every replica must report the step's weight; a replica lost mid-rollout
aborts it and is named.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from lifecycle.store import journal, registry
from tests.support import netns
from tests.support.polling import wait_until
from tests.support.progressive_netns import REST_PORT, Lab, answer, start_lab
from tests.support.rollout_support import MODEL

REASON = netns.unavailable()
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(REASON is not None, reason=f"fleet namespace tests: {REASON}")]

REPLICAS = ("r0", "r1", "r2")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, subprocess_env: dict[str, str]) -> Iterator[Lab]:
    netns.clean_stale()
    net = netns.NetLab()
    try:
        yield start_lab(net, tmp_path_factory.mktemp("rollout-netns"), subprocess_env, REPLICAS)
    finally:
        net.close()


@dataclass
class Clients:
    """From the client namespace: default-route and label-addressed REST Predicts to the given replicas."""

    f: Lab
    replicas: tuple[str, ...]
    failures: dict[str, list[str]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _run(self, label: str | None) -> None:
        conns = {r: http.client.HTTPConnection(self.f.addresses[r], REST_PORT, timeout=10) for r in self.replicas}
        where = f"/labels/{label}" if label else ""
        body = json.dumps({"instances": [[1.0]]})
        while not self._stop.is_set():
            for r, conn in conns.items():
                try:
                    conn.request("POST", f"/v1/models/{MODEL}{where}:predict", body=body,
                                 headers={"Content-Type": "application/json"})
                    resp = conn.getresponse()
                    resp.read()
                    if resp.status != 200:
                        self.failures.setdefault(label or "default", []).append(f"{r}: HTTP {resp.status}")
                except (OSError, http.client.HTTPException) as e:
                    self.failures.setdefault(label or "default", []).append(f"{r}: {e}")
                    conn.close()

    def __enter__(self) -> Clients:
        for label in (None, None, "stable", "stable"):
            t = self.f.lab.thread("c", lambda label=label: self._run(label))
            t.start()
            self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)


def test_every_replica_is_at_the_steps_weight_and_a_lost_replica_aborts_named(lab: Lab) -> None:
    seen: list[tuple[str, list[float | None]]] = []
    done = threading.Event()
    watched = [REPLICAS]

    def watch() -> None:
        while not done.is_set():
            j = journal.load(lab.paths)
            current = j.progress.get("current") if j is not None else None
            if current:
                try:
                    seen.append((current["step"], lab.weights(watched[0])))
                except Exception:  # noqa: BLE001 - a replica being cut off, or the step ending meanwhile
                    pass
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with Clients(lab, REPLICAS) as clients:
            result = lab.mlc("rollout", MODEL, "2", "--steps", "10%:3s,50%:3s", "--min-requests", "5",
                             "--max-p99-ratio", "1000", "--json")
        assert result.returncode == 0, result.stdout + result.stderr
        assert json.loads(result.stdout)["result"] == "promoted"
        assert clients.failures == {}
        assert {step for step, _ in seen} == {"10%", "50%"}, seen
        assert all(ws == [{"10%": 0.1, "50%": 0.5}[step]] * 3 for step, ws in seen), seen
        assert lab.weights() == [None, None, None]

        # r2 stops while the first step holds: the rollout aborts and names it
        seen.clear()
        watched[0] = ("r0", "r1")
        lost = lab.addresses["r2"]

        def cut() -> None:
            wait_until(lambda: bool(seen), 120, "the first hold")
            lab.servers["r2"].kill()  # connections refused (a cut link costs every call its full deadline)

        cutter = threading.Thread(target=cut, daemon=True)
        cutter.start()
        with Clients(lab, ("r0", "r1")) as clients:
            result = lab.mlc("rollout", MODEL, "3", "--steps", "10%:4s,50%:1s", "--min-requests", "5",
                             "--max-p99-ratio", "1000", "--max-error-rate", "1", "--json")
        cutter.join()
    finally:
        done.set()
    out = json.loads(result.stdout)
    assert result.returncode == 1 and out["result"] == "aborted", result.stdout + result.stderr
    assert f"{lost}:" in out["reason"].split("; reverted")[0], out["reason"]
    assert clients.failures.get("stable", []) == []
    assert registry.load(lab.paths).model(MODEL).stable == 2
    assert lab.weights(("r0", "r1")) == [None, None]
    assert [answer(lab, r, None) for r in ("r0", "r1")] == [1, 1]  # version 2 (offset 1) answers everything again
