"""Waiting in tests: poll a condition until it holds, and fail naming what never happened.

Every wait in the suite goes through here: a test waits on an observable event (a state, a
counter, a file), never sleeps and then asserts that nothing changed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

INTERVAL = 0.02


def poll(
    condition: Callable[[], T],
    timeout: float,
    interval: float = INTERVAL,
    ignore: tuple[type[BaseException], ...] = (),
) -> tuple[T | None, BaseException | None]:
    """Call ``condition`` every ``interval`` s until it returns something truthy or ``timeout`` s pass.

    Returns ``(value, None)`` on success and ``(None, last ignored error)`` on timeout. An exception
    of a type in ``ignore`` (a server still starting, a file caught mid-write) counts as "not yet";
    any other propagates at once.
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = condition()
        except ignore as e:
            last = e
        else:
            if value:
                return value, None
        if time.monotonic() > deadline:
            return None, last
        time.sleep(interval)


def wait_until(
    condition: Callable[[], T],
    timeout: float = 30.0,
    what: str = "condition",
    interval: float = INTERVAL,
    ignore: tuple[type[BaseException], ...] = (),
    details: Callable[[], object] | None = None,
) -> T:
    """Wait until ``condition()`` is truthy and return it; fail the test after ``timeout`` s.

    The failure names ``what``, the last ignored error and, if given, ``details()`` (for example
    a child process's stderr).
    """
    value, last = poll(condition, timeout, interval, ignore)
    if value:
        return value
    message = f"timed out after {timeout:g} s waiting for {what}"
    if last is not None:
        message += f" (last error: {type(last).__name__}: {last})"
    if details is not None:
        message += f"\n{details()}"
    raise AssertionError(message)
