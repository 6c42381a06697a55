"""The mission's commands as a user types them, in an mlc home: train a small DeepLab run, register
four checkpoints (the last as ``mlc register ckpt/16645``), serve, then ``mlc promote deeplab 4``,
``mlc rollback deeplab`` and ``mlc status``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.ports import free_ports


def mlc(home: Path, env: dict[str, str], command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``command`` (a line as a user types it, starting with ``mlc``) in ``home``."""
    argv = command.split()
    assert argv[0] == "mlc"
    script = Path(sys.executable).with_name("mlc")
    prefix = [str(script)] if script.exists() else [sys.executable, "-m", "lifecycle"]
    return subprocess.run(prefix + argv[1:], cwd=home, env=env, capture_output=True, text=True, timeout=timeout)


def run_the_mission(home: Path, env: dict[str, str], train: str) -> str:
    """``train`` (the home's own train line), the four mission commands as typed; ``mlc status``'s output."""

    def ok(command: str) -> str:
        result = mlc(home, env, command)
        assert result.returncode == 0, f"{command}: {result.stderr}"
        return result.stdout

    ok(f"{train} ckpt/16645 --steps 8 --save-every 2")
    for step in (2, 4, 6):
        ok(f"mlc register ckpt/16645/ckpt-{step}")
    assert "as deeplab version 4" in ok("mlc register ckpt/16645")  # the mission's command, as typed
    grpc_port, rest_port = free_ports(2)  # just before serve: other tests take ports meanwhile
    ok(f"mlc serve --detach --grpc-port {grpc_port} --rest-port {rest_port}")
    try:
        ok("mlc promote deeplab 3")
        ok("mlc promote deeplab 4")
        ok("mlc rollback deeplab")
        status = ok("mlc status")
        assert "stable: 3" in status, status
        return status
    finally:
        mlc(home, env, "mlc stop")
