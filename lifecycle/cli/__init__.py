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


# --- ui --------------------------------------------------------------------------------------


@app.command()
def ui(
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port of the page (0 = a free port, printed).")
    ] = 8600,
    host: Annotated[
        str,
        typer.Option("--host", help="Address to bind. The page has no login: bind beyond loopback only on a trusted network."),
    ] = "127.0.0.1",
) -> None:
    """Serve a read-only web page of the mlc home: models, versions, metrics, labels, servers, history.

    The overview lists every model with its stable and canary versions, drift and the health of
    each server; a model's page has its versions table, the mIoU chart, the rollout timeline,
    each version's mask and overlay of the test image, and any two versions side by side (as
    `mlc diff`). An open page follows live state without a reload. It reads what `mlc status`,
    `mlc history` and `mlc diff` read, changes nothing, and binds 127.0.0.1 unless told
    otherwise. Stop it with Ctrl-C.

    Examples:

        mlc ui                        # http://127.0.0.1:8600/

        mlc ui --port 9000

        MLC_HOME=out/demo mlc ui --port 0
    """

    def ready(url: str) -> None:
        stdout.print(f"mlc ui: {url} (read-only); press Ctrl-C to stop.")
        sys.stdout.flush()
        if not url.startswith(("http://127.", "http://[::1]", "http://localhost")):
            stderr.print(f"[yellow]note:[/yellow] {escape(host)} is beyond loopback: anyone who reaches it can read the page", markup=True)

    run(lambda: api.ui(host=host, port=port, on_ready=ready))


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
