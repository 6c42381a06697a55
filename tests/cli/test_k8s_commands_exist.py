"""Every command and flag that the rendered manifests and the Dockerfile run exists in the installed mlc.

The manifests name programs by string (``command: [mlc]``, ``args: [sync, --to, ...]``), so a
renamed subcommand or flag would only fail in a cluster. Here each container's command line is
checked three ways: the program is a console script of the installed ``mlc`` distribution; the
flags parse with the real parser (mlc's click command tree, mlc-model-server's flag table); and
each flag appears in the installed program's own ``--help``.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from lifecycle.cli import app
from lifecycle.server.config.flags import FLAGS, TF_SERVING_FLAGS, parse_flags
from tests.support.homes import REPO_ROOT

SCRIPTS = ("mlc", "mlc-model-server")


def rendered_containers(engine: str) -> list[dict[str, Any]]:
    """The init containers and containers of the Deployment that `mlc k8s render` prints."""
    result = CliRunner().invoke(app, ["k8s", "render", "hpt", "--repository", "s3://models/team-a", "--engine", engine])
    assert result.exit_code == 0, result.output
    pod = next(yaml.safe_load_all(result.stdout))["spec"]["template"]["spec"]
    return [*pod["initContainers"], *pod["containers"]]


def dockerfile_cmd() -> list[str]:
    """The Dockerfile's default command (its exec-form CMD)."""
    text = (REPO_ROOT / "Dockerfile").read_text()
    (line,) = [x for x in text.splitlines() if x.startswith("CMD ")]
    return json.loads(line[len("CMD "):])


def command_lines() -> list[tuple[str, list[str]]]:
    """(where, argv) for every command line the deployment runs, mlc's own and TF Serving's."""
    lines = [("Dockerfile CMD", dockerfile_cmd())]
    for engine in ("tfserving", "embedded"):
        for c in rendered_containers(engine):
            lines.append((f"{engine}/{c['name']}", [*c["command"], *c.get("args", [])]))
    return lines


def installed_help(script: str, *args: str) -> str:
    """``script *args --help`` of the installed console script (this checkout's code on PYTHONPATH)."""
    path = Path(sys.executable).parent / script
    assert path.exists(), f"{script} is not installed beside {sys.executable}: pip install -e '.[test]'"
    env = {**os.environ, "COLUMNS": "300", "NO_COLOR": "1", "TERM": "dumb"}
    done = subprocess.run([str(path), *args, "--help"], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def flag_names(args: list[str]) -> list[str]:
    """The ``--name`` part of each flag among ``args`` (``--x=1`` and ``--x 1`` alike)."""
    return [a.split("=", 1)[0] for a in args if a.startswith("--")]


def test_the_manifests_run_only_installed_programs() -> None:
    scripts = {ep.name for ep in importlib.metadata.distribution("mlc").entry_points if ep.group == "console_scripts"}
    assert set(SCRIPTS) <= scripts, f"console scripts of the installed mlc: {sorted(scripts)}"
    programs = {argv[0] for _, argv in command_lines()}
    assert programs == {"mlc", "mlc-model-server", "tensorflow_model_server"}


@pytest.mark.parametrize("where, argv", [pytest.param(w, a, id=w) for w, a in command_lines() if a[0] == "mlc"])
def test_mlc_subcommands_and_flags_exist(where: str, argv: list[str]) -> None:
    group = typer.main.get_command(app)
    assert isinstance(group, typer.main.TyperGroup)
    ctx = group.make_context("mlc", argv[1:], resilient_parsing=False)
    command = group.get_command(ctx, argv[1])
    assert command is not None, f"{where}: no mlc subcommand {argv[1]!r}"
    # The real parser: an unknown flag, a flag without its value or a bad value raises here.
    command.make_context(argv[1], argv[2:], parent=ctx, resilient_parsing=False)
    helptext = installed_help("mlc", argv[1])
    for flag in flag_names(argv[2:]):
        assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", helptext), f"{where}: `mlc {argv[1]} --help` lists no {flag}"


@pytest.mark.parametrize("where, argv", [pytest.param(w, a, id=w) for w, a in command_lines() if a[0] != "mlc"])
def test_model_server_flags_exist(where: str, argv: list[str]) -> None:
    values = parse_flags(argv[1:])  # raises FlagError on an unknown flag or a bad value
    names = {f.lstrip("-") for f in flag_names(argv[1:])}
    assert names == set(values) and names <= set(FLAGS)
    if argv[0] == "tensorflow_model_server":
        assert names <= TF_SERVING_FLAGS, f"{where}: mlc-only flags given to tensorflow_model_server: {names - TF_SERVING_FLAGS}"
        return
    helptext = installed_help("mlc-model-server")
    for name in names:
        assert f"--{name}=" in helptext, f"{where}: `mlc-model-server --help` lists no --{name}"


def test_a_wrong_flag_is_caught() -> None:
    """The checks above would notice a renamed flag."""
    group = typer.main.get_command(app)
    ctx = group.make_context("mlc", ["sync", "--too", "/models"], resilient_parsing=False)
    command = group.get_command(ctx, "sync")
    assert command is not None and group.get_command(ctx, "synch") is None
    with pytest.raises(Exception, match="--too"):
        command.make_context("sync", ["--too", "/models"], parent=ctx, resilient_parsing=False)
    from lifecycle.errors import FlagError

    with pytest.raises(FlagError):
        parse_flags(["--model_config_file_poll_seconds=2"])
