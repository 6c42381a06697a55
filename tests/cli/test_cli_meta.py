"""Meta-tests: every command and option is documented in --help and in docs/cli.md, --help
follows one set of conventions (-h, placeholders, one-line summaries), and imports no TensorFlow."""

from __future__ import annotations

import inspect
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


def all_paths() -> list[tuple[str, ...]]:
    """Every command line that has a --help: the root, each command, each group's commands."""
    paths: list[tuple[str, ...]] = [()]
    for name, cmd in COMMAND.commands.items():
        paths.append((name,))
        paths += [(name, sub) for sub in getattr(cmd, "commands", {})]
    return paths


PATHS = all_paths()


def cli_reference() -> str:
    return (REPO_ROOT / "docs" / "cli.md").read_text(encoding="utf-8")


def reference_section(path: tuple[str, ...]) -> str:
    """The section of docs/cli.md that shows ``mlc PATH --help``."""
    sections = re.split(r"^## ", cli_reference(), flags=re.M)
    title = " ".join(("mlc", *path))
    found = [s for s in sections if s.split("\n", 1)[0] == title]
    assert len(found) == 1, f"docs/cli.md has {len(found)} sections '## {title}'"
    return found[0]


def visible_params(name: str) -> list[TyperOption | TyperArgument]:
    return [p for p in COMMAND.commands[name].params if not getattr(p, "hidden", False)]


def help_of(path: tuple[str, ...], flag: str = "--help", width: int = 200) -> str:
    shown = CliRunner().invoke(app, [*path, flag], terminal_width=width)
    assert shown.exit_code == 0, shown.output
    return shown.stdout


def test_the_reference_documents_exactly_the_commands() -> None:
    assert len(COMMANDS) >= 10, COMMANDS
    documented = set(re.findall(r"^## mlc ([a-z][a-z0-9-]*)$", cli_reference(), flags=re.M))
    assert documented == set(COMMANDS), f"docs/cli.md only: {documented - set(COMMANDS)}; CLI only: {set(COMMANDS) - documented}"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help_and_examples(name: str) -> None:
    cmd = COMMAND.commands[name]
    assert cmd.help and cmd.help.strip(), f"mlc {name} has no help text"
    assert "Examples" in cmd.help, f"mlc {name} --help shows no Examples block"
    assert cmd.help.strip().splitlines()[0] in help_of((name,))


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_and_argument_has_help(name: str) -> None:
    shown = help_of((name,))
    for param in visible_params(name):
        text = getattr(param, "help", None)
        assert text and text.strip(), f"mlc {name}: parameter {param.name!r} has no help text"
        if isinstance(param, TyperOption):
            assert any(opt in shown for opt in param.opts), f"mlc {name} --help does not show {param.opts}"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_is_in_the_reference(name: str) -> None:
    section = reference_section((name,))
    for param in visible_params(name):
        if isinstance(param, TyperOption):
            longs = [o for o in param.opts if o.startswith("--")]
            assert any(o in section for o in longs), f"docs/cli.md's `mlc {name}` does not name {longs}"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "mlc")
def test_h_is_help(path: tuple[str, ...]) -> None:
    assert help_of(path, "-h") == help_of(path, "--help")


# typer's own placeholders: `{model}` for a required argument, `<int range>`, `<list[Path]>` ...
TYPER_PLACEHOLDER = re.compile(r"\{[A-Za-z_.]+\}|<(?:str|int|float|bool|path|dir|file|list|text|uuid|datetime)\b[^>]*>")


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "mlc")
def test_placeholders_are_words_in_capitals(path: tuple[str, ...]) -> None:
    shown = help_of(path)
    usage = shown.splitlines()[0]
    assert not TYPER_PLACEHOLDER.search(usage), usage
    # The term column of the Arguments and Options sections (the help text beside it may name
    # files such as configs/<model>.yaml).
    terms = [line.strip().split("  ")[0] for line in shown.splitlines() if re.match(r"^  [-A-Za-z\[]", line)]
    assert not [t for t in terms if TYPER_PLACEHOLDER.search(t)], terms


def test_arguments_read_model_version_path() -> None:
    assert help_of(("promote",)).splitlines()[0] == "Usage: mlc promote [OPTIONS] MODEL VERSION"
    assert help_of(("register",)).splitlines()[0] == "Usage: mlc register [OPTIONS] PATH"
    assert help_of(("predict",)).splitlines()[0] == "Usage: mlc predict [OPTIONS] MODEL IMAGE..."
    assert help_of(("status",)).splitlines()[0] == "Usage: mlc status [OPTIONS] [MODEL]"
    assert "--timeout S " in help_of(("promote",)) and "--out DIR " in help_of(("predict",))


@pytest.mark.parametrize("width", [80, 100])
def test_each_summary_in_mlc_help_is_the_whole_first_docstring_line(width: int) -> None:
    # A terminal of 80 columns gives click a help width of 78.
    shown = help_of((), width=width - 2)
    rows = dict(re.findall(r"^  ([a-z0-9-]+) +(.+)$", shown.split("Commands:", 1)[1], flags=re.M))
    assert set(rows) == set(COMMANDS)
    for name, summary in rows.items():
        first = inspect.cleandoc(COMMAND.commands[name].help or "").splitlines()[0]
        assert summary == first, f"mlc --help cuts mlc {name}'s summary: {summary!r}"
        assert not summary.endswith("...")


def test_help_does_not_import_tensorflow(subprocess_env: dict[str, str]) -> None:
    printed = assert_no_tensorflow([["--help"], ["-h"], *([name, "--help"] for name in COMMANDS)], subprocess_env)
    assert all(f" {name} " in printed for name in COMMANDS)
