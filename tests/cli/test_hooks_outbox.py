"""The webhook outbox without a receiver: what is queued where each action is recorded, the
hooks file's checks, and the signature (GitHub's scheme, HMAC-SHA256 of the body)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

import pytest
from typer.testing import CliRunner

from lifecycle.cli import app
from lifecycle.errors import ConfigError
from lifecycle.hooks import sender
from lifecycle.store import outbox, registry
from lifecycle.store.config import Paths
from lifecycle.store.registry import Attempt, HistoryEvent
from tests.support.placeholders import add_placeholder_versions
from tests.support.ports import free_port

runner = CliRunner()


@pytest.fixture
def home(make_home: Callable[..., Paths], monkeypatch: pytest.MonkeyPatch) -> Paths:
    paths = make_home()
    monkeypatch.setenv("MLC_HOME", str(paths.home))
    add_placeholder_versions(paths, "deeplab", [1, 2], stable=1)
    (paths.configs / "hooks.yaml").write_text(
        f"receivers:\n  - url: http://127.0.0.1:{free_port()}/down\n    timeout: 0.5\n")
    return paths


def test_each_recorded_action_queues_its_event(home: Paths) -> None:
    assert runner.invoke(app, ["approve", "deeplab", "2", "--reason", "ok"]).exit_code == 0
    assert runner.invoke(app, ["reject", "deeplab", "1", "--reason", "old"]).exit_code == 0
    with registry.transaction(home) as reg:
        rec = reg.model("deeplab")
        rec.history.append(HistoryEvent("gc", 1, None, "deleted"))
        rec.attempts.append(Attempt("run/ckpt-9", "sha256:9", "parity", "differs"))
    events = [(e.event["event"], e.event["model"]) for e in outbox.pending(home)]
    assert sorted(events) == sorted([("approve", "deeplab"), ("reject", "deeplab"), ("gc", "deeplab"),
                                     ("register-failed", "deeplab")])
    assert len({e.event["id"] for e in outbox.pending(home)}) == 4
    status = runner.invoke(app, ["hooks", "status", "--json"])
    assert status.exit_code == 0 and status.stdout.count('"receiver"') == 4


def test_a_progressive_rollout_queues_its_finish_or_its_abort(home: Paths) -> None:
    with registry.transaction(home) as reg:
        rec = reg.model("deeplab")
        rec.history.append(HistoryEvent("rollout", 1, 2, "ok"))
        rec.history.append(HistoryEvent("rollout", 2, 1, "aborted", detail="5%: error_rate 0.5 > 0.01"))
    events = sorted(e.event["event"] for e in outbox.pending(home))
    assert events == ["rollout-abort", "rollout-finish"]


def test_without_a_hooks_file_nothing_is_queued(home: Paths) -> None:
    (home.configs / "hooks.yaml").unlink()
    assert runner.invoke(app, ["approve", "deeplab", "2", "--reason", "ok"]).exit_code == 0
    assert outbox.pending(home) == []


def test_the_hooks_file_is_checked(home: Paths) -> None:
    (home.configs / "hooks.yaml").write_text("receivers:\n  - url: http://127.0.0.1:1/\n    events: [promot]\n")
    with pytest.raises(ConfigError, match=r"unknown event\(s\) promot"):
        outbox.receivers(home)
    result = runner.invoke(app, ["hooks", "test"])
    assert result.exit_code == 1 and "unknown event(s) promot" in result.stderr


def test_the_signature_is_githubs_scheme() -> None:
    body = b'{"id":"1"}'
    assert sender.sign("key", body) == "sha256=" + hmac.new(b"key", body, hashlib.sha256).hexdigest()
    assert [sender.backoff(n) for n in (1, 2, 3, 12)] == [1.0, 2.0, 4.0, 300.0]
