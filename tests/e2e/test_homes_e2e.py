"""Homes and words end to end: `mlc init --saved-model` writes a contract that `mlc register` then
matches, and a rollback to a worse real version warns with both numbers and still rolls back."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lifecycle import api
from lifecycle.cli import app
from lifecycle.store import registry
from lifecycle.store.config import Paths, load_definition
from tests.support.mission import mlc, run_the_mission

pytestmark = pytest.mark.e2e
runner = CliRunner()


def test_init_for_a_saved_model_writes_the_contract_register_then_matches(
        user_saved_models: dict[str, Path], tmp_path: Path) -> None:
    home = tmp_path / "seg"
    made = runner.invoke(app, ["init", str(home), "--saved-model", str(user_saved_models["keras_export"]),
                               "--name", "segmenter"])
    assert made.exit_code == 0, made.output
    paths = Paths.from_env(home)
    definition = load_definition(paths, "segmenter")
    assert "network" not in yaml.safe_load(paths.definition_file("segmenter").read_text())
    assert {s.name for s in definition.signature.inputs} >= {"images"}
    result = runner.invoke(app, ["register", str(user_saved_models["keras_export"])], env={"MLC_HOME": str(home)})
    assert result.exit_code == 0, result.output  # no --model: the one definition whose contract it keeps
    assert "as segmenter version 1" in result.stdout
    again = runner.invoke(app, ["init", str(home), "--saved-model", str(user_saved_models["keras_export"]),
                                "--name", "segmenter"])
    assert again.exit_code == 2 and "exists already" in again.stderr


def test_rollback_to_a_worse_version_warns_and_rolls_back(registered_home: Paths) -> None:
    definition = registered_home.definition_file("deeplab")
    definition.write_text(re.sub(r"max_miou_drop: [0-9.]+", "max_miou_drop: 0.0", definition.read_text()))
    rec = registry.load(registered_home).model("deeplab")
    worse, better = (rec.version(v).report["metrics"]["miou"] for v in (1, 3))
    assert worse < better, "later checkpoints of the tiny run score better"
    api.promote("deeplab", 1, paths=registered_home)
    api.promote("deeplab", 3, paths=registered_home)
    result = runner.invoke(app, ["rollback", "deeplab", "--reason", "demo"], env={"MLC_HOME": str(registered_home.home)})
    assert result.exit_code == 0, result.output
    (warning,) = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert f"{worse:.4f}" in warning and f"{better:.4f}" in warning and "tolerance 0" in warning
    assert registry.load(registered_home).model("deeplab").stable == 1
    assert "rollback 3 -> 1" in " ".join(runner.invoke(app, ["history", "deeplab"],
                                                       env={"MLC_HOME": str(registered_home.home)}).stdout.split())


def test_the_mission_commands_work_as_typed_in_a_fresh_init_home(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    env = {k: v for k, v in subprocess_env.items() if k != "MLC_HOME"}
    made = mlc(tmp_path, env, "mlc init home")
    assert made.returncode == 0, made.stderr
    run_the_mission(tmp_path / "home", env, "mlc train")  # one definition: no --model anywhere
