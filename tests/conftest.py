"""Shared pytest fixtures. Expensive artefacts (SavedModels, checkpoints) are session fixtures."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def subprocess_env() -> dict[str, str]:
    """Environment for child processes (mlc, mlc-model-server) that imports this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture(scope="session")
def python() -> str:
    """The interpreter running the tests, for child processes."""
    return sys.executable


@pytest.fixture(scope="session")
def half_plus_two_exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """half_plus_two version folders built once per session: tf1, tf1_text, tf2 and keras."""
    from tests.savedmodels import (
        build_half_plus_two_tf1,
        build_half_plus_two_tf2,
        build_keras,
    )

    root = tmp_path_factory.mktemp("half_plus_two_exports")
    return {
        "tf1": build_half_plus_two_tf1(root / "tf1"),
        "tf1_text": build_half_plus_two_tf1(root / "tf1_text", as_text=True),
        "tf2": build_half_plus_two_tf2(root / "tf2"),
        "keras": build_keras(root / "keras"),
    }
