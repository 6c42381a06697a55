"""Whether ``mlc rollout`` (the progressive rollout command) is built: its cells skip until it is."""

from __future__ import annotations

ROLLOUT_MISSING = "mlc rollout is not built yet"


def rollout_missing() -> bool:
    """True unless the CLI has a ``rollout`` command."""
    import typer.main

    from lifecycle.cli import app

    return "rollout" not in typer.main.get_command(app).commands  # type: ignore[attr-defined]  # a click Group
