"""Meta-tests: every command and option is documented in --help and in the README's CLI reference,
and --help imports no TensorFlow."""

from __future__ import annotations

import re

import pytest
import typer.main
from typer.core import TyperArgument, TyperOption
from typer.testing import CliRunner

from lifecycle.cli import app
from tests.support.homes import REPO_ROOT
from tests.support.no_tensorflow import assert_no_tensorflow

COMMAND = typer.main.get_command(app)
COMMANDS = sorted(COMMAND.commands)


def cli_reference() -> str:
    """The README's "CLI reference" section."""
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("## CLI reference"):]
    return section[: section.index("\n## ", 1)]


def usages(name: str) -> str:
    """Every backticked ``mlc NAME ...`` of the CLI reference, joined."""
    return " ".join(re.findall(rf"`mlc {name}\b[^`]*`", cli_reference()))


def visible_params(name: str) -> list[TyperOption | TyperArgument]:
    return [p for p in COMMAND.commands[name].params if not getattr(p, "hidden", False)]


def test_the_readme_documents_exactly_the_commands() -> None:
    assert len(COMMANDS) >= 10, COMMANDS
    documented = set(re.findall(r"`mlc ([a-z][a-z0-9-]*)", cli_reference()))
    assert documented == set(COMMANDS), f"README only: {documented - set(COMMANDS)}; CLI only: {set(COMMANDS) - documented}"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help_and_examples(name: str) -> None:
    cmd = COMMAND.commands[name]
    assert cmd.help and cmd.help.strip(), f"mlc {name} has no help text"
    assert "Examples" in cmd.help, f"mlc {name} --help shows no Examples block"
    shown = CliRunner().invoke(app, [name, "--help"], terminal_width=200)
    assert shown.exit_code == 0, shown.output
    assert cmd.help.strip().splitlines()[0] in shown.stdout


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_and_argument_has_help(name: str) -> None:
    shown = CliRunner().invoke(app, [name, "--help"], terminal_width=200).stdout
    for param in visible_params(name):
        text = getattr(param, "help", None)
        assert text and text.strip(), f"mlc {name}: parameter {param.name!r} has no help text"
        if isinstance(param, TyperOption):
            assert any(opt in shown for opt in param.opts), f"mlc {name} --help does not show {param.opts}"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_and_option_is_in_the_readme(name: str) -> None:
    usage = usages(name)
    assert usage, f"README.md's CLI reference has no `mlc {name} ...`"
    for param in visible_params(name):
        if isinstance(param, TyperOption):
            longs = [o for o in param.opts if o.startswith("--")]
            assert any(o in usage for o in longs), f"README.md's `mlc {name} ...` does not name {longs}"


def test_help_does_not_import_tensorflow(subprocess_env: dict[str, str]) -> None:
    printed = assert_no_tensorflow([["--help"], *([name, "--help"] for name in COMMANDS)], subprocess_env)
    assert all(f" {name} " in printed for name in COMMANDS)
