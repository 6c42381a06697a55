"""Long commands show their steps on a terminal's stderr (never in a pipe or under --json), and
`mlc serve` finds a busy port before it imports TensorFlow or starts a server."""

from __future__ import annotations

import socket
import subprocess

import pytest

from lifecycle import api, progress
from lifecycle.store.config import Paths
from tests.cli.test_homes import _on_a_terminal


def test_api_calls_report_their_steps_to_a_listener(served_home: Paths) -> None:
    heard: list[str] = []
    with progress.listening(heard.append):
        api.gc(dry_run=True, paths=served_home)
    assert heard == ["reading the registry, the config and what the servers hold"]
    api.gc(dry_run=True, paths=served_home)  # nobody listens: nothing to hear, nothing fails
    assert len(heard) == 1


def test_the_status_line_is_on_a_terminal_only_and_never_under_json(
        served_home: Paths, python: str, subprocess_env: dict[str, str]) -> None:
    env = dict(subprocess_env, MLC_HOME=str(served_home.home))
    code, out, err = _on_a_terminal(python, env, served_home.home, "gc", "--dry-run")
    assert code == 0, err
    assert "mlc gc: reading the registry, the config and what the servers hold" in err
    assert "0:00:0" in err  # the elapsed time
    assert "would delete" not in err and "kept" in out  # the result stays on stdout
    code, out, err = _on_a_terminal(python, env, served_home.home, "gc", "--dry-run", "--json")
    assert code == 0 and "reading the registry" not in err
    piped = subprocess.run([python, "-m", "lifecycle", "gc", "--dry-run"], env=env, capture_output=True, text=True,
                           timeout=60, check=False)
    assert piped.returncode == 0 and piped.stderr == ""


@pytest.mark.parametrize("which", ["--grpc-port", "--rest-port"])
def test_serve_on_a_busy_port_is_one_line_before_tensorflow(
        which: str, served_home: Paths, python: str, subprocess_env: dict[str, str]) -> None:
    script = (
        "import sys\n"
        "from lifecycle.cli import main\n"
        "sys.argv = ['mlc', *sys.argv[1:]]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
        "print('tensorflow imported' if 'tensorflow' in sys.modules else 'no tensorflow', code)\n"
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        other = "--rest-port" if which == "--grpc-port" else "--grpc-port"
        done = subprocess.run([python, "-c", script, "serve", which, str(port), other, "0"], capture_output=True,
                              text=True, env=dict(subprocess_env, MLC_HOME=str(served_home.home)), timeout=120,
                              check=False)
    assert done.stdout.strip() == "no tensorflow 1", done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    what = "gRPC" if which == "--grpc-port" else "REST"
    assert line.startswith(f"Error: {what} port 127.0.0.1:{port} is in use by another program") and which in line
    assert not list(served_home.state_dir.glob("servers/*"))  # no server was started or recorded
