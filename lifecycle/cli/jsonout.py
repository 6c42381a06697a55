"""``--json`` output, and ``mlc status [MODEL] --json`` without typer and rich.

Scripts poll ``mlc status --json``; importing typer (which imports pydantic) and rich is most
of that command's time, so :func:`main` in ``lifecycle.cli`` hands that exact command line to
:func:`status_json` first. It makes the same ``api.status`` call and prints the same JSON as
the typer command; every other command line (options, ``--help``) goes through typer.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lifecycle.errors import LifecycleError


def print_json(data: Any) -> None:
    """Write ``data`` as JSON to stdout (no rich markup, no wrapping)."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def error_json(e: LifecycleError) -> dict[str, Any]:
    """An error as ``--json`` prints it on stdout: ``{"error": {"type", "message", "exit_code"}}``."""
    return {"error": {"type": type(e).__name__, "message": e.message, "exit_code": e.exit_code}}


def status_json(argv: list[str]) -> int | None:
    """Run ``status [MODEL] --json [--all]`` and return its exit code; None for any other command line."""
    words = [a for a in argv if a not in ("--json", "--all")]
    if argv.count("--json") != 1 or argv.count("--all") > 1 or not 1 <= len(words) <= 2 or words[0] != "status" \
            or any(w.startswith("-") for w in words):
        return None
    from lifecycle import api
    from lifecycle.errors import ConfigError, LifecycleError
    from lifecycle.store.config import Paths
    from lifecycle.store.home import home_line, is_home, not_a_home

    try:  # as the typer command's Command.invoke and run(): the home line, then one error line and JSON
        paths = Paths.from_env()
        line = home_line(paths)
        if line is not None and sys.stderr.isatty():
            sys.stderr.write(line + "\n")
        if not is_home(paths):
            raise ConfigError(not_a_home(paths))
        report = api.status(words[1] if len(words) == 2 else None, paths=paths, all_versions="--all" in argv)
    except LifecycleError as e:
        sys.stderr.write(f"Error: {e.message}\n")
        print_json(error_json(e))
        return e.exit_code
    print_json(report.to_dict())
    return 0
