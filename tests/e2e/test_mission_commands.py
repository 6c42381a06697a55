"""The mission's four commands, typed exactly as the mission types them, in a fresh clone of this
repository: an mlc home with two definitions (deeplab and shapes), so register must know the model."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.mission import mlc, run_the_mission

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_the_mission_commands_work_as_typed_in_a_fresh_clone(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    home = tmp_path / "mlc"
    subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(home)], check=True, timeout=120)
    assert sorted(p.name for p in (home / "configs").glob("*.yaml")) == ["deeplab.yaml", "shapes.yaml"]
    env = {k: v for k, v in subprocess_env.items() if k != "MLC_HOME"}
    run_the_mission(home, env, "mlc train --model deeplab")
    status = json.loads(mlc(home, env, "mlc status --json").stdout)
    (deeplab,) = [m for m in status["models"] if m["name"] == "deeplab"]
    assert deeplab["stable"] == 3
    assert sorted(p for p in os.listdir(home / "model_repo" / "deeplab") if p.isdigit()) == ["1", "2", "3", "4"]


def test_register_names_the_candidates_when_no_definition_fits(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    """A checkpoint that neither network matches: one line naming both models and why, nothing written."""
    from tests.support.homes import tree_state

    home = tmp_path / "mlc"
    subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(home)], check=True, timeout=120)
    env = {k: v for k, v in subprocess_env.items() if k != "MLC_HOME"}
    # Written in this process (TensorFlow is loaded here already), not in a child that imports it again.
    import tensorflow as tf

    tf.train.Checkpoint(model=tf.Module()).write(str(home / "ckpt" / "odd" / "ckpt-1"))
    before = tree_state(home / "model_repo")
    result = mlc(home, env, "mlc register ckpt/odd/ckpt-1")
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "name one with --model" in line and "deeplab:" in line and "shapes:" in line, line
    assert tree_state(home / "model_repo") == before
