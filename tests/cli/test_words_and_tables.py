"""Words a newcomer can read (withdrawn canaries, failed/unloaded, recorded states), the rollback
warning, tables that wrap at 80 columns, and a models.config naming another home's repository."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from lifecycle.cli import app, render
from lifecycle.operations.status import ModelStatus, StatusReport, VersionStatus, state_words
from lifecycle.serving import tfs_config
from lifecycle.store import registry
from lifecycle.store.config import Paths
from tests.support.placeholders import add_placeholder_versions, history

runner = CliRunner()


def test_rollback_to_a_worse_version_warns_with_both_numbers(served_home: Paths) -> None:
    """Placeholder versions cannot be live-checked: --dry-run here; tests/e2e/test_rollback_warning.py rolls back."""
    add_placeholder_versions(served_home, "q", [1, 2], metrics={1: {"miou": 0.143}, 2: {"miou": 0.402}})
    with registry.transaction(served_home) as reg:
        reg.model("q").stable = 2
        reg.model("q").history = history(("promote", None, 1, "ok"), ("promote", 1, 2, "ok"))
    result = runner.invoke(app, ["rollback", "q", "--dry-run"])
    assert result.exit_code == 0, result.output
    warning = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "0.1430" in warning[0] and "0.4020" in warning[0], result.stderr
    assert "warning" not in result.stdout
    as_json = runner.invoke(app, ["rollback", "q", "--dry-run", "--json"])
    assert json.loads(as_json.stdout)["warnings"] == [warning[0].removeprefix("warning: ")]
    add_placeholder_versions(served_home, "q", [3], metrics={3: {"miou": 0.41}})
    assert "warning" not in runner.invoke(app, ["rollback", "q", "--to", "3", "--dry-run"]).stderr  # not worse


def test_history_words_for_canaries_old_and_new(served_home: Paths) -> None:
    with registry.transaction(served_home) as reg:
        reg.model("m").history += history(("canary", 1, 2, "ok"), ("rollback", 1, 1, "ok"), ("withdraw", 2, 1, "ok"))
    out = " ".join(runner.invoke(app, ["history", "m"]).stdout.split())
    assert "canary 2 beside stable 1" in out
    assert "canary withdrawn (stable stays 1)" in out  # an old registry's withdrawal, written as rollback 1 -> 1
    assert "canary 2 withdrawn" in out
    assert "rollback 1 -> 1" not in out


def test_server_states_read_failed_and_unloaded() -> None:
    assert state_words("END: NOT_FOUND: no such file") == "failed: NOT_FOUND: no such file"
    assert (state_words("END"), state_words("AVAILABLE"), state_words("LOADING")) == ("unloaded", "AVAILABLE", "LOADING")
    versions = [VersionStatus(1, "ckpt/a/ckpt-1", 1, "2026-01-01T00:00:00", True, None, 0.5, servers={"s": "END"}),
                VersionStatus(2, "ckpt/a/ckpt-2", 2, "2026-01-01T00:00:00", True, None, 0.5,
                              servers={"s": "END: Failed to load: bad graph"})]
    report = StatusReport([ModelStatus("m", 1, None, versions, generations={"s": 3})], servers={"s": "ok"}, generation=4)
    console = Console(width=80, record=True, highlight=False, soft_wrap=True)
    old = render.stdout
    render.stdout = console
    try:
        render.render_status(report)
    finally:
        render.stdout = old
    text = console.export_text()
    assert "unloaded" in text and "failed: Failed to load: bad graph" in " ".join(text.split())
    assert "END" not in text and "generation" not in text
    assert "serves recorded state #3, not the newest #4: run mlc reconcile" in text


def test_tables_wrap_at_80_columns_never_cut(served_home: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    with registry.transaction(served_home) as reg:
        for v in reg.model("m").versions:
            v.checkpoint = f"/data/experiments/segmentation/a-very-long-run-folder-name-{v.version}/ckpt-{v.version}0000"
            v.report["metrics"] = {"miou": 0.123456789}
    monkeypatch.setattr(render, "stdout", Console(width=80, highlight=False, soft_wrap=True))
    result = runner.invoke(app, ["status", "m"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    table = lines[:lines.index(next(line for line in lines if line.startswith("last rollout")))]
    assert all(len(line.rstrip()) <= 80 for line in table), result.stdout
    assert "…" not in result.stdout
    assert "a-very-long-run-folder-name-1" in "".join(line.strip() for line in lines)


def test_json_errors_are_an_object_on_stdout_and_a_line_on_stderr(served_home: Paths) -> None:
    result = runner.invoke(app, ["promote", "m", "9", "--json"])
    assert result.exit_code != 0
    error = json.loads(result.stdout)["error"]
    assert set(error) == {"type", "message", "exit_code"} and error["exit_code"] == result.exit_code
    assert result.stderr.strip() == f"Error: {error['message']}"
    plain = runner.invoke(app, ["promote", "m", "9"])
    assert plain.stdout == "" and plain.stderr == result.stderr


def test_status_flags_a_config_naming_another_homes_repository(
        served_home: Paths, tmp_path: Path, python: str, subprocess_env: dict[str, str]) -> None:
    assert not [d for m in json.loads(runner.invoke(app, ["status", "--json"]).stdout)["models"] for d in m["drift"]]
    elsewhere = Paths.from_env(tmp_path / "the-home-it-was-copied-from")
    config = tfs_config.build(elsewhere, tfs_config.served_from_registry(registry.load(served_home)))
    tfs_config.write(served_home, config)
    for out in (runner.invoke(app, ["status", "--json"]).stdout,
                subprocess.run([python, "-m", "lifecycle", "status", "--json"], capture_output=True, text=True,
                               env=dict(subprocess_env, MLC_HOME=str(served_home.home)), timeout=60, check=True).stdout):
        (m,) = [m for m in json.loads(out)["models"] if m["name"] == "m"]
        (drift,) = m["drift"]
        assert f"serves m from {elsewhere.model_repo}/m, outside this home's repository {served_home.model_repo}" in drift
    assert "outside this home's repository" in runner.invoke(app, ["status"]).stdout
