"""The steps of a long command, told to whoever listens: the CLI's status line, or no one.

Library code calls :func:`step` at each stage (``exporting a SavedModel``, ``waiting until every
server reports 4 AVAILABLE``); nothing happens unless a caller listens with :func:`listening`,
as the command line does on a terminal. The listener lives in a context variable, so two api
calls in two threads (the web page's) never hear each other's steps. This module imports
nothing of mlc's and nothing heavy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

Listener = Callable[[str], None]

_listener: ContextVar[Listener | None] = ContextVar("mlc_progress_listener", default=None)


def step(text: str) -> None:
    """Say which step the running command is at now (a no-op unless someone listens)."""
    listener = _listener.get()
    if listener is not None:
        listener(text)


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Hear every :func:`step` reported in this context until the block ends."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)
