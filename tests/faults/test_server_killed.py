"""The embedded server is SIGKILLed while a promote waits for the candidate to become AVAILABLE
(the promote is held at the start of that wait by a failpoint). The promote fails and
reverts; status shows the server gone and the reverted event; `mlc serve` brings the server back
on the recorded config (stable 1), and status shows it in sync again."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from lifecycle.serving import fleet
from lifecycle.serving.replicas import observe
from lifecycle.serving.tfs_config import ModelServing
from lifecycle.store import registry
from tests.support.faults import FAULT_PAUSE_S, Mlc, child_env, one_line, report_load, run_mlc
from tests.support.polling import wait_until
from tests.support.ports import free_ports
from tests.support.rollout_support import MODEL, Load, make_home

pytestmark = pytest.mark.e2e


def test_server_killed_while_a_promote_waits_for_available(
    tmp_path: Path, built: Path, subprocess_env: dict[str, str], record_property: Any,
) -> None:
    paths = make_home(tmp_path / "home", built, [1, 2], stable=1)
    env = child_env(subprocess_env, paths)
    grpc_port, rest_port = free_ports(2)
    serve_args = ("serve", "--detach", "--engine", "embedded", "--grpc-port", str(grpc_port), "--rest-port", str(rest_port))
    code, out, err = run_mlc(env, *serve_args)
    assert code == 0, out + err
    grpc = f"127.0.0.1:{grpc_port}"
    try:
        with Load(grpc, allowed={1}, pause=0.02) as load:
            wait_until(lambda: load.total() > 3, 30, "first answers")
            promote = Mlc(env, tmp_path / "points.log").start(
                "promote", MODEL, "2", "--timeout", "60", points=f"journal:available:begin=pause:{FAULT_PAUSE_S}")
            promote.reached("journal:available:begin")  # version 2 pushed, the wait for AVAILABLE begins
            (record,) = fleet.read_records(paths)
            os.kill(record.pid, signal.SIGKILL)
            promote.release()
            code = promote.wait()
            line = one_line(promote.err)
            assert code == 1, promote.out + promote.err
            assert "failed at step 'available'" in line and "reverted" in line, line
            rec = registry.load(paths).model(MODEL)
            assert rec.stable == 1 and rec.history[-1].result == "reverted"
            # status tells the story: the server is gone, the promote was reverted.
            code, out, err = run_mlc(env, "status", MODEL, "--json")
            report = json.loads(out)
            assert any(f"started on {grpc}" in w and "not running any more" in w for w in report["warnings"]), report
            code, out, err = run_mlc(env, "history", MODEL)
            assert "reverted" in out, out + err
            # A supervisor runs `mlc serve` again: the server comes back on the recorded config.
            code, out, err = run_mlc(env, *serve_args)
            assert code == 0, out + err
            spec = next(s for s in fleet.load(paths).servers if s.grpc == grpc)
            assert observe(spec, [MODEL]) == {MODEL: ModelServing((1,), {"stable": 1})}
            before = load.total()
            wait_until(lambda: load.total() > before + 3, 30, "answers from the restarted server")
            code, out, err = run_mlc(env, "status", MODEL, "--json")
            report = json.loads(out)
            assert report["servers"][grpc] == "ok" and report["models"][0]["drift"] == [], report
        counted = report_load(record_property, load)
    finally:
        run_mlc(env, "stop")
    # The server itself was killed: its requests fail until it is back (reported, not asserted 0).
    assert counted.requests > 0 and load.wrong == []
