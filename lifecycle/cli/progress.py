"""The status line of a long command: its current step and the time since it began, on stderr.

Shown only when stderr is a terminal and the command does not print JSON, so pipes, scripts and
``--json`` output never see it; it is erased when the command ends (its result, or its one error
line, follows). The steps come from :func:`lifecycle.progress.step`, reported by the library.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from lifecycle import progress
from lifecycle.cli.render import stderr

# The commands that show a status line (the others are quick, or print as they go: train, watch).
SHOWN = frozenset({"register", "serve", "promote", "rollback", "rollout", "predict", "diff", "sync", "gc",
                   "reconcile", "init"})

_live: list[Progress] = []  # the status line being shown, if any


@contextmanager
def status_line(command: str, enabled: bool) -> Iterator[None]:
    """Show ``command``'s steps with elapsed time while the block runs (when ``enabled`` on a terminal)."""
    if not enabled or not stderr.is_terminal:
        yield
        return
    bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=stderr,
                   transient=True)
    task = bar.add_task(f"mlc {command}", total=None)

    def show(text: str) -> None:
        bar.update(task, description=f"mlc {command}: {escape(text)}")

    _live.append(bar)
    try:
        with bar, progress.listening(show):
            yield
    finally:
        _live.remove(bar)


def pause() -> None:
    """Take the status line off the screen (before a command prints while it keeps running: serve)."""
    for bar in _live:
        bar.stop()
