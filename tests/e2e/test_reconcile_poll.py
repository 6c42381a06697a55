"""``mlc reconcile`` on replicas that poll configs/models.config (``reload: poll``).

Such a replica takes no ReloadConfig: it re-reads the file every poll interval. Reconcile must
tell it through the file (versions first, labels once they are AVAILABLE), and report it
reconciled only once it serves exactly the recorded state, or say it did not pick the file up.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lifecycle import api
from lifecycle.serving import fleet, replicas, tfs_config
from lifecycle.serving.tfs_config import ModelServing
from lifecycle.store import registry
from tests.support.rollout_support import MODEL, build_versions, make_home, start_server

pytestmark = pytest.mark.e2e


def test_reconcile_waits_until_a_polling_replica_serves_the_recorded_state(tmp_path: Path) -> None:
    built = build_versions(tmp_path / "built", [1, 2])
    paths = make_home(tmp_path / "home", built, [1, 2], stable=1)
    server = start_server(paths, poll_seconds=1)  # polls configs/models.config: {1, stable=1}
    try:
        rest = f"127.0.0.1:{server.rest_port}"
        (paths.configs / "servers.yaml").write_text(f"reload: poll\nservers:\n  - {{grpc: '{server.grpc_address}', rest: '{rest}'}}\n")
        spec = fleet.load(paths).servers[0]
        with registry.transaction(paths) as reg:  # the recorded state moves on; the file does not yet
            reg.model(MODEL).stable = 2
        result = api.reconcile(paths=paths)
        [replica] = result.replicas
        assert replica.error is None and replica.via == "poll"
        assert replica.changes == [f"{MODEL}: loaded version(s) [2]", f"{MODEL}: unloaded version(s) [1]",
                                   f"{MODEL}: label stable: 1 -> 2"]
        # Reconcile returned only once the replica had read the file: it serves the state now.
        assert replicas.observe(spec, [MODEL]) == {MODEL: ModelServing((2,), {"stable": 2})}
        assert tfs_config.read(paths) == {MODEL: ModelServing((2,), {"stable": 2})}
        assert api.reconcile(paths=paths).replicas[0].changes == []  # in sync now
    finally:
        server.stop()


def test_a_polling_replica_that_never_reads_the_file_is_reported(tmp_path: Path) -> None:
    built = build_versions(tmp_path / "built", [1, 2])
    paths = make_home(tmp_path / "home", built, [1, 2], stable=1)
    elsewhere = tmp_path / "other" / "home"  # a replica polling another copy of the file
    other = make_home(elsewhere, built, [1, 2], stable=1)
    server = start_server(other, poll_seconds=1)
    try:
        rest = f"127.0.0.1:{server.rest_port}"
        (paths.configs / "servers.yaml").write_text(f"reload: poll\nservers:\n  - {{grpc: '{server.grpc_address}', rest: '{rest}'}}\n")
        with registry.transaction(paths) as reg:
            reg.model(MODEL).stable = 2
        result = api.reconcile(paths=paths, replica_timeout=3)
        [replica] = result.replicas
        assert replica.changes == [] and replica.error is not None
        assert "did not pick up configs/models.config in time" in replica.error, replica.error
        assert "replica timeout 3 s" in replica.error and "version(s) 2 AVAILABLE" in replica.error, replica.error
        # The file still ends on the recorded state, for when the replica does read it.
        assert tfs_config.read(paths) == {MODEL: ModelServing((2,), {"stable": 2})}
    finally:
        server.stop()
