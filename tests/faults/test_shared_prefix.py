"""Two homes share one S3 prefix: a promote on one and a rollback on the other at the same moment
(the rollback has read the history while the promote holds the registry lease). Exactly one
wins; the other exits with a stale-generation error naming the winner's event; no history event
is lost; the one server both drive answers every label-addressed request."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from lifecycle import api
from lifecycle.serving import fleet
from lifecycle.store import registry
from lifecycle.store.config import Paths
from tests.support.faults import FAULT_PAUSE_S, Mlc, child_env, one_line, report_load, serve
from tests.support.rollout_support import MODEL, Load, make_home

pytestmark = pytest.mark.e2e
# Long enough that the promote's renewals survive its TensorFlow import (which holds the GIL for
# seconds on a busy machine); the rollback waits for the promote to release the lease.
LEASE_TTL = "60"


def test_promote_and_rollback_from_two_homes_at_once(
    tmp_path: Path, built: Path, remote: dict[str, str], subprocess_env: dict[str, str], record_property: Any,
) -> None:
    first = make_home(tmp_path / "first", built, [1, 2, 3], stable=1)
    server = serve(first)
    second = Paths((tmp_path / "second").resolve())
    second.configs.mkdir(parents=True)
    shutil.copy2(first.definition_file(MODEL), second.definition_file(MODEL))
    fleet.write_servers_file(second, fleet.load(first).servers)
    try:
        assert api.promote(MODEL, 2, paths=first, timeout=60).result == "ok"
        events_before = [(e.action, e.to_version, e.result) for e in registry.load(first).model(MODEL).history]
        with Load(server.grpc_address, allowed={1, 2, 3}) as load:
            promote = Mlc(child_env(subprocess_env, first, MLC_S3_LEASE_TTL=LEASE_TTL), tmp_path / "promote.log").start(
                "promote", MODEL, "3", "--timeout", "60", points=f"journal:intent:done=pause:{FAULT_PAUSE_S}")
            promote.reached("journal:intent:done")  # holds the registry lease, nothing moved yet
            rollback = Mlc(child_env(subprocess_env, second, MLC_S3_LEASE_TTL=LEASE_TTL), tmp_path / "rollback.log").start(
                "rollback", MODEL, "--timeout", "60", points="rollout:seen=pause:0")
            rollback.reached("rollout:seen")  # decided on stable 2, about to wait for the lease
            promote.release()
            assert promote.wait() == 0, promote.out + promote.err
            code = rollback.wait()
        counted = report_load(record_property, load)
    finally:
        server.stop()
    history = registry.load(second).model(MODEL).history
    winner = history[-1]
    assert (winner.action, winner.to_version, winner.result) == ("promote", 3, "ok")
    line = one_line(rollback.err)
    assert code == 1, rollback.out + rollback.err
    assert "changed while this rollback waited" in line and f"journal {winner.journal}" in line, line
    assert "promote 2 -> 3" in line, line
    assert [(e.action, e.to_version, e.result) for e in history] == [*events_before, ("promote", 3, "ok")]
    assert registry.load(first).model(MODEL).stable == 3
    assert counted.requests > 0 and counted.failed == [] and load.wrong == []
