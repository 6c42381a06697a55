"""`mlc serve` driving its server child: the tfserving engine (through a stand-in
tensorflow_model_server that takes only TF Serving's flags), a foreground serve killed with
SIGKILL (its child must not outlive it), and ports outside 0-65535.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from lifecycle import api
from lifecycle.serving import fleet
from lifecycle.store.config import Paths
from tests.support import tfserving_standin
from tests.support.foreground import start_mlc
from tests.support.polling import wait_until
from tests.support.ports import free_ports
from tests.support.rollout_support import MODEL, build_versions, make_home

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_versions(tmp_path_factory.mktemp("engine_versions"), [1, 2])


def _gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _mlc(python: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([python, "-m", "lifecycle", *args], env=env, capture_output=True, text=True, timeout=300)


def test_standin_takes_only_tf_servings_flags(tmp_path: Path) -> None:
    standin = tfserving_standin.install(tmp_path / "bin")
    for bad in ("--mlc_bind_address=0.0.0.0", "--mlc_max_request_bytes=1", "--port", "--bogus=1", "positional"):
        result = subprocess.run([str(standin), "--port=0", bad], capture_output=True, text=True, timeout=60)
        assert result.returncode == 1 and result.stderr == f"tensorflow_model_server stand-in: unknown argument: {bad}\n"
    assert tfserving_standin.refused(["--port=1", "--enable_batching", "--rest_api_port=2",
                                      "--allow_version_labels_for_unavailable_models=true"]) is None


def test_serve_engine_tfserving_promotes_rolls_back_and_reports(
    tmp_path: Path, built: Path, python: str, subprocess_env: dict[str, str]
) -> None:
    paths = make_home(tmp_path / "home", built, [1, 2], stable=1)
    bin_dir = tmp_path / "bin"
    tfserving_standin.install(bin_dir)
    log = tmp_path / "standin.log"
    env = dict(subprocess_env, MLC_HOME=str(paths.home), PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
               TFSERVING_STANDIN_LOG=str(log))
    grpc_port, rest_port = free_ports(2)
    old_path = os.environ["PATH"]
    os.environ["PATH"] = env["PATH"]  # promote and rollback below run in this process
    try:
        result = _mlc(python, env, "serve", "--engine", "tfserving", "--detach",
                      "--grpc-port", str(grpc_port), "--rest-port", str(rest_port))
        assert result.returncode == 0, result.stderr
        (record,) = fleet.read_records(paths)
        assert record.engine == "tfserving" and Path(record.command[0]) == bin_dir / "tensorflow_model_server"
        assert tfserving_standin.refused(record.command[1:]) is None  # only TF Serving's flags
        assert log.read_text().count("--port=") == 1
        # The stand-in binds every interface, as tensorflow_model_server binds gRPC.
        assert f"0.0.0.0:{grpc_port}" in Path(record.log).read_text()

        assert api.promote(MODEL, 2, paths=paths, timeout=120).result == "ok"
        report = api.status(MODEL, paths=paths)
        versions = {v.version: v for v in report.models[0].versions}
        assert report.models[0].stable == 2 and versions[2].servers == {record.grpc: "AVAILABLE"}
        assert api.rollback(MODEL, paths=paths, timeout=120).result == "ok"
        report = api.status(MODEL, paths=paths)
        assert report.models[0].stable == 1 and report.models[0].drift == []
    finally:
        os.environ["PATH"] = old_path
        api.stop(paths=paths)
    assert fleet.read_records(paths) == []


def test_foreground_serve_killed_with_sigkill_takes_its_server_down(
    tmp_path: Path, built: Path, python: str, subprocess_env: dict[str, str]
) -> None:
    paths: Paths = make_home(tmp_path / "home", built, [1], stable=1)
    env = dict(subprocess_env, MLC_HOME=str(paths.home))
    grpc_port, rest_port = free_ports(2)
    serve = start_mlc(python, ["serve", "--engine", "embedded", "--grpc-port", str(grpc_port), "--rest-port",
                               str(rest_port)], env, timeout=180).process
    try:
        (record,) = fleet.read_records(paths)
        assert not _gone(record.pid)
        serve.send_signal(signal.SIGKILL)
        serve.wait(30)
        wait_until(lambda: _gone(record.pid), timeout=60)  # PR_SET_PDEATHSIG: SIGTERM to the child
        assert fleet.live_records(paths) == []
        # The next `mlc serve` starts instead of saying that a server started by mlc already runs.
        again = _mlc(python, env, "serve", "--engine", "embedded", "--detach",
                     "--grpc-port", str(grpc_port), "--rest-port", str(rest_port))
        assert again.returncode == 0, again.stderr
    finally:
        if serve.poll() is None:
            serve.kill()
        api.stop(paths=paths)


@pytest.mark.parametrize("flag", ["--grpc-port", "--rest-port"])
def test_serve_refuses_ports_outside_0_65535(tmp_path: Path, python: str, subprocess_env: dict[str, str], flag: str) -> None:
    result = _mlc(python, dict(subprocess_env, MLC_HOME=str(tmp_path)), "serve", flag, "99999")
    assert result.returncode == 2
    assert f"Invalid value for '{flag}'" in result.stderr and "65535" in result.stderr
    assert not (tmp_path / "configs").exists()  # nothing written
