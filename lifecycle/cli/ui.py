"""The ``mlc ui`` command: the read-only web page of the mlc home (:mod:`lifecycle.ui`).

It registers on the one typer ``app`` of :mod:`lifecycle.cli.commands`. The library never imports a
front end, so the page is launched from here (:func:`lifecycle.ui.app.serve`); the page itself reads
through :mod:`lifecycle.api`. This module must not import TensorFlow.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.markup import escape

from lifecycle.cli.commands import Command, app, run
from lifecycle.cli.render import stderr, stdout
from lifecycle.store.config import Paths
from lifecycle.ui.app import serve


@app.command(cls=Command)
def ui(
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, metavar="PORT", help="Port of the page (0 = a free port, printed).")
    ] = 8600,
    host: Annotated[
        str,
        typer.Option("--host", metavar="HOST", help="Address to bind. The page has no login: bind beyond loopback only on a trusted network."),
    ] = "127.0.0.1",
) -> None:
    """Serve a read-only web page of the mlc home.

    It shows models, versions, metrics, labels, servers and history (docs/ui.md). The overview
    lists every model with its stable and canary versions, drift and the health of each
    server; a model's page has its versions table, the mIoU chart, the rollout timeline,
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

    run(lambda: serve(Paths.from_env(), host, port, ready))
