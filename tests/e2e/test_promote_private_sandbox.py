"""End to end: with `mlc serve` running, promote and rollback check the candidate in the
server's private sandbox, so the CLI process imports no TensorFlow, and the candidate is never
visible on the public ports while it is checked."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lifecycle import api, failpoints
from lifecycle.errors import ModelNotFound
from lifecycle.rollout.sandbox import private_sandboxes
from lifecycle.serving.client import ServingClient, rest_model_status
from lifecycle.store import registry
from lifecycle.store.config import Paths
from tests.support.homes import tree_state
from tests.support.no_tensorflow import assert_no_tensorflow
from tests.support.polling import wait_until
from tests.support.ports import free_ports
from tests.support.rollout_support import MODEL, build_versions, make_home

pytestmark = pytest.mark.e2e
MLC = [sys.executable, "-c", "import sys; from lifecycle.cli import main; sys.exit(main())"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """half_plus_two versions 1..3 with warmup records, built once."""
    return build_versions(tmp_path_factory.mktemp("hpt"), [1, 2, 3])


@pytest.fixture
def served(tmp_path: Path, built: Path, subprocess_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Paths]:
    """A home with hpt 1..3 (stable 1) served by `mlc serve --detach` on free ports."""
    paths = make_home(tmp_path / "home", built, [1, 2, 3], stable=1)
    for k, v in subprocess_env.items():
        monkeypatch.setenv(k, v)
    grpc_port, rest_port = free_ports(2)
    api.serve(engine="embedded", detach=True, paths=paths, grpc_port=grpc_port, rest_port=rest_port, timeout=120)
    try:
        yield paths
    finally:
        api.stop(paths=paths)


def _server(paths: Paths) -> tuple[str, str, str]:
    from lifecycle.serving import fleet

    (record,) = fleet.live_records(paths)
    assert record.sandbox and os.stat(Path(record.sandbox).parent).st_mode & 0o777 == 0o700
    return record.grpc, record.rest, record.sandbox


def test_promote_and_rollback_import_no_tensorflow(served: Paths, subprocess_env: dict[str, str]) -> None:
    _, rest, sandbox = _server(served)
    assert private_sandboxes(served) == [sandbox]
    env = dict(subprocess_env, MLC_HOME=str(served.home))
    # Through the console entry point (lifecycle.cli:main), as `mlc promote` runs from a shell.
    assert_no_tensorflow(
        "import sys\nfrom lifecycle.cli import main\n"
        f"for argv in {[['promote', MODEL, '2', '--reason', 'r'], ['rollback', MODEL]]!r}:\n"
        "    sys.argv = ['mlc', *argv]\n"
        "    try:\n        main()\n    except SystemExit as e:\n        assert not e.code, (argv, e.code)\n", env)
    rec = registry.load(served).model(MODEL)
    assert rec.stable == 1
    assert [(e.action, e.from_version, e.to_version, e.result) for e in rec.history[-2:]] == [
        ("promote", 1, 2, "ok"), ("rollback", 2, 1, "ok")]
    assert {v: s.state for v, s in rest_model_status(rest, MODEL).items()} == {1: "AVAILABLE", 2: "END"}
    with ServingClient(f"unix:{sandbox}") as private:  # each check unloaded its candidate
        def emptied() -> bool:
            try:
                return all(s.state == "END" for s in private.model_status_grpc(MODEL).values())
            except ModelNotFound:
                return True

        wait_until(emptied, what="the sandbox empty again")


def test_the_candidate_is_invisible_on_the_public_ports_while_checked(served: Paths, tmp_path: Path) -> None:
    grpc, rest, sandbox = _server(served)
    # The promote pauses with the candidate AVAILABLE in the sandbox until the public ports are read
    # (the test then releases it) or 60 s pass.
    log = tmp_path / "failpoints.log"
    env = dict(os.environ, MLC_HOME=str(served.home),
               **{failpoints.ENV: "sandbox:available=pause:60", failpoints.LOG_ENV: str(log)})
    promote = subprocess.Popen(MLC + ["promote", MODEL, "3"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with ServingClient(f"unix:{sandbox}") as private, ServingClient(grpc, rest) as public:
            def in_sandbox() -> bool:
                try:
                    return private.model_status_grpc(MODEL).get(3) is not None and \
                        private.model_status_grpc(MODEL)[3].state == "AVAILABLE"
                except ModelNotFound:
                    return False

            wait_until(in_sandbox, timeout=60, what="the candidate AVAILABLE in the private sandbox",
                       details=lambda: promote.communicate() if promote.poll() is not None else "promote still runs")
            assert set(public.model_status_grpc(MODEL)) == {1}  # gRPC GetModelStatus
            assert set(rest_model_status(rest, MODEL)) == {1}  # REST model status
            assert public.serving_version(MODEL) == 1  # unversioned requests: still stable
            assert in_sandbox(), "the check moved on before the public ports were read"
        Path(f"{log}.release").touch()
        _, err = promote.communicate(timeout=120)
        assert promote.returncode == 0, err
    finally:
        promote.kill()
    assert registry.load(served).model(MODEL).stable == 3


def test_a_candidate_that_fails_in_the_private_sandbox_is_refused_and_nothing_changes(
    served: Paths, subprocess_env: dict[str, str]
) -> None:
    _, rest, _ = _server(served)
    for data in (served.version_dir(MODEL, 2) / "variables").glob("variables.data-*"):
        data.write_bytes(os.urandom(data.stat().st_size))
    def state() -> dict[str, str]:
        """Every file of the repository and configs (.mlc/ holds the server's log; the rollout
        journal's folder may stay, empty)."""
        files = {f"configs/{k}": v for k, v in tree_state(served.configs).items()}
        files.update(tree_state(served.home / "model_repo"))
        files.pop("registry.yaml")  # the history records the refusal: the head and its history page
        return {k: v for k, v in files.items() if v != "dir" and not k.startswith(f"registry/{MODEL}/history/")}

    before = state()
    run = subprocess.run(MLC + ["promote", MODEL, "2"], capture_output=True, text=True, check=False,
                         env=dict(subprocess_env, MLC_HOME=str(served.home)), timeout=120)
    assert run.returncode == 1
    assert run.stderr.count("\n") == 1 and "failed its sandbox check, production untouched" in run.stderr
    assert "does not load" in run.stderr
    assert state() == before
    rec = registry.load(served).model(MODEL)
    assert rec.stable == 1 and rec.history[-1].result == "failed"
    assert {v: s.state for v, s in rest_model_status(rest, MODEL).items()} == {1: "AVAILABLE"}
