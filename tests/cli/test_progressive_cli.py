"""``mlc rollout`` (progressive) through the CLI without servers: the plan, its refusals, and nothing changed on disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lifecycle.cli import app
from lifecycle.serving import tfs_config
from lifecycle.store import journal, registry
from lifecycle.store.config import Paths
from lifecycle.store.registry import HistoryEvent, VersionRecord
from tests.support.homes import tree_state

runner = CliRunner()


def home(root: Path, rollout: str = "") -> Paths:
    """Model hpt with published versions 1 and 2 (placeholder SavedModels: nothing here loads them), stable 1."""
    paths = Paths(root.resolve())
    paths.configs.mkdir(parents=True)
    (paths.configs / "hpt.yaml").write_text(
        "name: hpt\nnetwork: {}\n"
        "signature: {key: serving_default, inputs: {x: {dtype: float32, shape: [-1, 1]}}, "
        "outputs: {y: {dtype: float32, shape: [-1, 1]}}}\n" + rollout
    )
    with registry.transaction(paths) as reg:
        rec = reg.model("hpt", create=True)
        for v in (1, 2):
            assert paths.store.claim_version("hpt", v, "tests")
            staged = paths.store.staging_dir("hpt") / f".staging-test-{v}"
            staged.mkdir(parents=True)
            (staged / "saved_model.pb").write_bytes(b"")
            paths.store.publish_version("hpt", v, staged)
            rec.versions.append(VersionRecord(v, f"digest{v}", f"ckpt/run/ckpt-{v}", v * 100, True, {}))
        rec.stable = 1
        rec.history.append(HistoryEvent("promote", None, 1, "ok", reason="initial"))
        tfs_config.write(paths, tfs_config.build(paths, tfs_config.served_from_registry(reg)))
    return paths


@pytest.fixture
def paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    p = home(tmp_path, "rollout:\n  steps: [shadow 2s, 10% 3s]\n  min_requests: 5\n")
    monkeypatch.setenv("MLC_HOME", str(p.home))
    return p


def test_dry_run_prints_the_plan_from_the_definition_and_changes_nothing(paths: Paths) -> None:
    before = tree_state(paths.home)
    result = runner.invoke(app, ["rollout", "hpt", "2", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "Plan for the rollout of hpt 2 on 0 server(s) (steps from" in result.output
    assert "1. shadow: shadow (every stable answer compared with the candidate's), hold 2 s" in result.output
    assert "2. 10%: 10% of default-route requests to the candidate, hold 3 s" in result.output
    assert "at least 5 requests (fewer: wait up to 120 s)" in result.output
    assert "commit: record labels stable=2 in the registry" in result.output
    result = runner.invoke(app, ["rollout", "hpt", "2", "--dry-run", "--json", "--steps", "5%:1s,25%:1s",
                                 "--max-error-rate", "0.05"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert {k: data[k] for k in ("model", "version", "result", "reason", "steps")} == {
        "model": "hpt", "version": 2, "result": "dry-run", "reason": "", "steps": []}
    assert data["plan"]["steps"][0] == "5%: 5% of default-route requests to the candidate, hold 1 s"
    assert "stable's + 0.05" in data["plan"]["steps"][-1]
    assert tree_state(paths.home) == before


@pytest.mark.parametrize(("args", "code", "message"), [
    (["rollout", "hpt", "2", "--steps", "5%:soon"], 2, "--steps: expected a duration such as 30s"),
    (["rollout", "hpt", "2", "--steps", "50%:1s,5%:1s"], 2, "weights must rise"),
    (["rollout", "hpt", "2", "--too-few", "maybe"], 2, "--too-few must be wait or abort"),
    (["rollout", "hpt", "--abort", "--revert"], 2, "--abort and --revert exclude each other"),
    (["rollout", "hpt", "2", "--abort"], 2, "--abort takes only MODEL"),
    (["rollout", "hpt"], 2, "say which version to roll out"),
    (["rollout", "hpt", "1"], 1, "version 1 of hpt is already stable"),
    (["rollout", "hpt", "7"], 1, "7"),
    (["rollout", "hpt", "2"], 1, "no servers run or are listed"),
    (["rollout", "hpt", "--abort"], 1, "no rollout of hpt is running"),
    (["rollout", "hpt", "--resume"], 1, "no interrupted rollout of hpt is pending"),
    (["rollout", "hpt", "--revert"], 1, "no interrupted rollout of hpt is pending"),
])
def test_refusals_are_one_line_and_change_nothing(paths: Paths, args: list[str], code: int, message: str) -> None:
    before = tree_state(paths.home)
    result = runner.invoke(app, args)
    assert result.exit_code == code, result.output
    assert message in result.output
    assert tree_state(paths.home) == before


def test_a_pending_rollout_journal_is_reported_and_points_to_resume_or_revert(paths: Paths) -> None:
    j = journal.Journal("rollout", "hpt", 2, {"stable": 1, "canary": None}, {"stable": 2, "canary": None}, pid=2**22 + 7)
    j.progress = {"stable": 1, "candidate": 2, "plan": {"steps": [{"name": "10%", "weight": 0.1, "shadow": 0.0, "hold": 3.0}]},
                  "steps": [], "current": {"step": "10%", "weight": 0.1, "versions": {
                      "1": {"requests": 90, "error_rate": 0.0, "p99_ms": 1.5, "agreement": None},
                      "2": {"requests": 10, "error_rate": 0.1, "p99_ms": 2.0, "agreement": None}}}}
    journal.write(paths, j)
    journal.step(paths, j, "traffic", "begin", "10%")
    result = runner.invoke(app, ["rollout", "hpt", "2"])
    assert result.exit_code == 1
    assert "resume it with `mlc rollout hpt --resume` or revert it with `mlc rollout hpt --revert`" in result.output
    result = runner.invoke(app, ["status", "hpt"])
    assert result.exit_code == 0, result.output
    assert "rollout interrupted: hpt 1 -> 2, step 10% (1 90% / 2 10%)" in result.output
    assert "version 2: 10 requests, error rate 0.100, p99 2.0 ms" in result.output
    result = runner.invoke(app, ["status", "hpt", "--json"])
    data = json.loads(result.output)["rollout"]
    assert data["step"] == "10%" and data["weights"] == {"1": 0.9, "2": 0.1} and data["running"] is False
