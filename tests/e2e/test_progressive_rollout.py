"""End to end: `mlc rollout` on real mlc-model-servers on 127.0.0.1, under clients using TF Serving's stubs.

Versions of hpt compute 0.5 * x + offset: version 1 and version 2 both with offset 1 (a good
candidate: the same answers), version 3 with offset 3 (a candidate that answers differently).
Four clients run through every rollout: two on the default route (no version, no label: the
traffic the split moves) and two addressed to the label stable, which must never fail.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lifecycle.cli import app
from lifecycle.server import RunningServer
from lifecycle.serving import traffic
from lifecycle.store import journal, outbox, registry
from tests.support import netns
from tests.support.polling import wait_until
from tests.support.ports import free_port
from tests.support.progressive_support import (
    FAST,
    DefaultRoute,
    build,
    home,
    loaded,
    rollout,
    runner,
    splits,
    stable_clients,
    start_servers,
)
from tests.support.rollout_support import MODEL

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("hpt-same"))


@pytest.fixture
def stopping() -> Iterator[list[RunningServer]]:
    servers: list[RunningServer] = []
    yield servers
    for s in servers:
        s.stop()


def test_a_good_candidate_goes_through_three_steps_to_stable_under_four_clients(
        tmp_path: Path, built: Path, monkeypatch: pytest.MonkeyPatch, stopping: list[RunningServer]) -> None:
    paths = home(tmp_path, built, monkeypatch)
    # A receiver that is down: the rollout's events wait in the outbox (delivered later, tests/e2e/test_hooks.py).
    (paths.configs / "hooks.yaml").write_text(f"receivers:\n  - url: http://127.0.0.1:{free_port()}/\n    timeout: 0.2\n")
    stopping += start_servers(paths)
    server = stopping[0]
    with stable_clients(server) as labelled, DefaultRoute(server.grpc_address) as default:
        wait_until(lambda: labelled.total() > 3 and sum(default.answers.values()) > 3, what="first answers")
        code, out = rollout("2", "--steps", "shadow:1.5s,10%:1.5s,50%:1.5s", *FAST)
        served_candidate = default.answers.get(2, 0)
    assert code == 0, out
    assert out["result"] == "promoted" and [s["step"] for s in out["steps"]] == ["shadow", "10%", "50%"]
    assert all(s["verdict"] == "pass" and s["requests"] >= 5 for s in out["steps"]), out
    assert out["steps"][0]["agreement"] == 1.0 and out["steps"][1]["weight"] == 0.1
    assert set(out["steps"][0]) == {"step", "weight", "requests", "error_rate", "p99_ratio", "agreement", "verdict"}
    assert labelled.failures == [] and default.failures == [] and labelled.wrong == []
    assert served_candidate > 0  # the split gave the candidate default-route traffic before the promote
    rec = registry.load(paths).model(MODEL)
    assert rec.stable == 2 and rec.history[-1].action == "rollout" and rec.history[-1].result == "ok"
    assert loaded(server) == {2: "AVAILABLE"}
    assert splits(paths, stopping) == [None] and traffic.read_traffic_file(paths) == {}
    assert journal.load(paths) is None
    queued = [(e.event["event"], e.event["data"].get("step")) for e in outbox.pending(paths)]
    assert [q for q in queued if q[0] == "rollout-step"] == [("rollout-step", s) for s in ("shadow", "10%", "50%")]
    assert ("rollout-finish", None) in queued


def test_a_candidate_that_answers_differently_aborts_at_its_shadow_step(
        tmp_path: Path, built: Path, monkeypatch: pytest.MonkeyPatch, stopping: list[RunningServer]) -> None:
    paths = home(tmp_path, built, monkeypatch)
    stopping += start_servers(paths)
    server = stopping[0]
    with stable_clients(server) as labelled, DefaultRoute(server.grpc_address) as default:
        wait_until(lambda: labelled.total() > 3, what="first answers")
        result = runner.invoke(app, ["rollout", MODEL, "3", "--steps", "shadow:1.5s,10%:1.5s", *FAST])
    assert result.exit_code == 1
    assert "failed at step 'shadow': agreement 0.000 of version 3 with stable 1 is below min_agreement 0.95" in result.output
    assert labelled.failures == [] and default.failures == [] and default.answers.get(3, 0) == 0
    rec = registry.load(paths).model(MODEL)
    assert rec.stable == 1 and rec.history[-1].result == "aborted" and "agreement" in rec.history[-1].detail
    assert loaded(server) == {1: "AVAILABLE"}
    assert splits(paths, stopping) == [None] and traffic.read_traffic_file(paths) == {}
    history = runner.invoke(app, ["history", MODEL])
    assert "aborted" in history.output


@pytest.mark.parametrize(("failpoint", "metric"), [("sleep:0.05", "p99_ratio"), ("error:0.5", "error_rate")])
def test_a_failing_or_slow_candidate_aborts_at_its_first_weighted_step(
        tmp_path: Path, built: Path, monkeypatch: pytest.MonkeyPatch, stopping: list[RunningServer],
        failpoint: str, metric: str) -> None:
    paths = home(tmp_path, built, monkeypatch)
    stopping += start_servers(paths)
    server = stopping[0]
    name = f"server:predict:{MODEL}:2"
    done = threading.Event()

    def arm() -> None:
        # The candidate turns bad once it is past the sandbox (which runs in this process too).
        while not done.is_set():
            j = journal.load(paths)
            if j is not None and j.reached("verify", "done"):
                os.environ["MLC_FAILPOINTS"] = f"{name}={failpoint}"
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=arm, daemon=True)
    watcher.start()
    try:
        with stable_clients(server) as labelled, DefaultRoute(server.grpc_address):
            wait_until(lambda: labelled.total() > 3, what="first answers")
            code, out = rollout("2", "--steps", "shadow:1.5s,20%:2s,50%:1s", "--min-requests", "5",
                                "--max-p99-ratio", "3", "--min-agreement", "0.4")
    finally:
        done.set()
        os.environ.pop("MLC_FAILPOINTS", None)
    assert code == 1, out
    assert out["result"] == "aborted" and [s["verdict"] for s in out["steps"]] == ["pass", "fail"], out
    assert f"failed at step '20%': {metric}" in out["reason"]
    assert labelled.failures == []
    rec = registry.load(paths).model(MODEL)
    assert rec.stable == 1 and rec.history[-1].result == "aborted" and metric in rec.history[-1].detail
    assert loaded(server) == {1: "AVAILABLE"}
    assert splits(paths, stopping) == [None]


def test_kill_9_during_a_step_is_reported_and_reverted_to_weight_0(
        tmp_path: Path, built: Path, monkeypatch: pytest.MonkeyPatch, stopping: list[RunningServer]) -> None:
    paths = home(tmp_path, built, monkeypatch)
    stopping += start_servers(paths)
    server = stopping[0]
    env = dict(os.environ, MLC_HOME=str(paths.home), PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    with stable_clients(server) as labelled, DefaultRoute(server.grpc_address) as default:
        proc = subprocess.Popen([sys.executable, "-m", "lifecycle", "rollout", MODEL, "2", "--steps", "25%:60s",
                                 "--min-requests", "5"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            def holding() -> bool:
                j = journal.load(paths)
                return j is not None and bool(j.progress.get("current"))
            wait_until(holding, timeout=120, what="the rollout holding its 25% step")
            assert splits(paths, stopping)[0] is not None and splits(paths, stopping)[0].weight == 0.25  # type: ignore[union-attr]
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        status = runner.invoke(app, ["status", MODEL])
        assert "an interrupted rollout is pending (rollout of hpt (stable 1 -> 2)" in status.output
        assert "mlc rollout hpt --revert" in status.output and "step 25% (1 75% / 2 25%)" in status.output
        refused = runner.invoke(app, ["rollout", MODEL, "2"])
        assert refused.exit_code == 1 and "--resume" in refused.output
        result = runner.invoke(app, ["rollout", MODEL, "--revert"])
        assert result.exit_code == 0, result.output
        assert "reverted" in result.output
        seen = sum(default.answers.values())
        wait_until(lambda: sum(default.answers.values()) > seen + 5, what="answers after the revert")
    assert labelled.failures == []
    assert splits(paths, stopping) == [None] and traffic.read_traffic_file(paths) == {}
    assert loaded(server) == {1: "AVAILABLE"}
    rec = registry.load(paths).model(MODEL)
    assert rec.stable == 1 and rec.history[-1].result == "reverted" and "by recovery" in rec.history[-1].detail
    assert journal.load(paths) is None


@pytest.mark.skipif(netns.unavailable() is None, reason="as root, tests/e2e/test_progressive_netns.py runs the fleet on separate hosts")
def test_a_fleet_of_three_is_at_each_steps_weight_and_an_unreachable_replica_aborts_named(
        tmp_path: Path, built: Path, monkeypatch: pytest.MonkeyPatch, stopping: list[RunningServer]) -> None:
    paths = home(tmp_path, built, monkeypatch)
    stopping += start_servers(paths, 3)
    seen: list[tuple[str, list[float | None]]] = []
    watched = list(stopping)
    done = threading.Event()

    def watch() -> None:
        # While a step holds (its figures are journaled), every replica must report its weight.
        while not done.is_set():
            j = journal.load(paths)
            current = j.progress.get("current") if j is not None else None
            if current:
                try:
                    seen.append((current["step"], [s.weight if s else None for s in splits(paths, watched)]))
                except Exception:  # noqa: BLE001 - the rollout may end between the two reads
                    pass
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    clients = [DefaultRoute(s.grpc_address, threads=1) for s in stopping]
    for c in clients:
        c.__enter__()
    try:
        code, out = rollout("2", "--steps", "10%:2s,50%:2s", *FAST)
        assert code == 0, out
        assert out["result"] == "promoted"
        weights = {"10%": 0.1, "50%": 0.5}
        assert {step for step, _ in seen} == {"10%", "50%"}
        assert all(ws == [weights[step]] * 3 for step, ws in seen), seen  # every replica, all through each hold
        # now the other way: a replica that stops answering mid-rollout aborts it, named
        gone = stopping[2]
        watched[:] = stopping[:2]
        seen.clear()

        def stop_third() -> None:
            wait_until(lambda: bool(seen), timeout=60, what="the first hold")
            gone.stop()

        killer = threading.Thread(target=stop_third, daemon=True)
        killer.start()
        code, out = rollout("3", "--steps", "10%:3s,50%:1s", *FAST, "--max-error-rate", "1", "--min-agreement", "0")
        killer.join()
    finally:
        done.set()
        for c in clients[:2]:
            c.__exit__()
        clients[2]._stop.set()
    assert code == 1 and out["result"] == "aborted"
    assert gone.grpc_address.rpartition(":")[2] in out["reason"] or str(gone.rest_port) in out["reason"], out["reason"]
    assert all(not c.failures for c in clients[:2])
    assert registry.load(paths).model(MODEL).stable == 2
    assert splits(paths, stopping[:2]) == [None, None]
    assert [loaded(s) for s in stopping[:2]] == [{2: "AVAILABLE"}] * 2
    stopping.remove(gone)
