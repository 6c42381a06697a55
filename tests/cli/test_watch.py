"""mlc watch through the command line: output, refusals, and stopping on Ctrl-C and SIGTERM.

The watcher itself is tested in tests/unit/test_watcher.py.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from lifecycle.cli import app
from tests.support import forked_cli
from tests.support.polling import wait_until

# --- the command line -----------------------------------------------------------------------------


@pytest.fixture
def home_env(make_home: Callable[..., object], monkeypatch: pytest.MonkeyPatch) -> Path:
    paths = make_home()
    monkeypatch.setenv("MLC_HOME", str(paths.home))  # type: ignore[attr-defined]
    return paths.home  # type: ignore[attr-defined,no-any-return]


def test_cli_watch_once_json_on_an_empty_run_prints_events_and_a_summary(home_env: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    result = CliRunner().invoke(app, ["watch", str(run), "--once", "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["kind"] for line in lines] == ["watching", "stopped", "summary"]
    assert lines[-1]["stopped_by"] == "once" and lines[-1]["registered"] == []


def test_cli_watch_text_output(home_env: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["watch", str(tmp_path / "missing"), "--exit-after", "0.2"])
    assert result.exit_code == 0, result.output
    assert "does not exist yet; waiting for it" in result.stdout
    assert "Watched 1 folder: 0 registered, 0 already known, 0 failed, 0 promoted, 0 kept back by the gate." in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["FILE"], "is not a folder"),
        (["RUN/ckpt-5"], "is not a folder: mlc watch takes run folders"),
        (["RUN", "--model", "nope"], "nope"),
        (["RUN", "--settle", "-1"], "--settle"),
        (["RUN", "--max-events", "0"], "--max-events"),
    ],
)
def test_cli_watch_refuses_bad_input(home_env: Path, tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "FILE").write_text("not a run folder")
    (tmp_path / "RUN").mkdir()
    (tmp_path / "RUN" / "ckpt-5.index").write_bytes(b"")
    argv = ["watch"] + [str(tmp_path / a) if a.startswith(("FILE", "RUN")) else a for a in args]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code != 0
    assert message in result.output


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_cli_watch_stops_cleanly_on_ctrl_c_and_sigterm(make_home: Callable[..., Any], tmp_path: Path, sig: int) -> None:
    """``mlc watch`` in its own process (forked from one that imported TensorFlow once) stops on a signal."""
    paths = make_home()
    run = tmp_path / "run"
    run.mkdir()
    out, err = tmp_path / "watch.out", tmp_path / "watch.out.err"
    child = forked_cli.start(["watch", str(run), "--json", "--exit-after", "60"], {"MLC_HOME": str(paths.home)}, out)
    try:
        first = wait_until(lambda: out.exists() and out.read_text().partition("\n")[0], timeout=120,
                           what="the first event", details=lambda: err.read_text() if err.exists() else "")
        assert json.loads(first)["kind"] == "watching"
        os.kill(child.pid, sig)
        child.join(30)
    finally:
        if child.is_alive():
            child.kill()
            child.join()
    assert child.exitcode == 0, err.read_text()
    lines = [json.loads(line) for line in out.read_text().splitlines()[1:]]
    assert [line["kind"] for line in lines] == ["stopped", "summary"]
    assert lines[-1]["stopped_by"] == "signal"
    assert "stopping after the current checkpoint" in err.read_text()
