"""Which folder is the mlc home, and whether it is one.

A folder is an mlc home when ``configs/`` holds at least one model definition (or
``configs/mlc.yaml``, which names a remote repository), when ``model_repo/registry.yaml``
exists, or when ``$MLC_REPOSITORY`` names a remote repository (a replica's sync container has
no configs of its own). ``mlc init`` makes one; so does copying definitions into ``configs/``,
as ``scripts/demo.sh`` does. Commands run elsewhere refuse in one line and create nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

from lifecycle.store.config import REPOSITORY_ENV, Paths, list_models

HOME_ENV = "MLC_HOME"


def is_home(paths: Paths) -> bool:
    """Whether ``paths.home`` is an mlc home (see the module docstring)."""
    return (
        bool(list_models(paths))
        or (paths.configs / "mlc.yaml").is_file()
        or paths.registry_file.is_file()
        or bool(os.environ.get(REPOSITORY_ENV, "").strip())
    )


def not_a_home(paths: Paths) -> str:
    """The one line a command prints when ``paths.home`` is not an mlc home."""
    return (
        f"{paths.home} is not an mlc home (no model definition in configs/, no model_repo/registry.yaml); "
        f"create one with `mlc init {paths.home}`, or cd into one (or set ${HOME_ENV})"
    )


def home_line(paths: Paths) -> str | None:
    """``mlc: home /path (from $MLC_HOME)`` when the home is not the current folder, else None."""
    if paths.home == Path.cwd().resolve():
        return None
    source = f"from ${HOME_ENV}" if os.environ.get(HOME_ENV) else "given"
    return f"mlc: home {paths.home} ({source})"
