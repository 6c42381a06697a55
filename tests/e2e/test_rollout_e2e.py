"""End to end: promote and roll back on real mlc-model-servers on 127.0.0.1, under client load."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lifecycle import api, failpoints
from lifecycle.cli import app
from lifecycle.errors import LifecycleError, PromotionFailed
from lifecycle.serving import fleet, tfs_config
from lifecycle.serving.client import ServingClient
from lifecycle.store import journal, registry
from lifecycle.store.config import Paths
from tests.support import forked_cli
from tests.support.foreground import start_mlc
from tests.support.no_tensorflow import assert_no_tensorflow
from tests.support.polling import wait_until
from tests.support.ports import free_ports
from tests.support.rollout_support import (
    MODEL,
    Load,
    build_versions,
    make_home,
    start_server,
)

pytestmark = pytest.mark.e2e
runner = CliRunner()


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """half_plus_two versions 1..3 with warmup records, built once."""
    return build_versions(tmp_path_factory.mktemp("hpt"), [1, 2, 3])


def served(paths: Paths, address: str, rest: str) -> None:
    fleet.write_servers_file(paths, [fleet.ServerSpec(address, rest)])


def states(paths: Paths, address: str) -> dict[int, str]:
    with ServingClient(address) as c:
        return {v: s.state for v, s in c.model_status_grpc(MODEL).items()}


def test_promote_and_rollback_cycles_under_load(tmp_path: Path, built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = make_home(tmp_path, built, [1, 2, 3], stable=1)
    monkeypatch.setenv("MLC_HOME", str(paths.home))
    server = start_server(paths)
    try:
        served(paths, server.grpc_address, f"127.0.0.1:{server.rest_port}")
        with Load(server.grpc_address, threads=2, allowed={1}) as load:
            wait_until(lambda: load.total() > 5, what="first answers")
            steps = [
                (["promote", MODEL, "2", "--reason", "better"], 1, 2),
                (["promote", MODEL, "3", "--expect-current", "2"], 2, 3),
                (["rollback", MODEL], 3, 2),
                (["rollback", MODEL], 2, 1),
                (["promote", MODEL, "3", "--canary"], 1, 1),
                (["promote", MODEL, "3"], 1, 3),
                (["rollback", MODEL, "--to", "2", "--reason", "pin"], 3, 2),
            ]
            for args, before, after in steps:
                load.allow({before, after})
                seen = load.total()
                result = runner.invoke(app, args)
                assert result.exit_code == 0, result.output
                load.allow({after})
                wait_until(lambda seen=seen: load.total() > seen + 3, what="answers after the step")
                rec = registry.load(paths).model(MODEL)
                assert rec.stable == after
            assert registry.load(paths).model(MODEL).canary is None
        assert load.failures == []
        assert load.wrong == []
        assert set(load.answers) <= {1, 2, 3} and load.total() > 30
        assert states(paths, server.grpc_address)[2] == "AVAILABLE"
        assert tfs_config.read(paths) == {MODEL: tfs_config.ModelServing((2,), {"stable": 2})}

        status = json.loads(runner.invoke(app, ["status", "--json"]).output)
        m = status["models"][0]
        by_version = {v["version"]: v for v in m["versions"]}
        addr = server.grpc_address
        assert by_version[2]["labels"] == ["stable"] and by_version[2]["servers"] == {addr: "AVAILABLE"}
        assert by_version[1]["servers"][addr] in ("END", "-") and by_version[3]["servers"][addr] == "END"
        assert m["drift"] == [] and status["servers"] == {addr: "ok"}

        hist = json.loads(runner.invoke(app, ["history", MODEL, "--json"]).output)["events"]
        assert [(e["action"], e["from_version"], e["to_version"], e["result"]) for e in hist[1:]] == [
            ("promote", 1, 2, "ok"), ("promote", 2, 3, "ok"), ("rollback", 3, 2, "ok"), ("rollback", 2, 1, "ok"),
            ("canary", 1, 3, "ok"), ("promote", 1, 3, "ok"), ("rollback", 3, 2, "ok"),
        ]
        assert hist[1]["reason"] == "better"
    finally:
        server.stop()


def test_broken_candidate_fails_reverts_and_no_request_fails(tmp_path: Path, built: Path) -> None:
    paths = make_home(tmp_path, built, [1, 2], stable=1)
    for data in (paths.version_dir(MODEL, 2) / "variables").glob("variables.data-*"):
        data.write_bytes(os.urandom(data.stat().st_size))
    server = start_server(paths)
    try:
        served(paths, server.grpc_address, f"127.0.0.1:{server.rest_port}")
        config = paths.serving_config.read_bytes()
        with Load(server.grpc_address, allowed={1}) as load:
            wait_until(lambda: load.total() > 3)
            with pytest.raises(PromotionFailed, match="failed its sandbox check, production untouched"):
                api.promote(MODEL, 2, paths=paths)
            seen = load.total()
            wait_until(lambda: load.total() > seen + 3)
        assert load.failures == [] and load.wrong == []
        assert paths.serving_config.read_bytes() == config
        rec = registry.load(paths).model(MODEL)
        assert rec.stable == 1
        assert rec.history[-1].result == "failed" and "sandbox" in rec.history[-1].detail
        assert states(paths, server.grpc_address) == {1: "AVAILABLE"}
        assert journal.load(paths) is None
    finally:
        server.stop()


KILL_POINTS = [
    "intent:done", "sandbox:done", "load:done", "available:done", "verify:done",
    "label:begin", "label:done", "drop:done", "unloaded:done", "commit:begin",
]


def _kill_and_recover(point: str, home: Path, built: Path) -> None:
    """Kill `mlc promote hpt 2` with SIGKILL right after ``point``; the next command recovers.

    The promote is a child forked from a process that imported TensorFlow once
    (tests/support/forked_cli.py): ten ``python -m lifecycle`` starts would each import it again.
    """
    paths = make_home(home, built, [1, 2], stable=1)
    server = start_server(paths)
    try:
        served(paths, server.grpc_address, f"127.0.0.1:{server.rest_port}")
        with Load(server.grpc_address, threads=1, pause=0.01, allowed={1, 2}) as load:
            env = {"MLC_HOME": str(paths.home), failpoints.ENV: f"journal:{point}"}
            out = forked_cli.run(["promote", MODEL, "2"], env, home / "promote.out", timeout=120)
            assert out.exitcode == -signal.SIGKILL, (point, out.stderr[-2000:])
            pending = journal.load(paths)
            assert pending is not None and pending.last() == point
            assert api.status(paths=paths).pending_rollout is not None
            # the next mutating command recovers first, then does its own work
            forward = KILL_POINTS.index(point) >= KILL_POINTS.index("label:done")
            result = api.promote(MODEL, 2, paths=paths, timeout=30)
            assert len(result.recovered) == 1
            assert ("completed it" if forward else "reverted it") in result.recovered[0], (point, result.recovered)
            assert result.result == ("noop" if forward else "ok"), point
            events = registry.load(paths).model(MODEL).history
            assert events[1].result == ("recovered" if forward else "reverted"), point
            assert "by recovery" in events[1].detail
            load.allow({2})
            wait_until(lambda: states(paths, server.grpc_address).get(1) in (None, "END"), what="1 unloaded")
            status = api.status(paths=paths)
            assert status.pending_rollout is None
            assert status.models[0].drift == [] and status.models[0].stable == 2
            if forward:  # the status shows the recovery as the last rollout
                assert any("by recovery" in w for w in status.models[0].warnings)
        assert load.failures == [] and load.wrong == [], point
    finally:
        server.stop()


def test_sigkill_after_each_journal_step_is_recovered(tmp_path: Path, built: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {
            point: pool.submit(_kill_and_recover, point, tmp_path / point.replace(":", "-"), built)
            for point in KILL_POINTS
        }
    errors = {point: f.exception() for point, f in futures.items() if f.exception() is not None}
    assert not errors, errors


def _kill_when(paths: Paths, pid: int, step: str) -> threading.Thread:
    """A thread that SIGKILLs ``pid`` as soon as the rollout journal records ``step``."""

    def run() -> None:
        def reached() -> bool:
            j = journal.load(paths)
            return j is not None and j.last() == step

        wait_until(reached, timeout=120, what=step, ignore=(LifecycleError, OSError))  # read between writes: again
        os.kill(pid, signal.SIGKILL)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_fleet_of_three_with_one_killed_mid_promote_reverts_all(
    tmp_path: Path, built: Path, python: str, subprocess_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = make_home(tmp_path, built, [1, 2], stable=1)
    ports = free_ports(6)
    specs = [fleet.ServerSpec(f"127.0.0.1:{ports[i]}", f"127.0.0.1:{ports[i + 3]}") for i in range(3)]
    fleet.write_servers_file(paths, specs)
    for k, v in subprocess_env.items():
        monkeypatch.setenv(k, v)
    result = api.serve(engine="embedded", detach=True, paths=paths, timeout=120)
    try:
        assert [s.grpc for s in result.servers] == [s.grpc for s in specs]
        config = paths.serving_config.read_bytes()

        # 1. A replica dies while the candidate loads: the other two go back to stable 1.
        monkeypatch.setenv(failpoints.ENV, "journal:sandbox:done=pause:1")  # mlc waits there while the test kills
        killer = _kill_when(paths, result.servers[1].pid, "sandbox:done")
        with Load(specs[0].grpc, allowed={1}) as load:
            with pytest.raises(PromotionFailed, match="reverted, stable 1 serves again"):
                api.promote(MODEL, 2, paths=paths, timeout=30)
        killer.join()
        assert load.failures == [] and load.wrong == []
        assert paths.serving_config.read_bytes() == config
        for spec in (specs[0], specs[2]):
            wait_until(lambda spec=spec: states(paths, spec.grpc).get(2) in (None, "END"), what="candidate unloaded")
            assert states(paths, spec.grpc)[1] == "AVAILABLE"
        rec = registry.load(paths).model(MODEL)
        assert rec.stable == 1 and rec.history[-1].result == "reverted"
        st = json.loads(runner.invoke(app, ["status", "--json"], env={"MLC_HOME": str(paths.home)}).output)
        assert st["servers"][specs[1].grpc].startswith("unreachable")
        assert f"server 127.0.0.1:{ports[1]} is unreachable" in st["models"][0]["drift"]

        # 2. `mlc serve` restarts the missing replica; then one dies after the label moved
        #    everywhere: the others go back through {1, 2} to stable 1 (labels stay on AVAILABLE versions).
        restarted = api.serve(engine="embedded", detach=True, paths=paths, timeout=120)
        assert [s.grpc for s in restarted.servers] == [specs[1].grpc]
        assert states(paths, specs[1].grpc) == {1: "AVAILABLE"}
        monkeypatch.setenv(failpoints.ENV, "journal:label:done=pause:1")
        killer = _kill_when(paths, result.servers[2].pid, "label:done")
        with Load(specs[0].grpc, allowed={1, 2}) as load:
            with pytest.raises(PromotionFailed, match="failed at step 'drop'"):
                api.promote(MODEL, 2, paths=paths, timeout=30)
        killer.join()
        assert load.failures == [] and load.wrong == []
        assert paths.serving_config.read_bytes() == config
        for spec in specs[:2]:
            wait_until(lambda spec=spec: states(paths, spec.grpc).get(2) in (None, "END"), what="candidate unloaded")
            assert states(paths, spec.grpc)[1] == "AVAILABLE"
        assert registry.load(paths).model(MODEL).stable == 1
    finally:
        stopped = api.stop(paths=paths)
    assert len(stopped.stopped) == 2  # the killed ones were not running any more
    assert fleet.read_records(paths) == []


def test_foreground_serve_in_poll_mode_promotes_through_the_file(
    tmp_path: Path, built: Path, python: str, subprocess_env: dict[str, str]
) -> None:
    """`mlc serve --reload poll` in the foreground: promote writes the file, the server polls it; Ctrl-C stops."""
    paths = make_home(tmp_path, built, [1, 2], stable=1)
    grpc_port, rest_port = free_ports(2)
    serve = start_mlc(python, ["serve", "--engine", "embedded", "--reload", "poll", "--grpc-port", str(grpc_port),
                               "--rest-port", str(rest_port)], dict(subprocess_env, MLC_HOME=str(paths.home)))
    try:
        f = fleet.load(paths)
        assert f.source == "mlc serve records" and f.servers[0].reload == "poll"
        address = f.servers[0].grpc
        with Load(address, allowed={1, 2}) as load:
            result = api.promote(MODEL, 2, paths=paths, timeout=60)
            assert result.result == "ok"
            load.allow({2})
            seen = load.total()
            wait_until(lambda: load.total() > seen + 3)
        assert load.failures == [] and load.wrong == []
        assert states(paths, address) == {1: "END", 2: "AVAILABLE"}
    finally:
        serve.process.send_signal(signal.SIGINT)
        serve.process.wait(timeout=60)
    assert fleet.read_records(paths) == []


def test_concurrent_promotes_compare_and_swap(tmp_path: Path, built: Path, subprocess_env: dict[str, str]) -> None:
    """Two promotes at once, both expecting stable 1: the lock serialises them, exactly one wins."""
    from concurrent.futures import ThreadPoolExecutor

    from lifecycle.errors import FailedPrecondition

    paths = make_home(tmp_path, built, [1, 2, 3], stable=1)
    server = start_server(paths)
    try:
        served(paths, server.grpc_address, f"127.0.0.1:{server.rest_port}")
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = [pool.submit(api.promote, MODEL, v, expect_current=1, paths=paths) for v in (2, 3)]
        outcomes = [f.exception() for f in futures]
        assert sum(e is None for e in outcomes) == 1
        loser = next(e for e in outcomes if e is not None)
        assert isinstance(loser, FailedPrecondition) and "(--expect-current)" in loser.message
        winner = 2 if outcomes[0] is None else 3
        assert registry.load(paths).model(MODEL).stable == winner
        assert states(paths, server.grpc_address) == {1: "END", winner: "AVAILABLE"}

        # status with a live server reads it over REST without importing TensorFlow
        printed = assert_no_tensorflow([["status", "--json"]], dict(subprocess_env, MLC_HOME=str(paths.home)))
        assert f'"{server.grpc_address}": "ok"' in printed and '"AVAILABLE"' in printed
    finally:
        server.stop()
