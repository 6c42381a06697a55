"""How history events read for people: ``promote 1 -> 2``, ``canary 3 beside stable 2``, ``canary 3 withdrawn``.

Old registries recorded a canary's withdrawal as a rollback from stable to the same stable;
it reads as a withdrawal too. This module must not import TensorFlow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lifecycle.store.registry import HistoryEvent


def version_text(n: int | None) -> str:
    """A version number, or ``-`` for none."""
    return "-" if n is None else str(n)


def event_change(e: HistoryEvent) -> str:
    """What one history event changed, in words."""
    before, after = version_text(e.from_version), version_text(e.to_version)
    if e.action == "withdraw":
        return f"canary {before} withdrawn"
    if e.action == "rollback" and e.from_version is not None and e.from_version == e.to_version:
        return f"canary withdrawn (stable stays {after})"  # written before withdraw had its own event
    if e.action == "canary":
        return f"canary {after}" + (f" beside stable {before}" if e.from_version is not None else " (no stable)")
    if e.action == "gc":
        return f"gc: version {before} deleted"
    if e.action == "promote" and e.from_version is None:
        return f"promote {after} (first)"
    return f"{e.action} {before} -> {after}"
