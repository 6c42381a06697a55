"""Meta-tests: every command and option is documented, and every command is in the README."""

from __future__ import annotations

import re
import subprocess

import pytest
import typer.main

from lifecycle.cli import app
from tests.support.homes import REPO_ROOT

COMMAND = typer.main.get_command(app)
COMMANDS = sorted(COMMAND.commands)


def test_there_are_commands() -> None:
    assert "status" in COMMANDS


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help_and_examples(name: str) -> None:
    cmd = COMMAND.commands[name]
    assert cmd.help and cmd.help.strip(), f"mlc {name} has no help text"
    assert "Examples" in cmd.help, f"mlc {name} --help shows no Examples block"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_and_argument_has_help(name: str) -> None:
    cmd = COMMAND.commands[name]
    for param in cmd.params:
        if getattr(param, "hidden", False):
            continue
        assert getattr(param, "help", None), f"mlc {name}: parameter {param.name!r} has no help text"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_is_in_the_readme(name: str) -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert re.search(rf"\bmlc {name}\b", readme), f"README.md does not mention `mlc {name}`"


def test_help_does_not_import_tensorflow(python: str, subprocess_env: dict[str, str]) -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from lifecycle.cli import app\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "for name in ('status', 'history'):\n"
        "    CliRunner().invoke(app, [name, '--help'])\n"
        "bad = sorted(m for m in sys.modules if m == 'tensorflow' or m.startswith('tensorflow.'))\n"
        "print('TF' if bad else 'clean', bad[:3])\n"
    )
    out = subprocess.run([python, "-c", code], env=subprocess_env, capture_output=True, text=True, check=True)
    assert out.stdout.startswith("clean"), out.stdout
