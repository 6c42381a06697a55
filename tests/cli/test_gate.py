"""The quality gate on promote, without TensorFlow: versions are registry records with metrics and
a placeholder saved_model.pb; refusals happen before any server is touched. The end-to-end gate
tests with real DeepLab versions and a server are in test_gate_e2e.py.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import yaml
from typer.testing import CliRunner

from lifecycle import api, rollout
from lifecycle.cli import app
from lifecycle.errors import FailedPrecondition, UsageError
from lifecycle.serving import tfs_config
from lifecycle.store import registry
from lifecycle.store.config import Paths
from lifecycle.store.registry import HistoryEvent
from tests.support.placeholders import add_placeholder_versions

MODEL = "deeplab"
EVAL = {"source": "synthetic", "seed": 20170605, "count": 16, "size": 64, "classes": [1, 3]}
runner = CliRunner()


@pytest.fixture
def home(make_home: Callable[..., Paths], monkeypatch: pytest.MonkeyPatch) -> Paths:
    """A home with the real deeplab definition and three placeholder versions; stable is 3 (mIoU 0.50)."""
    paths = make_home()
    monkeypatch.setenv("MLC_HOME", str(paths.home))
    scores = {1: (0.30, EVAL), 2: (0.49, EVAL), 3: (0.50, EVAL), 4: (0.70, {**EVAL, "count": 64})}
    add_placeholder_versions(paths, MODEL, list(scores), stable=3,
                             metrics={v: {"miou": miou, "eval": eval_set} for v, (miou, eval_set) in scores.items()})
    with registry.transaction(paths) as reg:
        reg.model(MODEL).history.append(HistoryEvent("promote", None, 3, "ok", reason="setup"))
        tfs_config.write(paths, tfs_config.build(paths, tfs_config.served_from_registry(reg)))
    return paths


def set_drop(paths: Paths, value: float) -> None:
    path = paths.definition_file(MODEL)
    data = yaml.safe_load(path.read_text())
    data["thresholds"] = {"max_miou_drop": value}
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def gate(paths: Paths, version: int, force: bool = False) -> str | None:
    rec = registry.load(paths).model(MODEL)
    return rollout.quality_gate(paths, rec, rec.version(version), force)


def test_the_repository_definition_declares_the_tolerance_the_gate_reads(home: Paths) -> None:
    definition = yaml.safe_load(home.definition_file(MODEL).read_text())
    assert definition["thresholds"]["max_miou_drop"] == pytest.approx(0.02)
    assert gate(home, 2) is None  # 0.49 is within 0.02 of 0.50
    with pytest.raises(FailedPrecondition, match=r"version 1 has mIoU 0\.3000, below stable 3's 0\.5000 by more than the tolerance 0\.02"):
        gate(home, 1)


@pytest.mark.parametrize(("drop", "v2_passes", "v1_passes"), [(0.0, False, False), (0.015, True, False), (0.19, True, False), (0.25, True, True)])
def test_the_tolerance_comes_from_the_model_definition(home: Paths, drop: float, v2_passes: bool, v1_passes: bool) -> None:
    set_drop(home, drop)  # stable 3 scores 0.50; version 2 0.49, version 1 0.30
    for version, passes in ((2, v2_passes), (1, v1_passes)):
        if passes:
            assert gate(home, version) is None
        else:
            with pytest.raises(FailedPrecondition, match=f"by more than the tolerance {drop:g}"):
                gate(home, version)


def test_versions_scored_on_different_evaluation_sets_are_not_compared(home: Paths) -> None:
    with pytest.raises(FailedPrecondition, match="different evaluation sets .*count 64.* vs .*count 16"):
        gate(home, 4)  # a higher mIoU, but on another set
    assert "forced past the quality gate" in (gate(home, 4, force=True) or "")


def test_without_a_stable_version_or_metrics_the_gate_passes(home: Paths) -> None:
    with registry.transaction(home) as reg:
        reg.model(MODEL).stable = None
    assert gate(home, 1) is None
    with registry.transaction(home) as reg:
        rec = reg.model(MODEL)
        rec.stable = 3
        rec.version(1).report.pop("metrics")
    assert gate(home, 1) is None


def test_force_without_a_reason_is_refused_and_changes_nothing(home: Paths) -> None:
    config = home.serving_config.read_bytes()
    with pytest.raises(UsageError, match="--force overrides the quality gate: version 1 has mIoU 0.3000.*--reason"):
        api.promote(MODEL, 1, force=True, paths=home)
    refused = runner.invoke(app, ["promote", MODEL, "1"])
    assert refused.exit_code == 1
    assert "promote with --force --reason TEXT to override" in refused.stderr
    no_reason = runner.invoke(app, ["promote", MODEL, "1", "--force"])
    assert no_reason.exit_code == 2 and "say why with --reason TEXT" in no_reason.stderr
    rec = registry.load(home).model(MODEL)
    assert rec.stable == 3 and len(rec.history) == 1
    assert home.serving_config.read_bytes() == config


def test_a_forced_dry_run_shows_the_gate_note_in_the_plan(home: Paths) -> None:
    result = api.promote(MODEL, 1, force=True, reason="v3 mislabels cats", dry_run=True, paths=home)
    assert result.plan.forced is True
    assert any(n.startswith("forced past the quality gate: version 1") for n in result.plan.notes)


def test_mlc_status_shows_each_versions_miou(home: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from lifecycle.cli import render

    # A terminal wide enough for every column (at 80 columns rich shortens them all).
    monkeypatch.setattr(render, "stdout", Console(width=160, highlight=False, soft_wrap=True))
    result = runner.invoke(app, ["status", MODEL])
    assert result.exit_code == 0, result.output
    for value in ("0.300", "0.490", "0.500", "0.700"):
        assert value in result.stdout
    assert [v["miou"] for v in api.status(MODEL, paths=home).to_dict()["models"][0]["versions"]] == [0.30, 0.49, 0.50, 0.70]

