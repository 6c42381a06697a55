"""End to end: controlling a running `mlc rollout` (--abort, Ctrl-C, kill -9 then --resume) and its refusals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lifecycle import api
from lifecycle.cli import app
from lifecycle.server import RunningServer
from lifecycle.serving import fleet, traffic
from lifecycle.store import journal, registry
from lifecycle.store.config import Paths
from tests.support import tfserving_standin
from tests.support.homes import tree_state
from tests.support.no_tensorflow import assert_no_tensorflow
from tests.support.polling import wait_until
from tests.support.ports import free_ports
from tests.support.progressive_support import (
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
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("hpt-same"))


@pytest.fixture
def stopping() -> Iterator[list[RunningServer]]:
    servers: list[RunningServer] = []
    yield servers
    for s in servers:
        s.stop()


def background(paths: Paths, *args: str) -> subprocess.Popen[str]:
    """`mlc rollout ...` in its own process (SIGINT is Ctrl-C there: pytest does not ignore it)."""
    env = dict(os.environ, MLC_HOME=str(paths.home), PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "lifecycle", "rollout", MODEL, *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def holding(paths: Paths, step: str) -> bool:
    j = journal.load(paths)
    current = j.progress.get("current") if j is not None else None
    return bool(current) and current["step"] == step  # type: ignore[index]


@pytest.mark.parametrize("how", ["--abort", "ctrl-c"])
def test_abort_from_another_terminal_or_ctrl_c_aborts_at_the_next_check(
        tmp_path: Path, built: Path, monkeypatch: pytest.MonkeyPatch, stopping: list[RunningServer], how: str) -> None:
    paths = home(tmp_path, built, monkeypatch)
    stopping += start_servers(paths)
    server = stopping[0]
    with stable_clients(server) as labelled, DefaultRoute(server.grpc_address):
        proc = background(paths, "2", "--steps", "10%:60s", "--min-requests", "5")
        try:
            wait_until(lambda: holding(paths, "10%"), timeout=120, what="the rollout holding its 10% step")
            if how == "--abort":
                result = runner.invoke(app, ["rollout", MODEL, "--abort"])
                assert result.exit_code == 0, result.output
                assert "asked the running rollout of hpt (stable 1 -> 2)" in result.output
            else:
                proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=120)
        finally:
            proc.kill()
    assert proc.returncode == 1, (out, err)
    why = "aborted by `mlc rollout hpt --abort`" if how == "--abort" else "interrupted (Ctrl-C)"
    last = err.strip().splitlines()[-1]
    assert last.startswith("Error: rollout of hpt 2 failed at step '10%'") and why in last, err
    assert labelled.failures == []
    rec = registry.load(paths).model(MODEL)
    assert rec.stable == 1 and rec.history[-1].result == "aborted" and why in rec.history[-1].detail
    assert loaded(server) == {1: "AVAILABLE"}
    assert splits(paths, stopping) == [None] and traffic.read_traffic_file(paths) == {}
    assert journal.load(paths) is None


def test_kill_9_then_resume_finishes_the_remaining_steps(
        tmp_path: Path, built: Path, monkeypatch: pytest.MonkeyPatch, stopping: list[RunningServer]) -> None:
    paths = home(tmp_path, built, monkeypatch)
    stopping += start_servers(paths)
    server = stopping[0]
    with stable_clients(server) as labelled, DefaultRoute(server.grpc_address) as default:
        proc = background(paths, "2", "--steps", "shadow:1.5s,10%:5s,50%:1.5s", "--min-requests", "5",
                          "--max-p99-ratio", "1000")
        try:
            wait_until(lambda: holding(paths, "10%"), timeout=120, what="the rollout holding its 10% step")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
        assert traffic.Split(1, 2, 0.1).same_weights(splits(paths, stopping)[0])  # left in place by the kill
        code, out = rollout("--resume")
    assert code == 0, out
    assert out["result"] == "promoted" and [s["step"] for s in out["steps"]] == ["shadow", "10%", "50%"]
    assert out["recovered"][0].startswith("resumed the interrupted rollout of hpt")
    assert labelled.failures == [] and default.failures == []
    rec = registry.load(paths).model(MODEL)
    assert rec.stable == 2 and [e.result for e in rec.history if e.action == "rollout"] == ["ok"]
    assert splits(paths, stopping) == [None] and loaded(server) == {2: "AVAILABLE"}


def test_a_step_without_enough_requests_aborts_or_waits_then_aborts(
        tmp_path: Path, built: Path, monkeypatch: pytest.MonkeyPatch, stopping: list[RunningServer]) -> None:
    paths = home(tmp_path, built, monkeypatch)
    stopping += start_servers(paths)  # and no clients at all
    code, out = rollout("2", "--steps", "10%:1s", "--too-few", "abort")
    assert code == 1 and out["steps"][0]["verdict"] == "fail", out
    assert "only 0 requests answered by the candidate, below min_requests 20" in out["reason"]
    code, out = rollout("2", "--steps", "shadow:1s", "--max-wait", "1.5s", "--min-requests", "3")
    assert code == 1 and out["steps"][0]["verdict"] == "fail", out
    assert "only 0 compared shadow requests, below min_requests 3 after waiting 1.5 s beyond the hold" in out["reason"]
    assert out["steps"][0]["requests"] == 0
    rec = registry.load(paths).model(MODEL)
    assert rec.stable == 1 and [e.result for e in rec.history[-2:]] == ["aborted", "aborted"]
    assert loaded(stopping[0]) == {1: "AVAILABLE"} and splits(paths, stopping) == [None]


def test_with_mlc_serve_a_rollout_checks_in_the_private_sandbox_and_imports_no_tensorflow(
        tmp_path: Path, built: Path, monkeypatch: pytest.MonkeyPatch, subprocess_env: dict[str, str]) -> None:
    paths = home(tmp_path, built, monkeypatch)
    grpc_port, rest_port = free_ports(2)
    env = dict(subprocess_env, MLC_HOME=str(paths.home))
    started = subprocess.run([sys.executable, "-m", "lifecycle", "serve", "--detach", "--engine", "embedded",
                              "--grpc-port", str(grpc_port), "--rest-port", str(rest_port)],
                             env=env, capture_output=True, text=True, timeout=300)
    assert started.returncode == 0, started.stderr
    try:
        with DefaultRoute(f"127.0.0.1:{grpc_port}") as default:
            printed = assert_no_tensorflow(
                [["rollout", MODEL, "2", "--steps", "shadow:1.5s,10%:1.5s", "--min-requests", "5",
                  "--max-p99-ratio", "1000", "--json"]], env, timeout=300)
        assert '"result": "promoted"' in printed, printed
        assert default.failures == [] and default.answers.get(2, 0) > 0
        assert registry.load(paths).model(MODEL).stable == 2
        assert traffic.read_traffic_file(paths) == {}
    finally:
        api.stop(paths=paths)


def test_without_metrics_it_refuses_before_changing_anything(
        tmp_path: Path, built: Path, monkeypatch: pytest.MonkeyPatch, stopping: list[RunningServer]) -> None:
    paths = home(tmp_path, built, monkeypatch)
    stopping += start_servers(paths, monitoring=False)
    before = tree_state(paths.home)
    result = runner.invoke(app, ["rollout", MODEL, "2"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: mlc rollout judges the candidate by the servers' metrics: server ")
    assert result.output.count("\n") == 1
    assert tree_state(paths.home) == before and loaded(stopping[0]) == {1: "AVAILABLE"}


def test_with_tensorflow_model_server_it_refuses_in_one_line_and_points_to_canary(
        tmp_path: Path, built: Path, monkeypatch: pytest.MonkeyPatch, subprocess_env: dict[str, str]) -> None:
    paths = home(tmp_path, built, monkeypatch)
    bin_dir = tmp_path / "bin"
    tfserving_standin.install(bin_dir)
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    monkeypatch.setenv("PATH", path)
    grpc_port, rest_port = free_ports(2)
    env = dict(subprocess_env, MLC_HOME=str(paths.home), PATH=path)
    started = subprocess.run([sys.executable, "-m", "lifecycle", "serve", "--engine", "tfserving", "--detach",
                              "--grpc-port", str(grpc_port), "--rest-port", str(rest_port)],
                             env=env, capture_output=True, text=True, timeout=300)
    assert started.returncode == 0, started.stderr
    try:
        (record,) = fleet.read_records(paths)
        assert record.engine == "tfserving"
        before = tree_state(paths.home)
        result = runner.invoke(app, ["rollout", MODEL, "2", "--steps", "5%:1s"])
        assert result.exit_code == 1
        assert result.output.count("\n") == 1, result.output
        assert "tensorflow_model_server (the engine of" in result.output
        assert "`mlc promote hpt VERSION --canary` with clients that address the labels 'stable' and 'canary'" in result.output
        assert tree_state(paths.home) == before
        assert registry.load(paths).model(MODEL).stable == 1 and journal.load(paths) is None
    finally:
        api.stop(paths=paths)
