"""The commands of a repository shared by many machines: ``sync``, ``gc``, ``pin``, ``unpin``.

They register on the one typer ``app`` of :mod:`lifecycle.cli.commands` and follow its rules:
parse, one ``api`` call, render. This module must not import TensorFlow.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from lifecycle import api
from lifecycle.cli.commands import Command, JsonOption, ModelArg, VersionArg, app, run
from lifecycle.cli.render import print_json, render_gc, render_pin, render_sync, show


@app.command(cls=Command)
def sync(
    models: Annotated[list[str] | None, typer.Argument(help="Only these models (default: every served model).", show_default=False, metavar="MODEL...")] = None,
    to: Annotated[Path, typer.Option("--to", metavar="DIR", help="The folder to mirror into (a server's model folder).", show_default=False)] = ...,  # type: ignore[assignment]
    follow: Annotated[bool, typer.Option("--follow", help="Keep mirroring every --interval seconds until Ctrl-C or SIGTERM.")] = False,
    server: Annotated[list[str] | None, typer.Option("--server", metavar="HOST:PORT", help="REST address (host:port) of a server reading the folder; asked before a version is removed. Repeatable.", show_default=False)] = None,
    interval: Annotated[float, typer.Option("--interval", metavar="S", help="Seconds between passes with --follow.")] = 2.0,
    unload_grace: Annotated[float, typer.Option("--unload-grace", metavar="S", help="Without --server: seconds models.config must be unchanged before a version it dropped is removed.")] = 60.0,
    as_json: JsonOption = False,
) -> None:
    """Mirror the versions the serving config needs into DIR.

    The storage initializer (one pass) or sidecar (--follow, until Ctrl-C or SIGTERM) of a
    server that reads only its local disk (tensorflow_model_server reads no s3:// since 2.7).
    It copies the complete versions the serving config needs (each model's stable and canary)
    into DIR/<model>/<N>, then writes DIR/models.config (base paths in DIR), so the config never
    names a version that is not complete on disk. Each version is downloaded to a temp folder,
    checked against its manifest (size and sha256 of every file) and renamed into place, so a
    server polling the folder never sees a partial version. Feed tensorflow_model_server with
    it: --model_config_file=DIR/models.config --model_config_file_poll_wait_seconds=N.

    Labels are applied only after the versions are AVAILABLE, as `mlc promote` moves them (TF
    Serving refuses a label on a version that is not AVAILABLE, and a server started on such a
    config fails: TF Serving #1608): a label that is new or moves is written only once the
    config lists its version and every --server reports it AVAILABLE (without --server, once
    the config has listed it for --unload-grace seconds); until then the config lists the new
    version beside the old ones with the old labels, and the first config in an empty folder (a
    server about to start on it) names the versions without labels. A version the config
    dropped is removed once the servers named with --server (REST addresses) no longer hold
    it, or, without --server, once models.config has been unchanged for --unload-grace seconds.
    With a local repository it copies from model_repo/. `mlc serve`, promote and rollback need
    no sync: with a remote repository they copy the versions they put in a config to
    model_repo/ first (docs/storage.md).

    Examples:

        mlc sync --to /srv/models

        mlc sync deeplab --to /srv/models --follow --server 127.0.0.1:8501
    """
    stop = threading.Event()
    if follow:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())

    def show(outcome: object) -> None:
        if as_json:
            print_json(outcome.to_dict() if hasattr(outcome, "to_dict") else {"error": str(outcome)})
        else:
            render_sync(outcome)  # type: ignore[arg-type]

    result = run(lambda: api.sync(to, models or (), follow, server or (), interval, unload_grace, stop,
                                  show if follow else None))
    if not follow:
        show(result)


@app.command(cls=Command)
def gc(
    model: Annotated[str | None, typer.Argument(help="Only this model (default: every model).", show_default=False, metavar="MODEL")] = None,
    keep: Annotated[int, typer.Option("--keep", min=1, metavar="N", help="Keep at least the newest N versions of each model.")] = 3,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be deleted; delete nothing.")] = False,
    grace: Annotated[float, typer.Option("--grace", min=0, metavar="S", help="Seconds an incomplete upload must be old before it is removed.")] = 3600.0,
    as_json: JsonOption = False,
) -> None:
    """Delete old versions and incomplete uploads.

    Deletes old versions, locally or in the remote repository, and incomplete uploads older
    than --grace seconds. It never deletes a version that is labelled, in the rollback chain,
    pinned, in configs/models.config, loaded on a server mlc drives (an unreachable server
    keeps everything), or one of the newest --keep. Every deletion is recorded in the model's
    history (action gc).

    Examples:

        mlc gc --dry-run

        mlc gc deeplab --keep 5
    """
    result = run(lambda: api.gc(model, keep, dry_run, grace))
    show(result, as_json, render_gc)


@app.command(cls=Command)
def pin(model: ModelArg, version: VersionArg, as_json: JsonOption = False) -> None:
    """Pin a version so `mlc gc` never deletes it.

    Examples:

        mlc pin deeplab 4
    """
    result = run(lambda: api.pin(model, version))
    show(result, as_json, render_pin)


@app.command(cls=Command)
def unpin(model: ModelArg, version: VersionArg, as_json: JsonOption = False) -> None:
    """Lift the pin of a version; `mlc gc` may delete it again.

    Examples:

        mlc unpin deeplab 4
    """
    result = run(lambda: api.pin(model, version, unpin=True))
    show(result, as_json, render_pin)
