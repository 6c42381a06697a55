"""The mlc command line: parses, calls exactly one ``api`` function, renders.

Rendering is a rich table for people or JSON (``--json``) for scripts. Every command runs
through :func:`run`, which turns a :class:`LifecycleError` into one red line on stderr and
the error's exit code; the hidden ``--traceback`` flag shows the stack instead.

This module must not import TensorFlow (``mlc --help``, ``status`` and ``history`` are fast
paths); commands that need it import it inside ``api``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from lifecycle import api
from lifecycle.errors import LifecycleError

app = typer.Typer(
    name="mlc",
    help="mlc: model-version lifecycle manager for TensorFlow Serving.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)

T = TypeVar("T")

_state: dict[str, bool] = {"traceback": False}

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")]
ModelArg = Annotated[str, typer.Argument(help="Model name (configs/<model>.yaml).", show_default=False)]


@app.callback()
def _root(
    traceback: Annotated[
        bool, typer.Option("--traceback", hidden=True, help="Show the Python traceback on errors.")
    ] = False,
) -> None:
    """mlc: model-version lifecycle manager for TensorFlow Serving."""
    _state["traceback"] = traceback


def run(call: Callable[[], T]) -> T:
    """Run one api call; a LifecycleError becomes one red stderr line and its exit code."""
    try:
        return call()
    except LifecycleError as e:
        if _state["traceback"]:
            raise
        stderr.print(f"[red]Error:[/red] {e.message}", markup=True, highlight=False)
        raise typer.Exit(e.exit_code) from None


def print_json(data: Any) -> None:
    """Write ``data`` as JSON to stdout (no rich markup, no wrapping)."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


# --- status --------------------------------------------------------------------------------


@app.command()
def status(
    model: Annotated[str | None, typer.Argument(help="Only this model.", show_default=False)] = None,
    as_json: JsonOption = False,
) -> None:
    """Show the registry, the serving config and every server's live state side by side.

    Examples:

        mlc status

        mlc status deeplab --json
    """
    report = run(lambda: api.status(model))
    if as_json:
        print_json(report.to_dict())
        return
    render_status(report)


def render_status(report: api.StatusReport) -> None:
    """Print a status report as one rich table per model."""
    if not report.models:
        stdout.print("No models registered yet. Register a checkpoint with: mlc register RUN_DIR")
    for m in report.models:
        table = Table(title=f"{m.name}  (stable: {m.stable if m.stable is not None else '-'}"
                      + (f", canary: {m.canary}" if m.canary is not None else "") + ")")
        for col in ("version", "labels", "checkpoint", "step", "created", "validated", "mIoU", "golden digest"):
            table.add_column(col)
        for v in m.versions:
            table.add_row(
                str(v.version),
                ",".join(v.labels),
                v.checkpoint,
                "" if v.step is None else str(v.step),
                v.created,
                "yes" if v.validated else "NO",
                "" if v.miou is None else f"{v.miou:.3f}",
                (v.golden_digest or "")[:19],
            )
        stdout.print(table)
        for w in m.warnings:
            stdout.print(f"[yellow]warning:[/yellow] {w}")
    for w in report.warnings:
        stdout.print(f"[yellow]warning:[/yellow] {w}")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
