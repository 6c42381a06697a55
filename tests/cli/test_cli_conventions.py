"""``mlc --version`` (from package metadata, without TensorFlow) and shell completion for bash, zsh and fish."""

from __future__ import annotations

import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lifecycle.cli import app
from lifecycle.cli.commands import installed_version
from tests.support.no_tensorflow import assert_no_tensorflow

# Runs the console entry point as the `mlc` script does (click names the program after argv[0]).
MLC = "import sys\nfrom lifecycle.cli import main\nsys.argv[0] = 'mlc'\nmain()\n"


def test_version_names_mlc_tensorflow_and_the_serving_api(subprocess_env: dict[str, str]) -> None:
    code = "import sys\nfrom lifecycle.cli import main\nsys.argv[1:] = ['--version']\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
    printed = assert_no_tensorflow(code, subprocess_env)
    lines = printed.splitlines()[:3]
    assert lines == [
        f"mlc {metadata.version('mlc')}",
        f"tensorflow {installed_version('tensorflow')}",
        f"tensorflow-serving-api {metadata.version('tensorflow-serving-api')}",
    ]
    assert installed_version("tensorflow") != "not installed"


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_the_entry_point_imports_no_tensorflow_for_help_of_a_tensorflow_command(
    flag: str, subprocess_env: dict[str, str]
) -> None:
    code = MLC.replace("main()\n", f"sys.argv[1:] = ['register', {flag!r}]\ntry:\n    main()\nexcept SystemExit:\n    pass\n")
    assert "Usage: mlc register [OPTIONS] PATH" in assert_no_tensorflow(code, subprocess_env)


def test_a_missing_distribution_is_named_not_installed() -> None:
    assert installed_version("mlc-no-such-distribution") == "not installed"


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash on this machine")
def test_show_completion_under_bash_prints_bash_s_script(python: str, subprocess_env: dict[str, str]) -> None:
    # typer detects the shell from the process tree: run mlc as a child of bash (`; exit` keeps
    # bash from exec-ing it in place).
    done = subprocess.run(["bash", "-c", '"$0" -c "$1" --show-completion; exit $?', python, MLC],
                          env=subprocess_env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "complete -o default -F _mlc_completion mlc" in done.stdout
    assert "_MLC_COMPLETE=complete_bash" in done.stdout


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash on this machine")
def test_bash_completes_command_names_without_tensorflow(subprocess_env: dict[str, str]) -> None:
    env = dict(subprocess_env, _MLC_COMPLETE="complete_bash", COMP_WORDS="mlc pro", COMP_CWORD="1")
    code = MLC.replace("main()\n", "try:\n    main()\nexcept SystemExit:\n    pass\n")
    printed = assert_no_tensorflow(code, env)
    assert printed.splitlines()[0] == "promote"


# With shell detection off (typer's own switch for tests), --show-completion and
# --install-completion take the shell's name.
@pytest.mark.parametrize(("shell", "mark"), [("bash", "complete -o default -F _mlc_completion mlc"),
                                             ("zsh", "compdef _mlc_completion mlc"),
                                             ("fish", "complete --command mlc")])
def test_show_completion_for_each_shell(shell: str, mark: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    shown = CliRunner().invoke(app, ["--show-completion", shell])
    assert shown.exit_code == 0, shown.output
    assert mark in shown.stdout


@pytest.mark.parametrize(("shell", "script"), [("bash", ".bash_completions/mlc.sh"), ("zsh", ".zfunc/_mlc"),
                                               ("fish", ".config/fish/completions/mlc.fish")])
def test_install_completion_writes_the_script_under_home(
    shell: str, script: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    monkeypatch.setenv("HOME", str(tmp_path))
    done = CliRunner().invoke(app, ["--install-completion", shell])
    assert done.exit_code == 0, done.output
    assert f"{shell} completion installed" in done.stdout
    assert "mlc" in (tmp_path / script).read_text()
