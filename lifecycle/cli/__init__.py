"""The mlc command line: ``commands`` (typer: parse, one ``api`` call) and ``render`` (rich, --json).

``main`` is the console-script entry point (``lifecycle.cli:main``). It imports TensorFlow up
front, quietly, only for the commands that load models; ``--help``, ``status`` and ``history``
never import it.
"""

from __future__ import annotations

import logging
import os
import sys

from lifecycle.cli.commands import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    # Commands that load models (promote's sandbox, register) import TensorFlow; keep its
    # start-up chatter and deprecation warnings out of the one-line-per-outcome output.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    if _needs_tensorflow(sys.argv[1:]):
        from lifecycle.tf_import import import_tensorflow

        import_tensorflow()
    app()


# Commands that load models in this process; every other command stays TensorFlow-free.
TF_COMMANDS = frozenset({"train", "register", "serve", "promote", "rollback", "predict", "diff", "watch"})


def _needs_tensorflow(argv: list[str]) -> bool:
    """True when the command line runs (not just describes) a TensorFlow command."""
    words = [a for a in argv if not a.startswith("-")]
    return bool(words) and words[0] in TF_COMMANDS and "--help" not in argv


if __name__ == "__main__":
    main()
