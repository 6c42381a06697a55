"""Approvals, without TensorFlow: placeholder versions of deeplab registered by ``carol``; the
policy in configs/deeplab.yaml; decisions through ``mlc approve``/``mlc reject``; promote refuses
(dry runs: refusals come before any server is touched)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import yaml
from typer.testing import CliRunner

from lifecycle import api
from lifecycle.cli import app
from lifecycle.errors import FailedPrecondition
from lifecycle.serving import tfs_config
from lifecycle.store import approvals, registry
from lifecycle.store.config import Paths
from lifecycle.store.registry import HistoryEvent
from tests.support.homes import tree_state
from tests.support.placeholders import add_placeholder_versions

MODEL = "deeplab"
runner = CliRunner()


def as_user(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Who the next command runs as: the registry reads it as getpass does (LOGNAME, then USER)."""
    monkeypatch.setenv("LOGNAME", name)
    monkeypatch.setenv("USER", name)


@pytest.fixture
def home(make_home: Callable[..., Paths], monkeypatch: pytest.MonkeyPatch) -> Paths:
    """Versions 1 (stable) and 2 registered by carol."""
    paths = make_home()
    monkeypatch.setenv("MLC_HOME", str(paths.home))
    as_user(monkeypatch, "carol")
    add_placeholder_versions(paths, MODEL, [1, 2], stable=1)
    with registry.transaction(paths) as reg:
        reg.model(MODEL).history.append(HistoryEvent("promote", None, 1, "ok", reason="setup"))
        tfs_config.write(paths, tfs_config.build(paths, tfs_config.served_from_registry(reg)))
    return paths


def set_policy(paths: Paths, **policy: object) -> None:
    path = paths.definition_file(MODEL)
    data = yaml.safe_load(path.read_text())
    data["approvals"] = policy
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def decide(monkeypatch: pytest.MonkeyPatch, user: str, verb: str, version: int = 2, reason: str = "looked at it") -> str:
    as_user(monkeypatch, user)
    result = runner.invoke(app, [verb, MODEL, str(version), "--reason", reason])
    assert result.exit_code == 0, result.output
    return result.stdout


def refused(home: Paths, match: str) -> None:
    before = tree_state(home.home)
    with pytest.raises(FailedPrecondition, match=match):
        api.promote(MODEL, 2, dry_run=True, paths=home)
    result = runner.invoke(app, ["promote", MODEL, "2"])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert tree_state(home.home) == before


def test_without_a_policy_nothing_is_required(home: Paths) -> None:
    assert api.promote(MODEL, 2, dry_run=True, paths=home).result == "dry-run"


def test_one_approval_required(home: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    set_policy(home, required=1)
    refused(home, r"version 2 of deeplab has 0 of the 1 approvals configs/deeplab.yaml requires; missing 1")
    out = decide(monkeypatch, "alice", "approve")
    assert "deeplab 2: approved by alice" in out and "now approved by alice" in out
    assert api.promote(MODEL, 2, dry_run=True, paths=home).result == "dry-run"


def test_two_approvals_from_distinct_users(home: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    set_policy(home, required=2)
    decide(monkeypatch, "alice", "approve")
    decide(monkeypatch, "alice", "approve", reason="again")  # the same user counts once
    refused(home, "has 1 of the 2 approvals .*missing 1")
    decide(monkeypatch, "bob", "approve")
    assert api.promote(MODEL, 2, dry_run=True, paths=home).result == "dry-run"


def test_the_registrar_may_approve_their_own_version_by_default(home: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    set_policy(home, required=1)
    decide(monkeypatch, "carol", "approve")
    assert api.promote(MODEL, 2, dry_run=True, paths=home).result == "dry-run"


def test_the_registrar_approving_their_own_version_where_forbidden(home: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    set_policy(home, required=1, self_approval=False)
    before = tree_state(home.home)
    as_user(monkeypatch, "carol")
    result = runner.invoke(app, ["approve", MODEL, "2", "--reason", "mine, and good"])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and (
        "carol registered version 2 of deeplab and may not approve it (approvals.self_approval is false "
        "in configs/deeplab.yaml); ask another reviewer") in result.stderr
    assert tree_state(home.home) == before
    refused(home, "has 0 of the 1 approvals configs/deeplab.yaml requires \\(its registrar's own approval does not count\\)")
    decide(monkeypatch, "alice", "approve")
    assert api.promote(MODEL, 2, dry_run=True, paths=home).result == "dry-run"


def test_a_rejection_blocks_until_that_user_approves(home: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    decide(monkeypatch, "bob", "reject", reason="mislabels cats")  # no policy: a rejection still blocks
    refused(home, r"version 2 of deeplab is rejected by bob")
    set_policy(home, required=1)
    decide(monkeypatch, "alice", "approve")
    refused(home, "rejected by bob")
    decide(monkeypatch, "bob", "approve", reason="fixed by the new eval set")
    assert api.promote(MODEL, 2, dry_run=True, paths=home).result == "dry-run"


def test_a_decision_records_who_when_why_and_the_content_digest(home: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    decide(monkeypatch, "alice", "approve", reason="mIoU up")
    rec = registry.load(home).model(MODEL)
    (only,) = rec.approvals
    assert (only.version, only.decision, only.user, only.reason) == (2, "approve", "alice", "mIoU up")
    assert only.time and only.digest == approvals.content_digest(home, MODEL, 2)
    head = json.loads((home.home / "model_repo" / "registry.yaml").read_text())  # in a page beside the head
    assert head["models"][MODEL]["approvals"]["count"] == 1 and len(head["models"][MODEL]["approvals"]["pages"]) == 1


def test_a_reason_is_required(home: Paths) -> None:
    result = runner.invoke(app, ["approve", MODEL, "2"])
    assert result.exit_code == 2 and "--reason TEXT" in result.stderr


def test_status_and_history_show_the_approval_state(home: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    set_policy(home, required=2)
    decide(monkeypatch, "alice", "approve")
    status = json.loads(runner.invoke(app, ["status", MODEL, "--json"]).stdout)
    versions = {v["version"]: v["approval"] for v in status["models"][0]["versions"]}
    assert versions == {1: "pending (0 of 2)", 2: "pending (1 of 2: alice)"}
    history = json.loads(runner.invoke(app, ["history", MODEL, "--json"]).stdout)
    assert history["approvals"][0]["approved_by"] == ["alice"] and history["approvals"][0]["state"] == "pending"
    assert "deeplab 2: pending (1 of 2: alice)" in runner.invoke(app, ["history", MODEL]).stdout
