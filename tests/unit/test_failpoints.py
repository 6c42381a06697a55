"""Failpoints: inert unless MLC_FAILPOINTS names them; kill is a real SIGKILL at that point."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from lifecycle import failpoints

SCRIPT = (
    "from lifecycle.failpoints import failpoint\n"
    "for name in ('register:claimed', 'journal:label:done', 'store:publish'):\n"
    "    failpoint(name)\n"
    "    print('passed', name, flush=True)\n"
)


def run(setting: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != failpoints.ENV}
    if setting is not None:
        env[failpoints.ENV] = setting
    return subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=60)


def test_unset_or_unnamed_failpoints_are_inert() -> None:
    for setting in (None, "", "journal:label:begin,register:published"):
        r = run(setting)
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == ["passed register:claimed", "passed journal:label:done", "passed store:publish"]


@pytest.mark.parametrize("setting", ["journal:label:done", "other:point, journal:label:done=kill"])
def test_a_named_failpoint_kills_the_process_right_there(setting: str) -> None:
    r = run(setting)
    assert r.returncode == -signal.SIGKILL
    assert r.stdout.splitlines() == ["passed register:claimed"]


def test_actions_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(failpoints.ENV, "a:b=pause:0.5, c ,d=explode")
    assert failpoints.action("a:b") == "pause:0.5"
    assert failpoints.action("c") == "kill"
    assert failpoints.action("a") is None
    failpoints.failpoint("a:b=pause:0.5")  # not a name: inert
    with pytest.raises(ValueError, match="unknown action 'explode'"):
        failpoints.failpoint("d")
