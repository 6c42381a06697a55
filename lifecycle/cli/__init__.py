"""The mlc command line: ``commands`` (the typer app and its runner), the command modules
(``homes``, ``lifecycle``, ``rollout``, ``serving``, ``models``, ``ui``, ``storage``, ``governance``: parse, one ``api`` call) and
``render`` (rich, --json).

``main`` is the console-script entry point (``lifecycle.cli:main``). It imports TensorFlow up
front, quietly, only for the commands that load models; ``--help``, ``status`` and ``history``
never import it.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING

from lifecycle.cli.jsonout import status_json

if TYPE_CHECKING:
    import typer

    app: typer.Typer  # made by __getattr__ on first use

__all__ = ["app", "main"]


def __getattr__(name: str) -> object:
    """``lifecycle.cli.app``, the typer app, imported when first asked for (it imports typer and rich)."""
    if name == "app":
        return _app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    """Console-script entry point."""
    code = status_json(sys.argv[1:])  # the polled command, without typer's, rich's and logging's imports
    if code is not None:
        sys.exit(code)
    import logging

    from lifecycle.tf_import import VERBOSE_ENV, verbose

    # Commands that load models (register, predict ...) import TensorFlow; its start-up
    # chatter and deprecation warnings stay out of the output unless --verbose (which servers
    # this command starts inherit through the environment).
    if "--verbose" in sys.argv[1:sys.argv.index("--") if "--" in sys.argv else None]:
        os.environ[VERBOSE_ENV] = "1"
    if not verbose():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
    if _needs_tensorflow(sys.argv[1:]):
        from lifecycle.tf_import import import_tensorflow

        import_tensorflow()
    _app()()


def _app() -> typer.Typer:
    """The typer app with every command registered."""
    from lifecycle.cli.commands import app

    for module in COMMAND_MODULES:  # importing one registers its commands on the app
        importlib.import_module(f"lifecycle.cli.{module}")

    return app


# The command modules, in the order their commands are listed by `mlc --help`.
COMMAND_MODULES = ("homes", "lifecycle", "rollout", "serving", "models", "ui", "storage", "governance")

# Commands that load models in this process; every other command stays TensorFlow-free.
# promote and rollback are not among them: they check a candidate in the running server's
# private sandbox, and import TensorFlow (quietly, lifecycle.rollout.sandbox) only without one.
# serve imports it itself (quietly), once it has found its ports free.
TF_COMMANDS = frozenset({"train", "register", "predict", "diff", "watch", "card"})
HELP_FLAGS = frozenset({"--help", "-h"})


def _needs_tensorflow(argv: list[str]) -> bool:
    """True when the command line runs (not just describes) a TensorFlow command."""
    words = [a for a in argv if not a.startswith("-")]
    reads_saved_model = bool(words) and words[0] == "init" and "--saved-model" in argv  # its signatures
    return bool(words) and (words[0] in TF_COMMANDS or reads_saved_model) and not HELP_FLAGS & set(argv)


if __name__ == "__main__":
    main()
