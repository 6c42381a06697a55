"""The check that fast paths (``--help``, ``status``, ``history``, pure modules) import no TensorFlow.

It needs a fresh interpreter: the test process itself has imported TensorFlow long ago.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence

_MARK = "tensorflow modules imported: "

# Child epilogue: report every tensorflow module on the last stdout line.
_REPORT = (
    "\nimport sys as _sys, json as _json\n"
    f"print({_MARK!r} + _json.dumps(sorted(m for m in _sys.modules if m.split('.')[0] == 'tensorflow')))\n"
)

_COMMANDS = (
    "from typer.testing import CliRunner as _Runner\n"
    "from lifecycle.cli import app as _app\n"
    "for _argv in {argv!r}:\n"
    "    _r = _Runner().invoke(_app, _argv)\n"
    "    assert _r.exit_code == 0, (_argv, _r.output)\n"
    "    print(_r.stdout)\n"
)


def assert_no_tensorflow(what: str | Sequence[Sequence[str]], env: Mapping[str, str], timeout: float = 120) -> str:
    """Run ``what`` in a fresh interpreter and fail if any ``tensorflow`` module got imported.

    ``what`` is Python source, or a list of mlc command lines (``[["status", "--json"]]``) run in
    order through typer's CliRunner, each of which must exit 0. Returns what the child printed
    (the commands' output), for further asserts.
    """
    code = what if isinstance(what, str) else _COMMANDS.format(argv=[list(a) for a in what])
    run = subprocess.run([sys.executable, "-c", code + _REPORT], env=dict(env), capture_output=True, text=True,
                         timeout=timeout)
    assert run.returncode == 0, run.stderr[-3000:]
    printed, _, report = run.stdout.rstrip("\n").rpartition("\n")
    assert report.startswith(_MARK), run.stdout[-3000:]
    imported = json.loads(report[len(_MARK):])
    assert imported == [], f"TensorFlow was imported: {imported[:5]}"
    return printed
