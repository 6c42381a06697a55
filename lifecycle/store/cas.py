"""Compare-and-swap updates of one document: the only way mlc mutates a shared document.

:func:`update` reads the document with its generation, applies a pure function to the bytes and
writes the result conditionally at that generation. When another writer got there first
(:class:`~lifecycle.errors.StaleGeneration`) it re-reads and applies the function again, after
an exponential backoff with full jitter, so that racing writers spread out instead of colliding
again; after a bounded number of attempts it gives up with StaleGeneration. It never
overwrites: every write it makes is conditional.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from lifecycle.errors import StaleGeneration
from lifecycle.store.base import Document, Store

DEFAULT_ATTEMPTS = 30
BASE_DELAY_S = 0.002
MAX_DELAY_S = 0.5


def backoff(attempt: int, base: float = BASE_DELAY_S, cap: float = MAX_DELAY_S) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based): full jitter on 2**attempt * base."""
    return random.uniform(0.0, min(cap, base * (2 ** attempt)))


def update(
    store: Store,
    key: str,
    mutate: Callable[[bytes | None], bytes | None],
    attempts: int = DEFAULT_ATTEMPTS,
) -> Document | None:
    """Apply ``mutate`` to the document at ``key`` by compare-and-swap; return what is stored after.

    ``mutate`` gets the current bytes (None when the document does not exist) and returns the
    new bytes, or None to leave the document as it is. It may run several times (once per lost
    race), so it must not have side effects; an exception from it ends the update unwritten.
    """
    for attempt in range(attempts):
        current = store.read(key)
        new = mutate(None if current is None else current.data)
        if new is None or (current is not None and new == current.data):
            return current
        try:
            generation = store.write(key, new, None if current is None else current.generation)
        except StaleGeneration:
            if attempt + 1 < attempts:
                time.sleep(backoff(attempt))
            continue
        return Document(new, generation)
    raise StaleGeneration(
        f"{store.url}/{key} kept changing during {attempts} attempts to update it (other mlc processes "
        "are writing it); retry the command"
    )
