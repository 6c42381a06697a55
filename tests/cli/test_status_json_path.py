"""CLI: ``mlc status [MODEL] --json`` runs without typer, rich, TensorFlow, PyYAML (no servers file),
logging or (with the record mlc keeps of configs/models.config) protobuf, and prints what the typer
command prints."""

from __future__ import annotations

import json
import subprocess

from typer.testing import CliRunner

from lifecycle.cli import app
from lifecycle.store.config import Paths

CODE = (
    "import sys\n"
    "from lifecycle.cli import main\n"
    "sys.argv = ['mlc'] + sys.argv[1:]\n"
    "try:\n"
    "    main()\n"
    "finally:\n"
    "    heavy = sorted(m for m in ('typer', 'rich', 'pydantic', 'tensorflow', 'google.protobuf', 'yaml', 'logging') if m in sys.modules)\n"
    "    print('imported:', heavy, file=sys.stderr)\n"
)


def run(python: str, env: dict[str, str], home: Paths, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([python, "-c", CODE, *args], env=dict(env, MLC_HOME=str(home.home)),
                          capture_output=True, text=True, timeout=120)


def test_status_json_matches_the_typer_command_without_its_imports(
        served_home: Paths, python: str, subprocess_env: dict[str, str]) -> None:
    for args in (["status", "--json"], ["status", "m", "--json"], ["status", "--json", "n"], ["status", "--all", "--json"]):
        out = run(python, subprocess_env, served_home, *args)
        assert out.returncode == 0, out.stderr
        assert out.stderr.splitlines()[-1] == "imported: []"
        typer_out = CliRunner().invoke(app, args)
        assert typer_out.exit_code == 0, typer_out.output
        fast, slow = json.loads(out.stdout), json.loads(typer_out.stdout)
        for data in (fast, slow):  # servers are read live; the rest must be equal
            data.pop("servers", None)
        assert fast == slow


def test_status_json_of_an_unknown_model_is_one_line_and_the_same_exit_code(
        served_home: Paths, python: str, subprocess_env: dict[str, str]) -> None:
    out = run(python, subprocess_env, served_home, "status", "nosuch", "--json")
    typer_out = CliRunner().invoke(app, ["status", "nosuch", "--json"])
    assert out.returncode == typer_out.exit_code != 0
    assert json.loads(out.stdout) == json.loads(typer_out.stdout) == {"error": {
        "type": "ModelNotFound", "message": "model 'nosuch' is not in the registry (registered: m, n)", "exit_code": 1}}
    assert out.stderr.splitlines()[0] == typer_out.stderr.strip().splitlines()[0]
    assert out.stderr.splitlines()[0].startswith("Error: model 'nosuch' is not in the registry")


def test_other_status_command_lines_go_through_typer(
        served_home: Paths, python: str, subprocess_env: dict[str, str]) -> None:
    out = run(python, subprocess_env, served_home, "status", "--json", "--help")
    assert out.returncode == 0 and "Show the registry" in out.stdout
    assert "typer" in out.stderr.splitlines()[-1]
