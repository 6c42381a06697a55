"""Calling something from several threads at once, for tests of servers and schedulers under load."""

from __future__ import annotations

import threading
from collections.abc import Callable

from lifecycle.errors import LifecycleError


def concurrently(n: int, call: Callable[[int], object], timeout: float = 10.0) -> list[object]:
    """``call(i)`` for i in 0..n-1 on n threads started together; each result, or the LifecycleError raised."""
    results: list[object] = [None] * n

    def one(i: int) -> None:
        try:
            results[i] = call(i)
        except LifecycleError as e:
            results[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    return results
