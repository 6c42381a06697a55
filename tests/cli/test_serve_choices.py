"""``mlc serve --engine`` and ``--reload`` are choices: --help lists them, and a wrong value is a
usage error (exit 2, typer's usage message naming the choices) that starts nothing and writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from lifecycle.cli import app
from tests.support.homes import new_home, tree_state

runner = CliRunner()


def test_serve_help_lists_the_engines_and_reload_modes() -> None:
    result = runner.invoke(app, ["serve", "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "--engine auto|embedded|tfserving" in result.output
    assert "--reload request|poll" in result.output


@pytest.mark.parametrize(("option", "value"), [("--engine", "docker"), ("--reload", "push")])
def test_a_value_outside_the_choices_is_a_usage_error_that_changes_nothing(
    tmp_path: Path, option: str, value: str
) -> None:
    home = new_home(tmp_path / "home")
    before = tree_state(home.home)
    result = runner.invoke(app, ["serve", option, value], env={"MLC_HOME": str(home.home)})
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.output and repr(value) in result.output
    assert ("'auto', 'embedded', 'tfserving'" if option == "--engine" else "'request', 'poll'") in result.output
    assert tree_state(home.home) == before
