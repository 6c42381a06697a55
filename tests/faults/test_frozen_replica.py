"""One of three replicas is frozen with SIGSTOP during a promote (after the load step pushed the
candidate everywhere): its replica deadline fires, the promote names it and reverts the other
two, which answer every label-addressed request throughout; after SIGCONT, `mlc reconcile`
brings the frozen one to the recorded state."""

from __future__ import annotations

import functools
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from lifecycle.serving import fleet
from lifecycle.serving.replicas import observe
from lifecycle.serving.tfs_config import ModelServing
from lifecycle.store import registry
from tests.support.faults import Mlc, child_env, one_line, run_mlc, start_replicas
from tests.support.polling import wait_until
from tests.support.rollout_support import MODEL, Load, make_home

pytestmark = pytest.mark.e2e


def _serves(spec: fleet.ServerSpec, state: dict[str, ModelServing]) -> bool:
    return observe(spec, [MODEL]) == state


def test_a_frozen_replica_misses_its_deadline_and_reconcile_converges_it(
    tmp_path: Path, built: Path, subprocess_env: dict[str, str], record_property: Any,
) -> None:
    paths = make_home(tmp_path / "home", built, [1, 2], stable=1)
    env = child_env(subprocess_env, paths)
    replicas = start_replicas(paths, tmp_path, subprocess_env)
    frozen, up = replicas[2], replicas[:2]
    try:
        loads = [Load(r.grpc, allowed={1, 2}, pause=0.01) for r in up]
        for load in loads:
            load.__enter__()
        try:
            mlc = Mlc(env, tmp_path / "points.log").start(
                "promote", MODEL, "2", "--replica-timeout", "4", "--timeout", "60", points="journal:load:done=pause:30")
            mlc.reached("journal:load:done")  # every replica was asked to load version 2
            os.kill(frozen.proc.pid, signal.SIGSTOP)
            mlc.release()
            code = mlc.wait()
        finally:
            for load in loads:
                load.__exit__()
        line = one_line(mlc.err)
        assert code == 1, mlc.out + mlc.err
        # Named by either of its addresses: its status poll (REST) times out, or its deadline passes.
        named = (f"server {frozen.grpc} missed its replica deadline (4 s)" in line
                 or f"server {frozen.rest} (REST) is unreachable: timed out" in line)
        assert named and "reverted, stable 1 serves again" in line, line
        assert not any(r.grpc in line or r.rest in line for r in up), line
        rec = registry.load(paths).model(MODEL)
        assert rec.stable == 1 and rec.history[-1].result == "reverted"
        specs = {s.grpc: s for s in fleet.load(paths).servers}
        reverted = {MODEL: ModelServing((1,), {"stable": 1})}
        for r in up:
            spec = specs[r.grpc]
            wait_until(functools.partial(_serves, spec, reverted), 60, f"{r.grpc} to serve the reverted state")
        os.kill(frozen.proc.pid, signal.SIGCONT)
        code, out, err = run_mlc(env, "reconcile", MODEL)
        assert code == 0, out + err
        assert observe(specs[frozen.grpc], [MODEL]) == {MODEL: ModelServing((1,), {"stable": 1})}
        code, out, err = run_mlc(env, "status", MODEL, "--json")
        assert code == 0 and '"drift": []' in out, out + err
    finally:
        for r in replicas:
            os.kill(r.proc.pid, signal.SIGCONT)
            r.proc.kill()
            r.proc.wait(timeout=30)
    requests = sum(load.total() + len(load.failures) for load in loads)
    failed = [f for load in loads for f in load.failures]
    record_property("requests", requests)
    record_property("failed_requests", len(failed))
    assert requests > 0 and failed == [] and all(load.wrong == [] for load in loads)
