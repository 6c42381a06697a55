"""promote, rollback, history and status through the CLI on placeholder versions, with no server
running: refusals leave the serving config and the registry byte-identical.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from lifecycle import rollout
from lifecycle.cli import app
from lifecycle.serving import fleet, tfs_config
from lifecycle.store import journal, registry
from lifecycle.store.config import Paths
from tests.support.placeholders import history

runner = CliRunner()


@pytest.mark.parametrize(
    "args, message",
    [
        (["promote", "m", "9"], "model 'm' has no version 9"),
        (["promote", "nope", "1"], "model 'nope' is not in the registry"),
        (["promote", "n", "1"], "version 1 of n is not validated"),
        (["promote", "m", "2", "--expect-current", "2"], "stable of m is 1, not 2 (--expect-current)"),
        (["promote", "m", "1", "--canary"], "already stable"),
        (["rollback", "m"], "nothing to roll back to for m"),
        (["rollback", "m", "--to", "1"], "already stable"),
        (["promote", "../x", "1"], "invalid model name"),
    ],
)
def test_refusals_leave_config_and_registry_byte_identical(served_home: Paths, args: list[str], message: str) -> None:
    config = served_home.serving_config.read_bytes()
    reg = served_home.registry_file.read_bytes()
    result = runner.invoke(app, args)
    assert result.exit_code != 0
    assert message in result.output, result.output
    assert result.output.count("Error:") == 1
    assert served_home.serving_config.read_bytes() == config
    assert served_home.registry_file.read_bytes() == reg
    assert journal.load(served_home) is None


def test_dry_run_prints_plan_and_diff_and_changes_nothing(served_home: Paths) -> None:
    config = served_home.serving_config.read_bytes()
    result = runner.invoke(app, ["promote", "m", "2", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "sandbox: load m 2 alone" in result.output
    assert "-        versions: 1\n+        versions: 2" in result.output
    assert "commit: record labels stable=2 in the registry" in result.output
    assert served_home.serving_config.read_bytes() == config
    result = runner.invoke(app, ["promote", "m", "2", "--dry-run", "--json"])
    plan = json.loads(result.output)["plan"]
    assert plan["load"] == [2] and plan["drop"] == [1] and plan["after"] == {"stable": 2, "canary": None}


def test_promote_refuses_when_a_listed_server_is_down(served_home: Paths) -> None:
    fleet.servers_file(served_home).write_text("servers:\n  - grpc: 127.0.0.1:1\n    rest: 127.0.0.1:2\n")
    config = served_home.serving_config.read_bytes()
    result = runner.invoke(app, ["promote", "m", "2"])
    assert result.exit_code == 1
    assert "127.0.0.1:1 do not accept connections; nothing was changed" in result.output
    assert served_home.serving_config.read_bytes() == config


def test_history_cli(served_home: Paths) -> None:
    result = runner.invoke(app, ["history", "m", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["stable"] == 1
    assert [(e["action"], e["to_version"], e["result"]) for e in data["events"]] == [("promote", 1, "ok")]
    result = runner.invoke(app, ["history", "m"])
    assert "promote" in result.output and "promote 1 (first)" in result.output


def test_status_without_servers_flags_config_drift(served_home: Paths) -> None:
    result = runner.invoke(app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    m = next(x for x in data["models"] if x["name"] == "m")
    assert m["stable"] == 1 and m["config"] == {"versions": [1], "labels": {"stable": 1}}
    assert [(v["version"], v["labels"], v["in_config"], v["servers"]) for v in m["versions"]] == [
        (1, ["stable"], True, {}), (2, [], False, {})
    ]
    assert {"checkpoint", "step", "validated"} <= set(m["versions"][0])
    assert m["drift"] == []
    # A hand edit of models.config is drift.
    served_home.serving_config.write_text(served_home.serving_config.read_text().replace("value: 1", "value: 2").replace("versions: 1", "versions: 2"))
    data = json.loads(runner.invoke(app, ["status", "m", "--json"]).output)
    assert "configs/models.config serves versions [2]" in data["models"][0]["drift"][0]


def test_status_reports_unreachable_servers(served_home: Paths) -> None:
    fleet.servers_file(served_home).write_text("servers:\n  - grpc: 127.0.0.1:1\n    rest: 127.0.0.1:2\n")
    data = json.loads(runner.invoke(app, ["status", "--json"]).output)
    assert data["servers"]["127.0.0.1:1"].startswith("unreachable")
    m = next(x for x in data["models"] if x["name"] == "m")
    assert m["versions"][0]["servers"] == {"127.0.0.1:1": "unreachable"}
    assert "server 127.0.0.1:1 is unreachable" in m["drift"]


def test_status_piped_at_80_columns_keeps_each_version_on_one_line(
        served_home: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from lifecycle.cli import render

    fleet.servers_file(served_home).write_text(
        "servers:\n  - grpc: 127.0.0.1:1\n    rest: 127.0.0.1:2\n  - grpc: 127.0.0.1:3\n    rest: 127.0.0.1:4\n")
    monkeypatch.setattr(render, "stdout", Console(width=80, highlight=False, soft_wrap=True))
    result = runner.invoke(app, ["status", "m"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("ver "))
    table = lines[lines.index(header):lines.index(header) + 4]
    assert all(len(line.rstrip()) <= 80 for line in table), result.stdout
    assert header.split() == ["ver", "labels", "step", "valid", "mIoU", "cfg", "checkpoint", "srv1", "srv2"]
    rows = [line.split() for line in lines if line[:1].isdigit()]
    assert [row[0] for row in rows] == ["1", "2"]  # one line per version, nothing wrapped
    assert rows[0][-2:] == ["unreachable", "unreachable"]
    assert "server 127.0.0.1:1 (srv1): unreachable" in result.stdout


def test_status_shows_a_pending_journal(served_home: Paths) -> None:
    j = journal.Journal("promote", "m", 2, {"stable": 1, "canary": None}, {"stable": 2, "canary": None})
    journal.write(served_home, j)
    data = json.loads(runner.invoke(app, ["status", "--json"]).output)
    assert "promote of m (stable 1 -> 2)" in data["pending_rollout"]


def test_rollback_withdraws_a_canary_first(served_home: Paths) -> None:
    with registry.transaction(served_home) as reg:
        rec = reg.model("m")
        rec.canary = 2
        rec.history += history(("canary", 1, 2, "ok"))
        tfs_config.write(served_home, tfs_config.build(served_home, tfs_config.served_from_registry(reg)))
    result = runner.invoke(app, ["rollback", "m", "--reason", "canary misbehaves"])
    assert result.exit_code == 0, result.output
    assert "canary 2 withdrawn, stable stays 1" in result.output
    rec = registry.load(served_home).model("m")
    assert (rec.stable, rec.canary) == (1, None)
    last = rec.history[-1]
    assert (last.action, last.from_version, last.to_version, last.reason) == ("withdraw", 2, 1, "canary misbehaves")
    assert "canary 2 withdrawn" in runner.invoke(app, ["history", "m"]).stdout
    assert tfs_config.read(served_home) == {"m": tfs_config.ModelServing((1,), {"stable": 1})}
    assert rollout.stable_chain(rec) == [1]


def test_status_of_a_server_without_rest_address_is_unknown_not_drift(served_home: Paths) -> None:
    fleet.servers_file(served_home).write_text("servers:\n  - grpc: 127.0.0.1:1\n")
    data = json.loads(runner.invoke(app, ["status", "--json"]).output)
    assert data["servers"]["127.0.0.1:1"].startswith("unknown: no REST address")
    m = next(x for x in data["models"] if x["name"] == "m")
    assert m["versions"][0]["servers"] == {"127.0.0.1:1": "unknown"} and m["drift"] == []


def test_history_piped_at_80_columns_wraps_never_cuts(
        served_home: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from lifecycle.cli import render

    with registry.transaction(served_home) as reg:
        reg.model("m").history += history(("rollback", 1, 2, "ok"))
        reg.model("m").history[-1].reason = "a long reason that would wrap onto several lines " * 3
    monkeypatch.setattr(render, "stdout", Console(width=80, highlight=False, soft_wrap=True))
    result = runner.invoke(app, ["history", "m"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert all(len(line.rstrip()) <= 80 for line in lines), result.stdout
    assert "…" not in result.stdout  # the note wraps onto more lines, nothing is cut
    rows = [line.split() for line in lines if line[:4].isdigit()]
    assert [row[3:8] for row in rows] == [
        ["promote", "1", "(first)", "ok"], ["rollback", "1", "->", "2", "ok"]
    ]
    words = " ".join(" ".join(line.split()) for line in lines)
    assert words.count("would wrap onto several") == 3
