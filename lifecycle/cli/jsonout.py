"""``--json`` output, and ``mlc status [MODEL] --json`` without typer and rich.

Scripts poll ``mlc status --json``; importing typer (which imports pydantic) and rich is most
of that command's time, so :func:`main` in ``lifecycle.cli`` hands that exact command line to
:func:`status_json` first. It makes the same ``api.status`` call and prints the same JSON as
the typer command; every other command line (options, ``--help``) goes through typer.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def print_json(data: Any) -> None:
    """Write ``data`` as JSON to stdout (no rich markup, no wrapping)."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def status_json(argv: list[str]) -> int | None:
    """Run ``status [MODEL] --json [--all]`` and return its exit code; None for any other command line."""
    words = [a for a in argv if a not in ("--json", "--all")]
    if argv.count("--json") != 1 or argv.count("--all") > 1 or not 1 <= len(words) <= 2 or words[0] != "status" \
            or any(w.startswith("-") for w in words):
        return None
    from lifecycle import api
    from lifecycle.errors import LifecycleError

    try:
        report = api.status(words[1] if len(words) == 2 else None, all_versions="--all" in argv)
    except LifecycleError as e:  # as the typer command's run(): one line, the error's exit code
        sys.stderr.write(f"Error: {e.message}\n")
        return e.exit_code
    print_json(report.to_dict())
    return 0
