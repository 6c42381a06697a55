"""Per-replica deadlines: three real mlc-model-servers, one of them slow to load the candidate.

The slow replica is made slow by a failpoint in its own environment
(``MLC_FAILPOINTS=server:load:hpt:2=pause:S``): it really is LOADING version 2 while the others
have it AVAILABLE. A promote with ``--replica-timeout`` must fail once that replica's own
deadline has passed, name it in one line, and revert every replica; the rollout's much longer
``--timeout`` must not be waited out. Proof without timing: when the promote has returned, the
slow replica still reports version 2 LOADING (its load pauses far longer than the rollout may).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lifecycle import api
from lifecycle.cli import app
from lifecycle.serving import fleet, tfs_config
from lifecycle.serving.client import rest_model_status
from lifecycle.serving.replicas import observe
from lifecycle.serving.tfs_config import ModelServing
from lifecycle.store import registry
from lifecycle.store.config import Paths
from tests.support.polling import wait_until
from tests.support.ports import free_ports
from tests.support.rollout_support import MODEL, build_versions, make_home

pytestmark = pytest.mark.e2e
runner = CliRunner()
SLOW_PAUSE_S = 600  # far beyond anything the test waits for; the processes are killed at the end


@dataclass
class Replica:
    grpc: str
    rest: str
    stop: Callable[[], object]

    def state(self, version: int) -> str | None:
        s = rest_model_status(self.rest, MODEL, timeout=5).get(version)
        return None if s is None else s.state

    def stable(self) -> int | None:
        try:
            return max(rest_model_status(self.rest, MODEL, timeout=5, label="stable"))
        except Exception:  # noqa: BLE001 - the label is not set
            return None


@pytest.fixture
def fleet3(tmp_path: Path, subprocess_env: dict[str, str]) -> Iterator[tuple[Paths, list[Replica]]]:
    """Three replicas on 127.0.0.1 serving stable 1; the last one loads version 2 very slowly.

    The two prompt replicas are in-process servers; the slow one is an ``mlc-model-server``
    process, so that only its environment holds the failpoint that stalls its load.
    """
    from lifecycle.server import ServerOptions, create_server

    built = build_versions(tmp_path / "built", [1, 2])
    paths = make_home(tmp_path / "home", built, [1, 2], stable=1)
    startup = tmp_path / "startup.config"  # versions only: labels may point only at AVAILABLE versions
    startup.write_text(tfs_config.render(tfs_config.build(paths, {MODEL: ModelServing((1,), {})})))
    replicas: list[Replica] = []
    try:
        for _ in range(2):
            server = create_server(ServerOptions(grpc_port=0, rest_api_port=0, model_config_file=str(startup),
                                                 max_num_load_retries=0))
            replicas.append(Replica(server.grpc_address, f"127.0.0.1:{server.rest_port}", server.stop))
        grpc_port, rest_port = free_ports(2)
        env = dict(subprocess_env, MLC_FAILPOINTS=f"server:load:{MODEL}:2=pause:{SLOW_PAUSE_S}")
        proc = subprocess.Popen(
            [sys.executable, "-m", "lifecycle.server.main", f"--port={grpc_port}", f"--rest_api_port={rest_port}",
             f"--model_config_file={startup}", "--max_num_load_retries=0"],
            env=env, stdout=(tmp_path / "r2.log").open("wb"), stderr=subprocess.STDOUT,
        )

        def stop_slow(proc: subprocess.Popen[bytes] = proc) -> int:
            proc.kill()
            return proc.wait(timeout=30)

        replicas.append(Replica(f"127.0.0.1:{grpc_port}", f"127.0.0.1:{rest_port}", stop_slow))
        # servers.yaml gives every replica a generous deadline; --replica-timeout overrides it.
        (paths.configs / "servers.yaml").write_text(
            "replica_timeout: 900\nservers:\n" + "".join(f"  - {{grpc: '{r.grpc}', rest: '{r.rest}'}}\n" for r in replicas)
        )
        for r in replicas:
            wait_until(lambda r=r: _quiet(lambda: r.state(1)) == "AVAILABLE", 120, f"{r.grpc} to serve version 1")
        assert not api.reconcile(paths=paths).failed  # the stable label, now that 1 is AVAILABLE
        yield paths, replicas
    finally:
        for r in replicas:
            r.stop()


def _quiet(fn):  # noqa: ANN001, ANN202 - a probe that may fail while a server starts
    try:
        return fn()
    except Exception:  # noqa: BLE001
        return None


def test_a_replica_that_misses_its_own_deadline_is_named_and_everything_reverts(fleet3: tuple[Paths, list[Replica]]) -> None:
    paths, replicas = fleet3
    slow, fast = replicas[2], replicas[:2]
    result = runner.invoke(app, ["promote", MODEL, "2", "--replica-timeout", "5", "--timeout", "900"],
                           env={"MLC_HOME": str(paths.home)})
    assert result.exit_code == 1, result.output
    line = result.stderr.strip()
    assert "\n" not in line, line
    assert f"server {slow.grpc} missed its replica deadline (5 s)" in line, line
    assert "2 LOADING" in line and "reverted, stable 1 serves again" in line, line
    assert not any(r.grpc in line for r in fast), line
    # Not held hostage: the promote gave up and reverted while the slow load still runs.
    assert slow.state(2) == "LOADING"
    for r in replicas:
        assert r.stable() == 1, r.grpc
    for r in fast:
        wait_until(lambda r=r: r.state(2) in ("END", None), 60, f"{r.grpc} to unload version 2 after the revert")
    rec = registry.load(paths).model(MODEL)
    assert rec.stable == 1
    assert rec.history[-1].result == "reverted" and slow.grpc in rec.history[-1].detail


def test_a_polling_replica_slow_to_take_the_new_label_misses_its_own_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A replica in poll mode gets the new label through the file; one that applies it late
    (``server:label:hpt:stable:2=pause:S``, S far beyond its replica timeout but well within the
    rollout's) must fail the promote at its own deadline, not hold it until it catches up."""
    from lifecycle import failpoints
    from tests.support.rollout_support import start_server

    built = build_versions(tmp_path / "built", [1, 2])
    paths = make_home(tmp_path / "home", built, [1, 2], stable=1)
    server = start_server(paths, poll_seconds=1)  # polls configs/models.config: {1, stable=1}
    try:
        rest = f"127.0.0.1:{server.rest_port}"
        (paths.configs / "servers.yaml").write_text(
            f"reload: poll\nreplica_timeout: 6\nservers:\n  - {{grpc: '{server.grpc_address}', rest: '{rest}'}}\n")
        log = tmp_path / "failpoints.log"
        monkeypatch.setenv(failpoints.ENV, f"server:label:{MODEL}:stable:2=pause:15")
        monkeypatch.setenv(failpoints.LOG_ENV, str(log))
        result = runner.invoke(app, ["promote", MODEL, "2", "--timeout", "120"], env={"MLC_HOME": str(paths.home)})
        # The promote is over (failed at the 6 s deadline, reverted): the replica's pause ends now,
        # not at 15 s.
        Path(f"{log}.release").touch()
        assert result.exit_code == 1, result.output
        line = result.stderr.strip()
        assert "\n" not in line, line
        assert f"server {server.grpc_address} missed its replica deadline (6 s) waiting for label 'stable'" in line, line
        assert registry.load(paths).model(MODEL).stable == 1
        # Once its pause is over, the replica reads the reverted file and serves the recorded state.
        spec = fleet.load(paths).servers[0]
        wait_until(lambda: _quiet(lambda: observe(spec, [MODEL])) == {MODEL: ModelServing((1,), {"stable": 1})},
                   60, "the replica to serve the reverted state")
    finally:
        server.stop()
