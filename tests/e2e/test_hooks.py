"""Signed webhooks against a real receiver on 127.0.0.1 that checks every signature: a receiver
that is down while promotes run gets every event later, exactly once by id; a receiver that
hangs holds a command up no longer than its timeout."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lifecycle.cli import app
from lifecycle.hooks import sender
from lifecycle.store import outbox, registry
from lifecycle.store.config import Paths
from tests.support.hook_receiver import Receiver
from tests.support.ports import free_port
from tests.support.rollout_support import MODEL, build_versions, make_home

pytestmark = pytest.mark.e2e
runner = CliRunner()
SECRET = "s3cret-for-tests"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_versions(tmp_path_factory.mktemp("hpt"), [1, 2, 3])


def hooked_home(tmp_path: Path, built: Path, monkeypatch: pytest.MonkeyPatch, port: int, timeout: float) -> Paths:
    paths = make_home(tmp_path / "home", built, [1, 2, 3], stable=1)
    (paths.configs / "hooks.yaml").write_text(
        f"receivers:\n  - name: team\n    url: http://127.0.0.1:{port}/hook\n    events: [promote, rollback, approve]\n"
        f"    secret_env: MLC_TEST_HOOK_SECRET\n    timeout: {timeout}\n")
    monkeypatch.setenv("MLC_HOME", str(paths.home))
    monkeypatch.setenv("MLC_TEST_HOOK_SECRET", SECRET)
    return paths


def test_a_receiver_down_during_promotes_gets_every_event_later_once_by_id(
        tmp_path: Path, built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    paths = hooked_home(tmp_path, built, monkeypatch, port, 1.0)
    for args in (["promote", MODEL, "2"], ["promote", MODEL, "3"], ["rollback", MODEL, "--reason", "v3 is worse"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output  # the receiver being down fails no command
    queued = {e.event["id"]: e.event for e in outbox.pending(paths)}
    assert [e["event"] for e in queued.values()] == ["promote", "promote", "rollback"]
    deliveries = [d for e in outbox.pending(paths) for d in e.deliveries.values()]
    # Each command tried in the background, waiting at most the timeout: on a loaded machine an
    # attempt may still be under way when the command exits (it is abandoned, the event stays).
    assert not any(d["sent"] for d in deliveries) and all(d["error"] for d in deliveries if d["attempts"])
    status = runner.invoke(app, ["hooks", "status"])
    assert status.exit_code == 0 and status.stdout.count(" -> team ") == 3

    # In a real mlc process an attempt still under way when the command exits dies with it; in
    # this test process (CliRunner) it would live on and could send once the receiver is up.
    for thread in threading.enumerate():
        if thread.name == "mlc-hooks":
            thread.join()
    receiver = Receiver(SECRET, port=port).start()
    try:
        result = runner.invoke(app, ["hooks", "deliver"])
        assert result.exit_code == 0, result.output
        assert "sent 3, failed 0, pending 0" in result.stdout
        runner.invoke(app, ["hooks", "deliver"])  # nothing left to send
        assert receiver.bad_signatures == 0
        assert set(receiver.events) == set(queued)  # none missing
        assert receiver.posts == len(queued)  # each sent once
        history = registry.load(paths).model(MODEL).history
        got = sorted((e["data"]["action"], e["data"]["to_version"]) for e in receiver.events.values())
        assert got == sorted((h.action, h.to_version) for h in history[1:])
        assert all(e["model"] == MODEL and e["user"] for e in receiver.events.values())
    finally:
        receiver.stop()
    assert outbox.pending(paths) == []


def test_a_wrong_secret_is_refused_by_the_receiver_and_stays_pending(
        tmp_path: Path, built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    receiver = Receiver("another-secret").start()
    try:
        paths = hooked_home(tmp_path, built, monkeypatch, receiver.port, 1.0)
        report = sender.act(paths, "test")
        assert (report.sent, report.failed, receiver.bad_signatures) == (0, 1, 1)
        assert [p["error"] for p in report.pending] == ["HTTP 401"]
    finally:
        receiver.stop()


def test_a_hanging_receiver_holds_promote_up_no_longer_than_its_timeout(
        tmp_path: Path, built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    receiver = Receiver(SECRET, hang=30.0).start()
    try:
        paths = hooked_home(tmp_path, built, monkeypatch, receiver.port, 1.0)
        result = runner.invoke(app, ["promote", MODEL, "2"])
        assert result.exit_code == 0, result.output
        t0 = time.monotonic()
        sender.deliver_in_background(paths)  # what every command does when it ends
        waited = time.monotonic() - t0
        assert waited < 1.0 + 1.5, waited  # the timeout, plus the outbox reads
        assert registry.load(paths).model(MODEL).stable == 2
    finally:
        receiver.hang = 0.0
        receiver.stop()
