"""The commands of a model's serving lifecycle: ``status``, ``history``, ``promote``, ``rollback``, ``reconcile``.

They register on the one typer ``app`` of :mod:`lifecycle.cli.commands` and follow its rules:
parse, one ``api`` call, render. This module must not import TensorFlow.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from lifecycle import api
from lifecycle.cli.commands import Command, JsonOption, ModelArg, app, run
from lifecycle.cli.render import render_history, render_reconcile, render_rollout, render_status, show, stderr


@app.command(cls=Command)
def status(
    model: Annotated[str | None, typer.Argument(help="Only this model.", show_default=False, metavar="MODEL")] = None,
    all_versions: Annotated[bool, typer.Option(
        "--all", help="List every version, not only stable, canary, those configured or loaded and the 20 newest.",
    )] = False,
    as_json: JsonOption = False,
) -> None:
    """Show the registry, config and servers side by side.

    Shows the registry, configs/models.config and each server's live state side by side: per
    version its checkpoint and step, validation, mIoU (a classifier: accuracy), golden digest,
    labels, whether it is in the config, and its state on every server (read over REST, in
    parallel, without importing TensorFlow). It flags drift (a config or server not serving what
    the registry says, an unreachable server), warns when clients that name no version would
    reach a version other than stable, and shows a pending or recovered rollout.

    A server's state of a version reads AVAILABLE, LOADING, UNLOADING, unloaded or
    "failed: <error>" (TF Serving calls the last two END; --json keeps TF Serving's names:
    "END", "END: <error>"). "#N" numbers the recorded serving state
    (model_repo/serving/desired.json, the stable and canary of every model; each promote,
    rollback or reconcile records the next number; JSON and docs call it the generation): a
    server serving an older one is named, and `mlc reconcile` brings it up to date. A
    configs/models.config whose base paths lie outside this home's model_repo/ (copied from
    another home) is drift.

    It lists the versions that matter: stable, canary, those in the config or on a server, and
    the 20 newest, and says how many older ones it left out; --all lists every version. One line
    per version: below 120 columns (a pipe gets 80) the table leaves out the created time and
    golden digest, shortens checkpoints to their last two path parts and names servers srv1,
    srv2... with a legend below.

    Each version's full validation report is in
    model_repo/<model>/<N>/assets.extra/mlc_report.json; the registry keeps its summary (golden
    digest, mIoU or accuracy, evaluation set) in pages beside registry.yaml, and status reads
    only the pages of the versions it lists, so it takes the same time with 100 or 10,000
    versions (bench/bench_status.py).

    `mlc status [MODEL] --json [--all]` runs without importing typer, rich, logging, PyYAML
    (unless configs/servers.yaml exists) or protobuf: each write of configs/models.config also
    records what it serves in .mlc/models.config.json with the digest of its text, and status
    parses the config itself only when the digest differs (an edit by hand). --json prints
    {"models": [{"name", "stable", "versions": [{"version", "checkpoint", "step", "validated",
    "labels", "in_config", "servers": {"<grpc addr>": "AVAILABLE" | "LOADING" | "END: <error>" |
    "-" | "unreachable"}, ...}], "versions_total", "versions_omitted", "config", "drift",
    "warnings", "last_event"}], ...}: versions_total versions are registered and
    versions_omitted of them are not in versions (0 with --all).

    Examples:

        mlc status

        mlc status deeplab --json

        mlc status deeplab --all
    """
    report = run(lambda: api.status(model, all_versions=all_versions))
    show(report, as_json, render_status)


@app.command(cls=Command)
def history(model: ModelArg, as_json: JsonOption = False) -> None:
    """List every promote and rollback of a model.

    For each: time, user, the change ("promote 1 -> 2", "canary 3 beside stable 2", "canary 3
    withdrawn", "rollback 3 -> 2", "gc: version 1 deleted"), result (ok, failed = refused by the
    sandbox, reverted, recovered), reason and detail. A long note wraps; nothing is cut.

    Examples:

        mlc history deeplab

        mlc history deeplab --json
    """
    report = run(lambda: api.history(model))
    show(report, as_json, render_history)


TimeoutOption = Annotated[
    float, typer.Option("--timeout", min=1, metavar="S",
                        help="Seconds to wait for the servers at each rollout (load, label, unload).")
]
ReplicaTimeoutOption = Annotated[
    float | None,
    typer.Option("--replica-timeout", min=1, show_default=False, metavar="S",
                 help="Seconds each replica has to load a version, from when it is asked (default: replica_timeout "
                      "of configs/servers.yaml, else 60); a replica that misses it is named and the rollout reverts."),
]
ReasonOption = Annotated[str, typer.Option("--reason", metavar="TEXT", help="Why; recorded in the history.")]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Print the config diff and the plan; change nothing.")]


@app.command(cls=Command)
def promote(
    model: ModelArg,
    version: Annotated[int, typer.Argument(help="The version to promote.", show_default=False, min=1, metavar="VERSION")],
    canary: Annotated[
        bool, typer.Option("--canary", help="Label the version 'canary' beside stable; a later promote finishes the move.")
    ] = False,
    timeout: TimeoutOption = 120.0,
    replica_timeout: ReplicaTimeoutOption = None,
    reason: ReasonOption = "",
    expect_current: Annotated[
        int | None,
        typer.Option("--expect-current", metavar="VERSION", show_default=False,
                     help="Refuse unless stable is this version now (compare-and-swap)."),
    ] = None,
    dry_run: DryRunOption = False,
    force: Annotated[bool, typer.Option("--force", help="Promote past a failed quality gate (needs --reason; both are recorded in the history).")] = False,
    allow_breaking: Annotated[bool, typer.Option("--allow-breaking", help="Promote past a failed signature gate (needs --reason; both are recorded in the history).")] = False,
    as_json: JsonOption = False,
) -> None:
    """Move a model's traffic to a version, safely.

    TF Serving's label protocol, made transactional: sandbox check, load beside stable, verify,
    move the label, drop the old one. Every server must pass; any failure reverts all of them
    to the previous config and exits 1.

    \b
    1. Refuse unless VERSION exists, is validated, is on disk, stable is
       --expect-current (if given), the signature gate passes (no signature,
       input or output of stable removed or renamed, no input added, no dtype
       or method changed, no shape stricter; see `mlc diff`;
       --allow-breaking --reason TEXT overrides, and the history records
       both) and the quality gate passes (mIoU on the
       evaluation set not below stable's by more than
       thresholds.max_miou_drop of configs/<model>.yaml, default 0, and
       measured on the same set; --force --reason TEXT overrides, and the
       history records both). max_miou_drop is the only threshold: any other
       key under thresholds is refused with the file and line.
    2. Load VERSION alone in a private sandbox and replay its warmup
       request: the output digest must equal the golden digest of register
       (a candidate takes unversioned traffic as soon as it loads beside
       stable, so it must be known good first). With `mlc serve` running the
       embedded server, the sandbox is a second, separate model manager
       inside that server, reachable only on a Unix socket in a folder only
       you can enter (--mlc_sandbox_socket, which `mlc serve` sets): the
       candidate is never in the public manager, so no client of the public
       ports sees it, and `mlc promote` itself imports no TensorFlow.
       Without such a server (no server running, or tensorflow_model_server,
       which has none) the sandbox is an embedded server started inside `mlc
       promote` on 127.0.0.1:0, which imports TensorFlow (about 2.5 s more).
    3. On every server: load {stable, VERSION} with labels only on stable,
       wait until VERSION is AVAILABLE everywhere, replay the warmup request
       on VERSION, move stable (confirmed by a label-addressed request),
       drop the old version and wait until it has unloaded.
    4. Record the event in the history.

    Any failure writes the previous config back on every server, confirms the previous stable
    is AVAILABLE, records the failure and exits 1 with one line. --timeout bounds the whole
    rollout; each server also has its own deadline to load VERSION, counted from when it was
    asked (--replica-timeout S, else replica_timeout of configs/servers.yaml, per server or for
    all, else 60 s): a server that misses it is named (with the state it reports) and
    everything is reverted at once, without waiting for the others or for --timeout. --canary
    labels VERSION canary beside stable and keeps both loaded; a later `mlc promote MODEL
    VERSION` finishes the move. --dry-run prints the plan and the diff of configs/models.config.

    Examples:

        mlc promote deeplab 4

        mlc promote deeplab 4 --canary --reason "try the new checkpoint"

        mlc promote deeplab 4 --expect-current 3 --dry-run
    """
    result = run(
        lambda: api.promote(
            model, version, canary=canary, timeout=timeout, reason=reason, expect_current=expect_current,
            dry_run=dry_run, force=force, replica_timeout=replica_timeout, allow_breaking=allow_breaking,
        )
    )
    render_rollout(result, as_json)


@app.command(cls=Command)
def rollback(
    model: ModelArg,
    to: Annotated[int | None, typer.Option("--to", metavar="VERSION", show_default=False,
                                           help="Roll back to this version instead of the previous stable.")] = None,
    reason: ReasonOption = "",
    timeout: TimeoutOption = 120.0,
    replica_timeout: ReplicaTimeoutOption = None,
    dry_run: DryRunOption = False,
    as_json: JsonOption = False,
) -> None:
    """Go back to the previous known-good stable version.

    Promotes the previous known-good stable from the history, with the same safety as promote.
    Repeated rollbacks walk further back (promotes push onto the chain of stables, rollbacks
    pop it); a canary is withdrawn first (its own history event, "canary 3 withdrawn"); with
    nothing to roll back to it refuses. A rollback is not gated, but one to a version whose
    eval metric is below stable's by more than the gate's threshold (thresholds.max_miou_drop,
    or max_accuracy_drop) warns on stderr with both numbers.

    Examples:

        mlc rollback deeplab

        mlc rollback deeplab --to 2 --reason "v4 mislabels cats"
    """
    result = run(lambda: api.rollback(model, to=to, reason=reason, timeout=timeout, dry_run=dry_run,
                                      replica_timeout=replica_timeout))
    render_rollout(result, as_json)


@app.command(cls=Command)
def reconcile(
    model: Annotated[str | None, typer.Argument(
        help="Report only this model (every model is reconciled: a reload replaces the whole config).",
        show_default=False, metavar="MODEL")] = None,
    timeout: TimeoutOption = 120.0,
    replica_timeout: ReplicaTimeoutOption = None,
    as_json: JsonOption = False,
) -> None:
    """Bring every replica to the recorded serving state.

    The recorded state is each model's stable and canary (model_repo/serving/desired.json,
    numbered #N: each promote, rollback or reconcile records the next number, the generation). Each reachable replica (configs/servers.yaml, dns entries
    resolved now) that differs gets the wanted versions first and its labels only once they are
    AVAILABLE; mlc prints what it changed per replica and exits 1 naming the replicas it could
    not reconcile. A reload replaces a server's whole config, so every model is reconciled;
    MODEL narrows the report. See docs/fleet.md.

    Examples:

        mlc reconcile

        mlc reconcile deeplab --json
    """
    result = run(lambda: api.reconcile(model, timeout=timeout, replica_timeout=replica_timeout))
    show(result, as_json, render_reconcile)
    if result.failed:
        names = ", ".join(r.server for r in result.failed)
        stderr.print(f"[red]Error:[/red] not reconciled: {escape(names)}", markup=True, highlight=False)
        raise typer.Exit(1)
