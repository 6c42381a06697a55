"""End to end: `mlc rollout` on real mlc-model-servers on 127.0.0.1, under clients using TF Serving's stubs.

Versions of hpt compute 0.5 * x + offset: version 1 and version 2 both with offset 1 (a good
candidate: the same answers), version 3 with offset 3 (a candidate that answers differently).
Four clients run through every rollout: two on the default route (no version, no label: the
traffic the split moves) and two addressed to the label stable, which must never fail.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from typer.testing import CliRunner

from lifecycle.cli import app
from lifecycle.operations.processes import admin_token_file
from lifecycle.server import RunningServer, ServerOptions, create_server
from lifecycle.serving import fleet, tfs_config, traffic
from lifecycle.serving.client import ServingClient
from lifecycle.store import journal, registry
from lifecycle.store.config import Paths
from tests.support.polling import wait_until
from tests.support.rollout_support import MODEL, Load, golden, make_home, warmup_request, write_warmup

pytestmark = pytest.mark.e2e
runner = CliRunner()
FAST = ["--min-requests", "5", "--max-p99-ratio", "25"]  # in-process servers share one GIL: latency is noisy


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.savedmodels import build_half_plus_two_tf1

    root = tmp_path_factory.mktemp("hpt-same")
    for v, offset in ((1, 1.0), (2, 1.0), (3, 3.0)):
        build_half_plus_two_tf1(root / str(v), offset=offset)
        write_warmup(root / str(v))
    return root


def home(tmp_path: Path, built: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    paths = make_home(tmp_path, built, [1, 2, 3], stable=1)
    with registry.transaction(paths) as reg:  # version 2 answers as version 1 does
        reg.model(MODEL).version(2).report["golden"]["digest"] = golden(1)
    monkeypatch.setenv("MLC_HOME", str(paths.home))
    return paths


def start_servers(paths: Paths, n: int = 1) -> list[RunningServer]:
    """``n`` servers as `mlc serve` starts them: admin token, traffic file, metrics; listed in configs/servers.yaml."""
    monitoring = paths.home / "monitoring.config"
    monitoring.write_text("prometheus_config { enable: true }\n")
    labelled = tfs_config.read(paths) or {}
    unlabelled = tfs_config.build(paths, {m: tfs_config.ModelServing(s.versions, {}) for m, s in labelled.items()})
    servers = []
    for _ in range(n):
        server = create_server(ServerOptions(
            grpc_port=0, rest_api_port=0, model_config=unlabelled, max_num_load_retries=0,
            monitoring_config_file=str(monitoring), mlc_admin_token_file=str(admin_token_file(paths)),
            mlc_traffic_file=str(traffic.traffic_file(paths)),
        ))
        with ServingClient(server.grpc_address) as client:
            client.reload(tfs_config.build(paths, labelled))
        servers.append(server)
    fleet.write_servers_file(paths, [fleet.ServerSpec(s.grpc_address, f"127.0.0.1:{s.rest_port}") for s in servers])
    return servers


@dataclass
class DefaultRoute:
    """Clients on the default route (no version, no label) with the official stubs: who answered, what failed."""

    address: str
    threads: int = 2
    answers: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def _run(self, n: int) -> None:
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        request = warmup_request()
        with grpc.insecure_channel(self.address) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            i = 0
            while not self._stop.is_set():
                i += 1
                try:
                    response = stub.Predict(request, timeout=10, metadata=[("mlc-route-key", f"client{n}-{i}")])
                except grpc.RpcError as e:
                    self.failures.append(str(e.code()))
                    continue
                v = response.model_spec.version.value
                self.answers[v] = self.answers.get(v, 0) + 1

    def __enter__(self) -> DefaultRoute:
        for n in range(self.threads):
            t = threading.Thread(target=self._run, args=(n,), daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(timeout=30)


@pytest.fixture
def stopping() -> Iterator[list[RunningServer]]:
    servers: list[RunningServer] = []
    yield servers
    for s in servers:
        s.stop()


def splits(paths: Paths, servers: list[RunningServer]) -> list[traffic.Split | None]:
    token = traffic.read_token(paths)
    return [traffic.get_split(fleet.ServerSpec(s.grpc_address, f"127.0.0.1:{s.rest_port}"), MODEL, token) for s in servers]


def loaded(server: RunningServer) -> dict[int, str]:
    with ServingClient(server.grpc_address) as c:
        return {v: s.state for v, s in c.model_status_grpc(MODEL).items() if s.state != "END"}


def rollout(*args: str) -> tuple[int, dict]:
    result = runner.invoke(app, ["rollout", MODEL, *args, "--json"])
    return result.exit_code, json.loads(result.output) if result.output.strip().startswith("{") else {"output": result.output}


def stable_clients(server: RunningServer) -> Load:
    return Load(server.grpc_address, threads=2, allowed={1, 2, 3}, request=warmup_request(), digests={1: golden(1), 2: golden(1), 3: golden(3)})


def test_a_good_candidate_goes_through_three_steps_to_stable_under_four_clients(
        tmp_path: Path, built: Path, monkeypatch: pytest.MonkeyPatch, stopping: list[RunningServer]) -> None:
    paths = home(tmp_path, built, monkeypatch)
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


def test_a_fleet_of_three_is_at_each_steps_weight_and_an_unreachable_replica_aborts_named(
        tmp_path: Path, built: Path, monkeypatch: pytest.MonkeyPatch, stopping: list[RunningServer]) -> None:
    paths = home(tmp_path, built, monkeypatch)
    stopping += start_servers(paths, 3)
    seen: list[tuple[str, list[float | None]]] = []
    done = threading.Event()

    def watch() -> None:
        # While a step holds (its figures are journaled), every replica must report its weight.
        while not done.is_set():
            j = journal.load(paths)
            current = j.progress.get("current") if j is not None else None
            if current:
                try:
                    seen.append((current["step"], [s.weight if s else None for s in splits(paths, stopping[:2])]))
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
        assert all(ws == [weights[step]] * 2 for step, ws in seen), seen
        # now the other way: a replica that stops answering mid-rollout aborts it, named
        gone = stopping[2]
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
