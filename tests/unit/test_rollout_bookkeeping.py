"""The rollout's bookkeeping without a server or the CLI: serving config, servers file, journal,
history walking, the quality gate and recovery, on placeholder versions (tests/support/placeholders.py).
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from lifecycle import rollout
from lifecycle.errors import ConfigError, FailedPrecondition, VersionNotFound
from lifecycle.operations import processes
from lifecycle.serving import fleet, tfs_config
from lifecycle.store import journal, registry
from lifecycle.store.config import Paths
from tests.support.no_tensorflow import assert_no_tensorflow
from tests.support.placeholders import add_placeholder_versions, history

# --- tfs_config ---------------------------------------------------------------------------


def test_config_lists_every_served_model_with_labels(bare_home: Paths) -> None:
    add_placeholder_versions(bare_home, "deeplab", [1, 2, 3], stable=2)
    add_placeholder_versions(bare_home, "other", [1])  # nothing to serve yet: left out
    with registry.transaction(bare_home) as reg:
        reg.model("deeplab").canary = 3
    serving = tfs_config.served_from_registry(registry.load(bare_home))
    text = tfs_config.render(tfs_config.build(bare_home, serving))
    assert text == (
        "model_config_list {\n"
        "  config {\n"
        '    name: "deeplab"\n'
        f'    base_path: "{bare_home.home}/model_repo/deeplab"\n'
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


def test_config_round_trip_and_empty(bare_home: Paths) -> None:
    text = tfs_config.write(bare_home, tfs_config.build(bare_home, {}))
    assert text == "model_config_list {\n}\n"
    assert tfs_config.read(bare_home) == {}
    with pytest.raises(ConfigError, match="labels .* point outside"):
        tfs_config.build(bare_home, {"m": tfs_config.ModelServing((1,), {"stable": 2})})


def test_malformed_config_names_the_file(bare_home: Paths) -> None:
    bare_home.serving_config.write_text("model_config_list { config { nme: 1 } }")
    with pytest.raises(ConfigError, match="models.config"):
        tfs_config.read(bare_home)


def test_config_module_does_not_import_tensorflow(subprocess_env: dict[str, str]) -> None:
    assert_no_tensorflow("import lifecycle.serving.tfs_config, lifecycle.serving.fleet, lifecycle.store.journal, "
                         "lifecycle.serving.client, lifecycle.rollout", subprocess_env)


# --- servers file -------------------------------------------------------------------------


def test_servers_file_parsing(bare_home: Paths) -> None:
    fleet.servers_file(bare_home).write_text(
        "reload: poll\nservers:\n  - grpc: 127.0.0.1:1\n    rest: 127.0.0.1:2\n  - 127.0.0.1:3\n"
    )
    f = fleet.load(bare_home)
    assert f.source == "configs/servers.yaml"
    assert f.servers == [
        fleet.ServerSpec("127.0.0.1:1", "127.0.0.1:2", "poll"),
        fleet.ServerSpec("127.0.0.1:3", None, "poll"),
    ]
    fleet.servers_file(bare_home).write_text("servers:\n  - grpc: nohostport\n")
    with pytest.raises(ConfigError, match="servers.yaml: servers\\[0\\].grpc: expected host:port"):
        fleet.load(bare_home)


def test_no_servers_and_stale_records_are_pruned(bare_home: Paths) -> None:
    assert fleet.load(bare_home).servers == []
    rec = fleet.ServerRecord(pid=2**22 + 7, engine="embedded", grpc="127.0.0.1:9", rest=None, reload="request",
                             poll_seconds=1, config_file=str(bare_home.serving_config), log=None, command=["x"])
    fleet.write_record(bare_home, rec)
    assert fleet.load(bare_home).servers == []
    assert not fleet.record_file(bare_home, rec.grpc).exists()


def test_server_command_uses_tf_serving_flags(bare_home: Paths) -> None:
    spec = fleet.ServerSpec("127.0.0.1:8500", "127.0.0.1:8501", "poll", 2)
    cmd = processes.server_command("embedded", spec, bare_home.serving_config)
    assert cmd[1:3] == ["-m", "lifecycle.server.main"]
    assert cmd[3:] == ["--port=8500", f"--model_config_file={bare_home.serving_config}", "--rest_api_port=8501",
                       "--model_config_file_poll_wait_seconds=2", "--allow_version_labels_for_unavailable_models=true"]
    # The private sandbox flag goes to the embedded server only; tensorflow_model_server's line is unchanged.
    with_sandbox = processes.server_command("embedded", spec, bare_home.serving_config, "/tmp/mlc-sandbox-x/grpc.sock")
    assert with_sandbox == [*cmd, "--mlc_sandbox_socket=/tmp/mlc-sandbox-x/grpc.sock"]
    real = processes.server_command("tfserving", spec, bare_home.serving_config, "/tmp/mlc-sandbox-x/grpc.sock")
    assert real[1:] == cmd[3:]


# --- journal ------------------------------------------------------------------------------


def test_journal_steps_are_written_atomically(bare_home: Paths) -> None:
    j = journal.Journal("promote", "m", 4, {"stable": 3, "canary": None}, {"stable": 4, "canary": None})
    journal.write(bare_home, j)
    journal.step(bare_home, j, "intent", "done")
    journal.step(bare_home, j, "label", "begin")
    back = journal.load(bare_home)
    assert back is not None and back.id == j.id
    assert [s["step"] + ":" + s["state"] for s in back.steps] == ["intent:done", "label:begin"]
    assert not back.reached("label") and back.reached("label", "begin")
    assert "stable 3 -> 4" in back.describe()
    journal.clear(bare_home)
    assert journal.load(bare_home) is None


def test_malformed_journal_is_a_clear_error(bare_home: Paths) -> None:
    bare_home.store.write(journal.KEY, b"{", None)
    with pytest.raises(ConfigError, match="malformed rollout journal .*journal/rollout.json"):
        journal.load(bare_home)


def test_journal_lives_in_the_repository_and_an_old_one_is_still_recovered(bare_home: Paths) -> None:
    j = journal.Journal("promote", "m", 4, {"stable": 3, "canary": None}, {"stable": 4, "canary": None})
    journal.write(bare_home, j)
    assert bare_home.store.keys("journal/") == [journal.KEY] and not journal.legacy_path(bare_home).exists()
    journal.clear(bare_home)
    # A journal an older mlc left in .mlc/ is found, continued in the repository, then cleared.
    journal.legacy_path(bare_home).parent.mkdir(parents=True, exist_ok=True)
    journal.legacy_path(bare_home).write_text(json.dumps(dataclasses.asdict(j)))
    old = journal.load(bare_home)
    assert old is not None and old.id == j.id
    journal.step(bare_home, old, "label", "begin")
    back = journal.load(bare_home)
    assert back is not None and back.last() == "label:begin"
    journal.clear(bare_home)
    assert journal.load(bare_home) is None and not journal.legacy_path(bare_home).exists()


def test_a_rollout_never_replaces_another_rollouts_journal(bare_home: Paths) -> None:
    mine = journal.Journal("promote", "m", 4, {"stable": 3, "canary": None}, {"stable": 4, "canary": None})
    theirs = journal.Journal("rollback", "m", 2, {"stable": 3, "canary": None}, {"stable": 2, "canary": None})
    journal.write(bare_home, theirs)
    before = bare_home.store.read(journal.KEY)
    with pytest.raises(FailedPrecondition, match="another rollout's journal"):
        journal.write(bare_home, mine)
    assert bare_home.store.read(journal.KEY) == before


# --- history walking ----------------------------------------------------------------------


def test_rollback_walks_back_through_the_stable_chain(bare_home: Paths) -> None:
    add_placeholder_versions(bare_home, "m", [1, 2, 3, 4])
    reg = registry.load(bare_home)
    rec = reg.model("m")
    rec.history = history(("promote", None, 1, "ok"), ("promote", 1, 2, "ok"), ("promote", 2, 4, "reverted"),
                          ("promote", 2, 3, "ok"), ("canary", 3, 4, "ok"))
    rec.stable = 3
    assert rollout.stable_chain(rec) == [1, 2, 3]
    assert rollout.rollback_target(bare_home, rec) == 2
    rec.history += history(("rollback", 3, 2, "ok"))
    rec.stable = 2
    assert rollout.rollback_target(bare_home, rec) == 1
    rec.history += history(("rollback", 2, 1, "recovered"))
    rec.stable = 1
    with pytest.raises(FailedPrecondition, match="nothing to roll back to"):
        rollout.rollback_target(bare_home, rec)


def test_rollback_skips_versions_that_are_gone(bare_home: Paths) -> None:
    add_placeholder_versions(bare_home, "m", [1, 2, 3])
    reg = registry.load(bare_home)
    rec = reg.model("m")
    rec.history = history(("promote", None, 1, "ok"), ("promote", 1, 2, "ok"), ("promote", 2, 3, "ok"))
    rec.stable = 3
    (bare_home.version_dir("m", 2) / "saved_model.pb").unlink()
    assert rollout.rollback_target(bare_home, rec) == 1


def test_quality_gate(bare_home: Paths) -> None:
    add_placeholder_versions(bare_home, "m", [1, 2], stable=1, metrics={1: {"miou": 0.60}, 2: {"miou": 0.55}})
    rec = registry.load(bare_home).model("m")
    with pytest.raises(FailedPrecondition, match="quality gate: version 2 has mIoU 0.5500"):
        rollout.quality_gate(bare_home, rec, rec.version(2), force=False)
    assert "forced past the quality gate" in (rollout.quality_gate(bare_home, rec, rec.version(2), force=True) or "")
    (bare_home.configs / "m.yaml").write_text(
        "name: m\nnetwork: {}\nsignature: {inputs: {x: {dtype: float32}}, outputs: {y: {dtype: float32}}}\n"
        "thresholds: {max_miou_drop: 0.1}\n"
    )
    assert rollout.quality_gate(bare_home, rec, rec.version(2), force=False) is None


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
