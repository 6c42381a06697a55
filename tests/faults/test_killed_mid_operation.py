"""mlc itself is SIGKILLed mid-operation (at a failpoint: no clean-up runs, like a power cut for
what it wrote): during gc's deletions, during sync's download, and between the steps of
``mlc rollout``. The next command reports the interrupted operation, and one command finishes it.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from lifecycle.serving import traffic
from lifecycle.store import journal, registry
from tests.support.faults import Mlc, child_env, report_load, run_mlc, serve
from tests.support.progressive_support import DefaultRoute, build, home, loaded, splits, stable_clients, start_servers
from tests.support.rollout_support import MODEL, Load, make_home

pytestmark = pytest.mark.e2e


def test_mlc_killed_during_gc(tmp_path: Path, built: Path, subprocess_env: dict[str, str], record_property: Any) -> None:
    paths = make_home(tmp_path / "home", built, [1, 2, 3, 4], stable=4)
    server = serve(paths)
    env = child_env(subprocess_env, paths)
    try:
        with Load(server.grpc_address, allowed={4}) as load:
            mlc = Mlc(env, tmp_path / "points.log").start("gc", MODEL, "--keep", "1", points="gc:deleted=kill")
            assert mlc.wait() == -signal.SIGKILL, mlc.err
            assert paths.store.version_numbers(MODEL) == [2, 3, 4]  # 1 went, nothing recorded
            code, out, err = run_mlc(env, "status", MODEL)
            assert code == 0 and "an interrupted mlc gc is pending" in out + err, out + err
            code, out, err = run_mlc(env, "gc", MODEL, "--keep", "1")
            assert code == 0, out + err
            assert out.startswith("finished an interrupted mlc gc") and "deleting hpt/1, hpt/2, hpt/3" in out, out
        counted = report_load(record_property, load)
    finally:
        server.stop()
    rec = registry.load(paths).model(MODEL)
    assert paths.store.version_numbers(MODEL) == [4] and [v.version for v in rec.versions] == [4]
    assert sorted(e.from_version or 0 for e in rec.history if e.action == "gc") == [1, 2, 3]
    code, out, err = run_mlc(env, "status", MODEL)
    assert "interrupted mlc gc" not in out + err, out + err
    assert counted.requests > 0 and counted.failed == [] and load.wrong == []


def test_mlc_killed_during_sync(tmp_path: Path, built: Path, subprocess_env: dict[str, str], record_property: Any) -> None:
    paths = make_home(tmp_path / "home", built, [1, 2], stable=1)
    server = serve(paths)
    env = child_env(subprocess_env, paths)
    folder = tmp_path / "replica-disk"
    try:
        with Load(server.grpc_address, allowed={1}) as load:
            mlc = Mlc(env, tmp_path / "points.log").start("sync", "--to", str(folder), points="store:copy=kill")
            assert mlc.wait() == -signal.SIGKILL, mlc.err
            left = sorted(p.name for p in (folder / MODEL).iterdir())
            assert not (folder / MODEL / "1").exists() and any(n.startswith(".incoming-1-") for n in left), left
            code, out, err = run_mlc(env, "sync", "--to", str(folder))
            assert code == 0, out + err
            assert "the copy of an interrupted sync" in out and "copied hpt/1" in out, out
        counted = report_load(record_property, load)
    finally:
        server.stop()
    assert sorted(p.name for p in (folder / MODEL).iterdir()) == ["1"]
    assert (folder / "models.config").exists()
    assert counted.requests > 0 and counted.failed == [] and load.wrong == []


@pytest.fixture(scope="module")
def same(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """hpt 1 and 2 answering alike (2 is a good candidate), 3 answering otherwise."""
    return build(tmp_path_factory.mktemp("fault-hpt-same"))


@pytest.mark.parametrize("finish", ["--revert", "--resume"])
def test_mlc_killed_between_rollout_steps(tmp_path: Path, same: Path, subprocess_env: dict[str, str],
                                          monkeypatch: pytest.MonkeyPatch, record_property: Any, finish: str) -> None:
    paths = home(tmp_path / "home", same, monkeypatch)
    servers = start_servers(paths)
    env = child_env(subprocess_env, paths)
    try:
        # the default route gives the candidate its share; the label-addressed clients are the ones counted
        with stable_clients(servers[0]) as load, DefaultRoute(servers[0].grpc_address):
            mlc = Mlc(env, tmp_path / "points.log").start(
                "rollout", MODEL, "2", "--steps", "10%:1s,50%:1s", "--min-requests", "5", "--max-p99-ratio", "1000",
                points="journal:traffic:done=kill")  # killed once the 10% step has passed, before the 50% one
            assert mlc.wait() == -signal.SIGKILL, mlc.err
            assert traffic.Split(1, 2, 0.1).same_weights(splits(paths, servers)[0])  # left in place by the kill
            code, out, err = run_mlc(env, "status", MODEL)
            assert code == 0 and "an interrupted rollout is pending" in out + err, out + err
            assert f"`mlc rollout {MODEL} --resume`" in out + err and f"`mlc rollout {MODEL} --revert`" in out + err
            code, out, err = run_mlc(env, "rollout", MODEL, finish)
            assert code == 0, out + err
        counted = report_load(record_property, load)
        assert splits(paths, servers) == [None] and traffic.read_traffic_file(paths) == {}
        stable = 1 if finish == "--revert" else 2
        assert registry.load(paths).model(MODEL).stable == stable and loaded(servers[0]) == {stable: "AVAILABLE"}
    finally:
        for s in servers:
            s.stop()
    assert journal.load(paths) is None
    code, out, err = run_mlc(env, "status", MODEL)
    assert "interrupted rollout" not in out + err, out + err
    assert counted.requests > 0 and counted.failed == [] and load.wrong == []
