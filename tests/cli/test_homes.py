"""Homes: `mlc init`, commands outside a home, read-only commands that create nothing, the home line."""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lifecycle.cli import app
from tests.support.homes import CONFIGS, tree_state

runner = CliRunner()


def test_init_makes_a_home_from_a_builtin_and_refuses_to_make_it_twice(tmp_path: Path) -> None:
    home = tmp_path / "new" / "home"
    result = runner.invoke(app, ["init", str(home)])
    assert result.exit_code == 0, result.output
    assert (home / "model_repo").is_dir()
    assert (home / "configs" / "deeplab.yaml").read_bytes() == (CONFIGS / "deeplab.yaml").read_bytes()
    assert (home / "configs" / "test_image.png").is_file()
    before = tree_state(home)
    again = runner.invoke(app, ["init", str(home)])
    assert again.exit_code == 2 and "exists already" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    assert tree_state(home) == before
    shapes = runner.invoke(app, ["init", str(home), "--model", "shapes", "--json"])
    assert shapes.exit_code == 0, shapes.output
    made = json.loads(shapes.stdout)
    assert made["model"] == "shapes" and "data/shapes-mini" in made["created"]
    assert (home / "configs" / "shapes_test.png").is_file() and (home / "data" / "shapes-mini").is_dir()
    unknown = runner.invoke(app, ["init", str(tmp_path / "other"), "--model", "resnet"])
    assert unknown.exit_code == 2 and "unknown built-in definition 'resnet'" in unknown.stderr
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize("args", [
    ["status"], ["status", "--json"], ["history", "deeplab"], ["promote", "deeplab", "1"], ["rollback", "deeplab"],
    ["diff", "deeplab", "1", "2"], ["gc"], ["stop"], ["serve"], ["register", "ckpt/1"], ["sync", "--to", "mirror"],
])
def test_a_command_outside_a_home_says_so_in_one_line_and_creates_nothing(
        args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "configs").mkdir()  # a configs/ folder without a definition is not a home
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLC_HOME", raising=False)
    monkeypatch.delenv("MLC_REPOSITORY", raising=False)
    before = tree_state(tmp_path)
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {tmp_path} is not an mlc home") and "mlc init" in lines[0]
    if "--json" in args:
        assert json.loads(result.stdout)["error"]["type"] == "ConfigError"
    assert tree_state(tmp_path) == before


def test_read_only_commands_create_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "configs").mkdir()
    shutil.copy2(CONFIGS / "deeplab.yaml", tmp_path / "configs")  # a home by its definition alone: no model_repo/
    monkeypatch.setenv("MLC_HOME", str(tmp_path))
    before = tree_state(tmp_path)
    assert runner.invoke(app, ["status"]).exit_code == 0
    assert runner.invoke(app, ["status", "--json"]).exit_code == 0
    assert runner.invoke(app, ["history", "deeplab"]).exit_code == 1
    assert runner.invoke(app, ["diff", "deeplab", "1", "2"]).exit_code == 1
    assert tree_state(tmp_path) == before and not (tmp_path / "model_repo").exists()


def _on_a_terminal(python: str, env: dict[str, str], cwd: Path, *args: str) -> tuple[int, str, str]:
    """Run mlc with stderr on a pseudo-terminal (stdout a pipe); return (exit code, stdout, stderr)."""
    leader, follower = pty.openpty()
    try:
        done = subprocess.run([python, "-m", "lifecycle", *args], env=env, cwd=cwd, stdout=subprocess.PIPE,
                              stderr=follower, timeout=60, check=False)
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    return done.returncode, done.stdout.decode(), b"".join(chunks).decode().replace("\r\n", "\n")


@pytest.mark.parametrize("args", [["status"], ["status", "--json"], ["history", "deeplab", "--json"]])
def test_a_home_that_is_not_the_current_folder_is_named_first_on_a_terminal(
        args: list[str], tmp_path: Path, python: str, subprocess_env: dict[str, str]) -> None:
    home = tmp_path / "home"
    assert runner.invoke(app, ["init", str(home)]).exit_code == 0
    env = dict(subprocess_env, MLC_HOME=str(home))
    code, out, err = _on_a_terminal(python, env, tmp_path, *args)
    assert err.splitlines()[0] == f"mlc: home {home} (from $MLC_HOME)", err
    if "--json" in args:
        json.loads(out)  # stdout stays pure JSON: the home line is on stderr only
    piped = subprocess.run([python, "-m", "lifecycle", *args], env=env, cwd=tmp_path, capture_output=True, text=True,
                           timeout=60, check=False)
    assert "mlc: home" not in piped.stderr  # a pipe keeps one line per error
    same = _on_a_terminal(python, env, home, *args)
    assert "mlc: home" not in same[2]  # the current folder needs no naming
