"""Unit and CLI tests of the rollout pieces that need no server: config, journal, history, refusals."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lifecycle import rollout
from lifecycle.cli import app
from lifecycle.errors import ConfigError, FailedPrecondition, VersionNotFound
from lifecycle.serving import fleet, tfs_config
from lifecycle.store import journal, registry
from lifecycle.store.config import Paths
from lifecycle.store.registry import HistoryEvent, VersionRecord

runner = CliRunner()


def add_versions(paths: Paths, model: str, versions: list[int], validated: bool = True, stable: int | None = None,
                 miou: dict[int, float] | None = None) -> None:
    """Register placeholder versions (a file named saved_model.pb; no server loads them here)."""
    with registry.transaction(paths) as reg:
        rec = reg.model(model, create=True)
        for v in versions:
            d = paths.version_dir(model, v)
            d.mkdir(parents=True, exist_ok=True)
            (d / "saved_model.pb").write_bytes(b"placeholder")
            report = {"golden": {"digest": f"sha256:{v:064d}"}}
            if miou and v in miou:
                report["metrics"] = {"miou": miou[v]}
            rec.versions.append(VersionRecord(v, f"d{v}", f"ckpt/run/ckpt-{v}", v * 100, validated, report))
        rec.stable = stable


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    monkeypatch.setenv("MLC_HOME", str(tmp_path))
    paths = Paths.from_env()
    paths.configs.mkdir()
    return paths


# --- tfs_config ---------------------------------------------------------------------------


def test_config_lists_every_served_model_with_labels(home: Paths) -> None:
    add_versions(home, "deeplab", [1, 2, 3], stable=2)
    add_versions(home, "other", [1])  # nothing to serve yet: left out
    with registry.transaction(home) as reg:
        reg.model("deeplab").canary = 3
    serving = tfs_config.served_from_registry(registry.load(home))
    text = tfs_config.render(tfs_config.build(home, serving))
    assert text == (
        "model_config_list {\n"
        "  config {\n"
        '    name: "deeplab"\n'
        f'    base_path: "{home.home}/model_repo/deeplab"\n'
        '    model_platform: "tensorflow"\n'
        "    model_version_policy {\n"
        "      specific {\n"
        "        versions: 2\n"
        "        versions: 3\n"
        "      }\n"
        "    }\n"
        "    version_labels {\n"
        '      key: "canary"\n'
        "      value: 3\n"
        "    }\n"
        "    version_labels {\n"
        '      key: "stable"\n'
        "      value: 2\n"
        "    }\n"
        "  }\n"
        "}\n"
    )
    assert tfs_config.serving_of(tfs_config.parse(text)) == serving


def test_config_round_trip_and_empty(home: Paths) -> None:
    text = tfs_config.write(home, tfs_config.build(home, {}))
    assert text == "model_config_list {\n}\n"
    assert tfs_config.read(home) == {}
    with pytest.raises(ConfigError, match="labels .* point outside"):
        tfs_config.build(home, {"m": tfs_config.ModelServing((1,), {"stable": 2})})


def test_malformed_config_names_the_file(home: Paths) -> None:
    home.serving_config.write_text("model_config_list { config { nme: 1 } }")
    with pytest.raises(ConfigError, match="models.config"):
        tfs_config.read(home)


def test_config_module_does_not_import_tensorflow(python: str, subprocess_env: dict[str, str]) -> None:
    code = "import sys, lifecycle.serving.tfs_config, lifecycle.serving.fleet, lifecycle.store.journal, lifecycle.serving.client, lifecycle.rollout\n" \
           "print(sorted(m for m in sys.modules if m == 'tensorflow' or m.startswith('tensorflow.'))[:3])"
    out = subprocess.run([python, "-c", code], env=subprocess_env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- servers file -------------------------------------------------------------------------


def test_servers_file_parsing(home: Paths) -> None:
    fleet.servers_file(home).write_text(
        "reload: poll\nservers:\n  - grpc: 127.0.0.1:1\n    rest: 127.0.0.1:2\n  - 127.0.0.1:3\n"
    )
    f = fleet.load(home)
    assert f.source == "configs/servers.yaml"
    assert f.servers == [
        fleet.ServerSpec("127.0.0.1:1", "127.0.0.1:2", "poll"),
        fleet.ServerSpec("127.0.0.1:3", None, "poll"),
    ]
    fleet.servers_file(home).write_text("servers:\n  - grpc: nohostport\n")
    with pytest.raises(ConfigError, match="servers.yaml: servers\\[0\\].grpc: expected host:port"):
        fleet.load(home)


def test_no_servers_and_stale_records_are_pruned(home: Paths) -> None:
    assert fleet.load(home).servers == []
    rec = fleet.ServerRecord(pid=2**22 + 7, engine="embedded", grpc="127.0.0.1:9", rest=None, reload="request",
                             poll_seconds=1, config_file=str(home.serving_config), log=None, command=["x"])
    fleet.write_record(home, rec)
    assert fleet.load(home).servers == []
    assert not fleet.record_file(home, rec.grpc).exists()


def test_server_command_uses_tf_serving_flags(home: Paths) -> None:
    spec = fleet.ServerSpec("127.0.0.1:8500", "127.0.0.1:8501", "poll", 2)
    cmd = fleet.server_command("embedded", spec, home.serving_config)
    assert cmd[1:3] == ["-m", "lifecycle.server.main"]
    assert cmd[3:] == ["--port=8500", f"--model_config_file={home.serving_config}", "--rest_api_port=8501",
                       "--model_config_file_poll_wait_seconds=2", "--allow_version_labels_for_unavailable_models=true"]


# --- journal ------------------------------------------------------------------------------


def test_journal_steps_are_written_atomically(home: Paths) -> None:
    j = journal.Journal("promote", "m", 4, {"stable": 3, "canary": None}, {"stable": 4, "canary": None})
    journal.write(home, j)
    journal.step(home, j, "intent", "done")
    journal.step(home, j, "label", "begin")
    back = journal.load(home)
    assert back is not None and back.id == j.id
    assert [s["step"] + ":" + s["state"] for s in back.steps] == ["intent:done", "label:begin"]
    assert not back.reached("label") and back.reached("label", "begin")
    assert "stable 3 -> 4" in back.describe()
    journal.clear(home)
    assert journal.load(home) is None


def test_malformed_journal_is_a_clear_error(home: Paths) -> None:
    journal.path(home).parent.mkdir(parents=True)
    journal.path(home).write_text("{")
    with pytest.raises(ConfigError, match="rollout journal"):
        journal.load(home)


# --- history walking ----------------------------------------------------------------------


def _events(*spec: tuple[str, int | None, int, str]) -> list[HistoryEvent]:
    return [HistoryEvent(action=a, from_version=f, to_version=t, result=r) for a, f, t, r in spec]


def test_rollback_walks_back_through_the_stable_chain(home: Paths) -> None:
    add_versions(home, "m", [1, 2, 3, 4])
    reg = registry.load(home)
    rec = reg.model("m")
    rec.history = _events(("promote", None, 1, "ok"), ("promote", 1, 2, "ok"), ("promote", 2, 4, "reverted"),
                          ("promote", 2, 3, "ok"), ("canary", 3, 4, "ok"))
    rec.stable = 3
    assert rollout.stable_chain(rec) == [1, 2, 3]
    assert rollout.rollback_target(home, rec) == 2
    rec.history += _events(("rollback", 3, 2, "ok"))
    rec.stable = 2
    assert rollout.rollback_target(home, rec) == 1
    rec.history += _events(("rollback", 2, 1, "recovered"))
    rec.stable = 1
    with pytest.raises(FailedPrecondition, match="nothing to roll back to"):
        rollout.rollback_target(home, rec)


def test_rollback_skips_versions_that_are_gone(home: Paths) -> None:
    add_versions(home, "m", [1, 2, 3])
    reg = registry.load(home)
    rec = reg.model("m")
    rec.history = _events(("promote", None, 1, "ok"), ("promote", 1, 2, "ok"), ("promote", 2, 3, "ok"))
    rec.stable = 3
    (home.version_dir("m", 2) / "saved_model.pb").unlink()
    assert rollout.rollback_target(home, rec) == 1


def test_quality_gate(home: Paths) -> None:
    add_versions(home, "m", [1, 2], stable=1, miou={1: 0.60, 2: 0.55})
    rec = registry.load(home).model("m")
    with pytest.raises(FailedPrecondition, match="quality gate: version 2 has mIoU 0.5500"):
        rollout.quality_gate(home, rec, rec.version(2), force=False)
    assert "forced past the quality gate" in (rollout.quality_gate(home, rec, rec.version(2), force=True) or "")
    (home.configs / "m.yaml").write_text(
        "name: m\nnetwork: {}\nsignature: {inputs: {x: {dtype: float32}}, outputs: {y: {dtype: float32}}}\n"
        "thresholds: {max_miou_drop: 0.1}\n"
    )
    assert rollout.quality_gate(home, rec, rec.version(2), force=False) is None


# --- refusals through the CLI: exit non-zero, config byte-identical ------------------------


@pytest.fixture
def served_home(home: Paths) -> Paths:
    add_versions(home, "m", [1, 2])
    add_versions(home, "n", [1], validated=False)
    with registry.transaction(home) as reg:
        reg.model("m").stable = 1
        reg.model("m").history = _events(("promote", None, 1, "ok"))
        with_config = tfs_config.build(home, tfs_config.served_from_registry(reg))
    tfs_config.write(home, with_config)
    return home


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
    assert not journal.path(served_home).exists()


def test_dry_run_prints_plan_and_diff_and_changes_nothing(served_home: Paths) -> None:
    config = served_home.serving_config.read_bytes()
    result = runner.invoke(app, ["promote", "m", "2", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "sandbox: load m 2 alone" in result.output
    assert "-        versions: 1\n+        versions: 2" in result.output
    assert "commit: record stable=2 canary=None" in result.output
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
    assert "promote" in result.output and "- -> 1" in result.output


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


def test_status_shows_a_pending_journal(served_home: Paths) -> None:
    j = journal.Journal("promote", "m", 2, {"stable": 1, "canary": None}, {"stable": 2, "canary": None})
    journal.write(served_home, j)
    data = json.loads(runner.invoke(app, ["status", "--json"]).output)
    assert "promote of m (stable 1 -> 2)" in data["pending_rollout"]


def test_recovery_without_servers_reverts_and_records(served_home: Paths) -> None:
    j = journal.Journal("promote", "m", 2, {"stable": 1, "canary": None}, {"stable": 2, "canary": None})
    journal.write(served_home, j)
    journal.step(served_home, j, "load", "begin")
    # the dead mlc had written the intermediate config
    tfs_config.write(served_home, tfs_config.build(served_home, {"m": tfs_config.ModelServing((1, 2), {"stable": 1})}))
    note = rollout.recover(served_home)
    assert note and "reverted it" in note
    assert tfs_config.read(served_home) == {"m": tfs_config.ModelServing((1,), {"stable": 1})}
    rec = registry.load(served_home).model("m")
    assert rec.stable == 1 and rec.history[-1].result == "reverted" and "by recovery" in rec.history[-1].detail
    assert journal.load(served_home) is None


def test_recovery_without_servers_completes_after_label(served_home: Paths) -> None:
    j = journal.Journal("promote", "m", 2, {"stable": 1, "canary": None}, {"stable": 2, "canary": None})
    journal.write(served_home, j)
    journal.step(served_home, j, "label", "done")
    assert "completed it" in (rollout.recover(served_home) or "")
    rec = registry.load(served_home).model("m")
    assert rec.stable == 2 and rec.history[-1].result == "recovered"
    assert tfs_config.read(served_home) == {"m": tfs_config.ModelServing((2,), {"stable": 2})}
    # a journal whose commit landed is just removed
    journal.write(served_home, j)
    assert "finished rollout journal" in (rollout.recover(served_home) or "")


def test_unknown_version_error_type(served_home: Paths) -> None:
    with pytest.raises(VersionNotFound):
        rollout.promote(served_home, "m", 7)


def test_rollback_withdraws_a_canary_first(served_home: Paths) -> None:
    with registry.transaction(served_home) as reg:
        rec = reg.model("m")
        rec.canary = 2
        rec.history += _events(("canary", 1, 2, "ok"))
        tfs_config.write(served_home, tfs_config.build(served_home, tfs_config.served_from_registry(reg)))
    result = runner.invoke(app, ["rollback", "m", "--reason", "canary misbehaves"])
    assert result.exit_code == 0, result.output
    assert "canary 2 -> -" in result.output
    rec = registry.load(served_home).model("m")
    assert (rec.stable, rec.canary) == (1, None)
    assert (rec.history[-1].action, rec.history[-1].to_version, rec.history[-1].reason) == ("rollback", 1, "canary misbehaves")
    assert tfs_config.read(served_home) == {"m": tfs_config.ModelServing((1,), {"stable": 1})}
    assert rollout.stable_chain(rec) == [1]


def test_status_of_a_server_without_rest_address_is_unknown_not_drift(served_home: Paths) -> None:
    fleet.servers_file(served_home).write_text("servers:\n  - grpc: 127.0.0.1:1\n")
    data = json.loads(runner.invoke(app, ["status", "--json"]).output)
    assert data["servers"]["127.0.0.1:1"].startswith("unknown: no REST address")
    m = next(x for x in data["models"] if x["name"] == "m")
    assert m["versions"][0]["servers"] == {"127.0.0.1:1": "unknown"} and m["drift"] == []
