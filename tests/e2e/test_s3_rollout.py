"""Promote and roll back with the repository in object storage (a real SeaweedFS).

The versions are published by one home (a trainer's machine) and served by another, which
copies them from the bucket when it needs them. The rollout journal lives in the bucket too:
a promote killed on one machine is completed from another.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from lifecycle import api, failpoints
from lifecycle.serving import fleet, tfs_config
from lifecycle.serving.client import ServingClient
from lifecycle.store import journal, registry
from lifecycle.store.config import Paths
from lifecycle.store.s3 import S3Store
from tests.support.polling import wait_until
from tests.support.rollout_support import (
    MODEL,
    Load,
    build_versions,
    make_home,
    start_server,
)
from tests.support.seaweed import Seaweed

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """half_plus_two versions 1..3 with warmup records, built once."""
    return build_versions(tmp_path_factory.mktemp("hpt-s3"), [1, 2, 3])


@pytest.fixture
def remote(seaweed: Seaweed, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Every home of this test uses ``s3://<fresh bucket>/shared``; leases expire after 3 s."""
    env = {**seaweed.env(), "MLC_REPOSITORY": f"s3://{s3_bucket}/shared", "MLC_S3_LEASE_TTL": "3"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def other_machine(home: Path, like: Paths) -> Paths:
    """A second home on the same repository: the same model definition, nothing else."""
    paths = Paths(home.resolve())
    paths.configs.mkdir(parents=True)
    shutil.copy2(like.definition_file(MODEL), paths.definition_file(MODEL))
    return paths


def states(address: str) -> dict[int, str]:
    with ServingClient(address) as c:
        return {v: s.state for v, s in c.model_status_grpc(MODEL).items()}


def test_promote_and_rollback_from_a_remote_repository_under_load(
    tmp_path: Path, built: Path, remote: dict[str, str],
) -> None:
    trainer = make_home(tmp_path / "trainer", built, [1, 2, 3], stable=1)
    assert isinstance(trainer.store, S3Store)
    paths = other_machine(tmp_path / "serving", trainer)
    assert not paths.model_dir(MODEL).exists()
    # As `mlc serve` does: building the config copies the versions it names from the bucket.
    serving = tfs_config.served_from_registry(registry.load(paths))
    tfs_config.write(paths, tfs_config.build(paths, serving))
    assert sorted(p.name for p in paths.model_dir(MODEL).iterdir()) == ["1"]
    server = start_server(paths)
    try:
        fleet.write_servers_file(paths, [fleet.ServerSpec(server.grpc_address, f"127.0.0.1:{server.rest_port}")])
        with Load(server.grpc_address, threads=2, allowed={1}) as load:
            wait_until(lambda: load.total() > 5, what="first answers")
            load.allow({1, 2})
            assert api.promote(MODEL, 2, reason="remote", paths=paths, timeout=60).result == "ok"
            load.allow({2})
            wait_until(lambda: states(server.grpc_address).get(1) in (None, "END"), what="1 unloaded")
            load.allow({1, 2})
            assert api.rollback(MODEL, reason="back", paths=paths, timeout=60).result == "ok"
            load.allow({1})
            wait_until(lambda: states(server.grpc_address).get(2) in (None, "END"), what="2 unloaded")
            before = load.total()
            wait_until(lambda: load.total() > before + 5, what="answers after the rollback")
        assert load.failures == [] and load.wrong == []
        assert load.answers.get(2, 0) > 0 and load.answers.get(1, 0) > 0
        # Version 2 was copied on demand, verified; the trainer sees the history the server's machine wrote.
        assert sorted(p.name for p in paths.model_dir(MODEL).iterdir()) == ["1", "2"]
        history = registry.load(trainer).model(MODEL).history
        assert [(e.action, e.to_version, e.result) for e in history[1:]] == [("promote", 2, "ok"), ("rollback", 1, "ok")]
    finally:
        server.stop()


def test_a_promote_killed_on_one_machine_is_completed_from_another(
    tmp_path: Path, built: Path, remote: dict[str, str], python: str, subprocess_env: dict[str, str],
) -> None:
    first = make_home(tmp_path / "first", built, [1, 2], stable=1)
    server = start_server(first)
    second = other_machine(tmp_path / "second", first)
    try:
        spec = fleet.ServerSpec(server.grpc_address, f"127.0.0.1:{server.rest_port}")
        for home in (first, second):  # both machines drive the same server
            fleet.write_servers_file(home, [spec])
        env = {**subprocess_env, **remote, "MLC_HOME": str(first.home), failpoints.ENV: "journal:label:done"}
        killed = subprocess.run([python, "-m", "lifecycle", "promote", MODEL, "2"], env=env,
                                capture_output=True, text=True, timeout=180)
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
        pending = journal.load(second)  # the journal is in the bucket, not on the first machine
        assert pending is not None and pending.last() == "label:done"
        assert api.status(paths=second).pending_rollout is not None
        # The second machine's next mutating command waits for the dead writer's lease, then recovers.
        result = api.promote(MODEL, 2, paths=second, timeout=60)
        assert len(result.recovered) == 1 and "completed it" in result.recovered[0], result.recovered
        assert journal.load(first) is None
        rec = registry.load(first).model(MODEL)
        assert rec.stable == 2 and rec.history[-1].result == "recovered" and "by recovery" in rec.history[-1].detail
        wait_until(lambda: states(server.grpc_address).get(1) in (None, "END"), what="1 unloaded")
        assert states(server.grpc_address)[2] == "AVAILABLE"
    finally:
        server.stop()
