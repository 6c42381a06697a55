"""The mlc command line: parses, calls exactly one ``api`` function, renders.

Rendering is a rich table for people or JSON (``--json``) for scripts. Every command runs
through :func:`run`, which turns a :class:`LifecycleError` into one red line on stderr and
the error's exit code; the hidden ``--traceback`` flag shows the stack instead.

This module must not import TensorFlow (``mlc --help``, ``status`` and ``history`` are fast
paths); commands that need it import it inside ``api``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lifecycle import api
from lifecycle.errors import LifecycleError

app = typer.Typer(
    name="mlc",
    help="mlc: model-version lifecycle manager for TensorFlow Serving.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)

T = TypeVar("T")

_state: dict[str, bool] = {"traceback": False}

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")]
ModelArg = Annotated[str, typer.Argument(help="Model name (configs/<model>.yaml).", show_default=False)]


@app.callback()
def _root(
    traceback: Annotated[
        bool, typer.Option("--traceback", hidden=True, help="Show the Python traceback on errors.")
    ] = False,
) -> None:
    """mlc: model-version lifecycle manager for TensorFlow Serving."""
    _state["traceback"] = traceback


def run(call: Callable[[], T]) -> T:
    """Run one api call; a LifecycleError becomes one red stderr line and its exit code."""
    try:
        return call()
    except LifecycleError as e:
        if _state["traceback"]:
            raise
        stderr.print(f"[red]Error:[/red] {e.message}", markup=True, highlight=False)
        raise typer.Exit(e.exit_code) from None


def print_json(data: Any) -> None:
    """Write ``data`` as JSON to stdout (no rich markup, no wrapping)."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


# --- status --------------------------------------------------------------------------------


@app.command()
def status(
    model: Annotated[str | None, typer.Argument(help="Only this model.", show_default=False)] = None,
    as_json: JsonOption = False,
) -> None:
    """Show the registry, the serving config and every server's live state side by side.

    Examples:

        mlc status

        mlc status deeplab --json
    """
    report = run(lambda: api.status(model))
    if as_json:
        print_json(report.to_dict())
        return
    render_status(report)


def render_status(report: api.StatusReport) -> None:
    """Print a status report as one rich table per model."""
    if not report.models:
        stdout.print("No models registered yet. Register a checkpoint with: mlc register RUN_DIR")
    servers = list(report.servers)
    for m in report.models:
        title = f"{m.name}  (stable: {m.stable if m.stable is not None else '-'}"
        title += (f", canary: {m.canary}" if m.canary is not None else "") + ")"
        table = Table(title=title)
        # On a narrow terminal the created time, digest and checkpoint wrap; the rest stays whole.
        for col in ("ver", "labels", "step"):
            table.add_column(col, no_wrap=True, min_width=len(col))
        table.add_column("created", overflow="fold")
        for col in ("valid", "mIoU"):
            table.add_column(col, no_wrap=True, min_width=5)
        table.add_column("golden", overflow="fold")
        table.add_column("in config", no_wrap=True, min_width=3)
        table.add_column("checkpoint", overflow="fold")
        for addr in servers:
            table.add_column(addr, overflow="fold", min_width=9)
        for v in m.versions:
            table.add_row(
                str(v.version),
                ",".join(v.labels),
                "" if v.step is None else str(v.step),
                v.created[5:16].replace("T", " "),
                "yes" if v.validated else "NO",
                "" if v.miou is None else f"{v.miou:.3f}",
                (v.golden_digest or "").removeprefix("sha256:")[:8],
                "yes" if v.in_config else "",
                v.checkpoint,
                *[_state_markup(v.servers.get(addr, "")) for addr in servers],
            )
        stdout.print(table)
        for d in m.drift:
            stdout.print(f"[red]drift:[/red] {escape(d)}")
        for w in m.warnings:
            stdout.print(f"[yellow]warning:[/yellow] {escape(w)}")
        if m.last_event:
            e = m.last_event
            stdout.print(f"last rollout: {e.time} {e.action} {e.from_version} -> {e.to_version}: {e.result}")
    if report.servers:
        for addr, state in report.servers.items():
            stdout.print(f"server {addr}: {escape(state)}")
    else:
        stdout.print("servers: none running or listed in configs/servers.yaml (start one with: mlc serve --detach)")
    for w in report.warnings:
        stdout.print(f"[yellow]warning:[/yellow] {escape(w)}")


def _state_markup(state: str) -> str:
    if state == "AVAILABLE":
        return "[green]AVAILABLE[/green]"
    if state.startswith("END:") or state == "unreachable":
        return f"[red]{escape(state)}[/red]"
    return escape(state)


# --- history -------------------------------------------------------------------------------


@app.command()
def history(model: ModelArg, as_json: JsonOption = False) -> None:
    """List every promote and rollback of a model: time, user, action, from -> to, result, reason.

    Examples:

        mlc history deeplab

        mlc history deeplab --json
    """
    report = run(lambda: api.history(model))
    if as_json:
        print_json(report.to_dict())
        return
    if not report.events:
        stdout.print(f"{report.model}: no promotions or rollbacks yet")
        return
    table = Table(title=f"{report.model} rollout history (stable: {report.stable if report.stable is not None else '-'})")
    for col in ("time", "user", "action", "from -> to", "result", "reason", "detail"):
        table.add_column(col)
    for e in report.events:
        result = e.result + (" (forced)" if e.forced else "")
        colour = "green" if e.result in ("ok", "recovered") else "red"
        table.add_row(
            e.time, e.user, e.action, f"{_v(e.from_version)} -> {_v(e.to_version)}",
            f"[{colour}]{escape(result)}[/{colour}]", escape(e.reason), escape(e.detail),
        )
    stdout.print(table)


def _v(n: int | None) -> str:
    return "-" if n is None else str(n)


# --- promote and rollback ------------------------------------------------------------------

TimeoutOption = Annotated[
    float, typer.Option("--timeout", min=1, help="Seconds to wait for the servers at each rollout (load, label, unload).")
]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why; recorded in the history.")]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Print the config diff and the plan; change nothing.")]


@app.command()
def promote(
    model: ModelArg,
    version: Annotated[int, typer.Argument(help="The version to promote.", show_default=False, min=1)],
    canary: Annotated[
        bool, typer.Option("--canary", help="Label the version 'canary' beside stable; a later promote finishes the move.")
    ] = False,
    timeout: TimeoutOption = 120.0,
    reason: ReasonOption = "",
    expect_current: Annotated[
        int | None,
        typer.Option("--expect-current", help="Refuse unless stable is this version now (compare-and-swap).", show_default=False),
    ] = None,
    dry_run: DryRunOption = False,
    force: Annotated[bool, typer.Option("--force", help="Promote past a failed quality gate (needs --reason; both are recorded in the history).")] = False,
    as_json: JsonOption = False,
) -> None:
    """Move traffic to a version: sandbox check, load beside stable, verify, move the label, drop the old one.

    Every server must pass; any failure reverts all of them to the previous config and exits 1.

    Examples:

        mlc promote deeplab 4

        mlc promote deeplab 4 --canary --reason "try the new checkpoint"

        mlc promote deeplab 4 --expect-current 3 --dry-run
    """
    result = run(
        lambda: api.promote(
            model, version, canary=canary, timeout=timeout, reason=reason, expect_current=expect_current,
            dry_run=dry_run, force=force,
        )
    )
    render_rollout(result, as_json)


@app.command()
def rollback(
    model: ModelArg,
    to: Annotated[int | None, typer.Option("--to", help="Roll back to this version instead of the previous stable.", show_default=False)] = None,
    reason: ReasonOption = "",
    timeout: TimeoutOption = 120.0,
    dry_run: DryRunOption = False,
    as_json: JsonOption = False,
) -> None:
    """Go back to the previous known-good stable version, with the same safety as promote.

    Repeated rollbacks walk further back through the history; a canary is withdrawn first.

    Examples:

        mlc rollback deeplab

        mlc rollback deeplab --to 2 --reason "v4 mislabels cats"
    """
    result = run(lambda: api.rollback(model, to=to, reason=reason, timeout=timeout, dry_run=dry_run))
    render_rollout(result, as_json)


def render_rollout(result: Any, as_json: bool) -> None:
    """Print a RolloutResult."""
    from dataclasses import asdict

    if as_json:
        print_json(asdict(result))
        return
    plan = result.plan
    for note in result.recovered:
        stdout.print(f"[yellow]recovered:[/yellow] {escape(note)}")
    if result.result == "dry-run":
        stdout.print(f"Plan for {plan.action} of {plan.model} {plan.version} on {len(plan.servers)} server(s):")
        for i, step in enumerate(plan.steps, 1):
            stdout.print(f"  {i}. {escape(step)}")
        for note in plan.notes:
            stdout.print(f"[yellow]note:[/yellow] {escape(note)}")
        if plan.config_diff:
            sys.stdout.write(plan.config_diff)
        else:
            stdout.print("configs/models.config would not change")
        return
    if result.result == "noop":
        stdout.print(escape(result.message))
        return
    after = plan.after
    what = f"{plan.model}: stable {_v(plan.before['stable'])} -> {_v(after['stable'])}"
    if after["canary"] != plan.before["canary"]:
        what += f", canary {_v(plan.before['canary'])} -> {_v(after['canary'])}"
    stdout.print(f"[green]{plan.action} ok[/green] {escape(what)} on {len(plan.servers)} server(s) in {result.seconds:.1f} s")
    for note in plan.notes:
        stdout.print(f"[yellow]note:[/yellow] {escape(note)}")


# --- serve and stop ------------------------------------------------------------------------


@app.command()
def serve(
    engine: Annotated[
        str, typer.Option("--engine", help="auto: tensorflow_model_server if on PATH, else embedded mlc-model-server.")
    ] = "auto",
    grpc_port: Annotated[
        int | None, typer.Option("--grpc-port", min=0, max=65535,
                                 help="gRPC port, 0-65535 (default 8500; not with configs/servers.yaml).", show_default=False)
    ] = None,
    rest_port: Annotated[
        int | None, typer.Option("--rest-port", min=0, max=65535,
                                 help="REST port, 0-65535 (default 8501; 0 = off; not with configs/servers.yaml).", show_default=False)
    ] = None,
    detach: Annotated[bool, typer.Option("--detach", help="Run in the background; stop it with `mlc stop`.")] = False,
    reload: Annotated[
        str, typer.Option("--reload", help="request: mlc sends HandleReloadConfigRequest; poll: servers poll the config file.")
    ] = "request",
    timeout: Annotated[float, typer.Option("--timeout", min=1, help="Seconds to wait for the server to be ready.")] = 120.0,
) -> None:
    """Run a TF-Serving-compatible server on configs/models.config (rewritten from the registry first).

    It binds 127.0.0.1 and serves each model's stable (and canary) version. With
    configs/servers.yaml it starts every server listed there. The addresses are recorded under
    .mlc/servers/ so promote, rollback and status find them. Stop a detached server with
    `mlc stop`; stop a foreground one with Ctrl-C.

    Examples:

        mlc serve --detach

        mlc serve --grpc-port 9000 --rest-port 9001

        mlc serve --engine embedded --reload poll
    """

    def ready(result: api.ServeResult) -> None:
        render_serve(result)
        stdout.print("Serving; press Ctrl-C to stop.")

    result = run(
        lambda: api.serve(
            engine=engine, grpc_port=grpc_port, rest_port=rest_port, detach=detach, reload=reload, timeout=timeout,
            on_ready=ready,
        )
    )
    if detach:
        render_serve(result)
        stdout.print("Stop with: mlc stop")
    elif result.exit_code:
        stderr.print(f"[red]Error:[/red] the server exited with code {result.exit_code}", markup=True)
        raise typer.Exit(1)


def render_serve(result: api.ServeResult) -> None:
    """Print the servers mlc serve started."""
    if result.recovered:
        stdout.print(f"[yellow]recovered:[/yellow] {escape(result.recovered)}")
    for s in result.servers:
        rest = f", REST http://{s.rest}" if s.rest else ""
        log = f", log {s.log}" if s.log else ""
        stdout.print(f"{result.engine} server pid {s.pid}: gRPC {s.grpc}{rest} on {result.config_file}{log}")


@app.command()
def stop(
    grpc_port: Annotated[
        int | None, typer.Option("--grpc-port", help="Only the server on this gRPC port (default: all).", show_default=False)
    ] = None,
) -> None:
    """Stop the servers `mlc serve --detach` started (SIGTERM, then SIGKILL after 10 s).

    Examples:

        mlc stop

        mlc stop --grpc-port 9000
    """
    result = run(lambda: api.stop(grpc_port))
    if not result.stopped:
        stdout.print("No running server started by mlc serve.")
    for s in result.stopped:
        stdout.print(f"stopped server pid {s.pid} (gRPC {s.grpc})")


# --- register ------------------------------------------------------------------------------


@app.command()
def register(
    path: Annotated[str, typer.Argument(help="Run folder (its latest checkpoint) or checkpoint prefix.", show_default=False)],
    model: Annotated[str | None, typer.Option("--model", help="Model to register into (configs/<model>.yaml); default: the only one.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Export a checkpoint to the next integer version, validated by round-tripping the test image.

    Prints the version. Registering the same checkpoint content again prints its existing version.

    Examples:

        mlc register ckpt/16645

        mlc register ckpt/16645/ckpt-200 --model deeplab --json
    """
    result = run(lambda: api.register(path, model))
    if as_json:
        print_json(result.to_dict())
        return
    step = "" if result.step is None else f" (step {result.step})"
    if result.reused:
        stdout.print(f"{result.checkpoint}{step} is already {result.model} version {result.version}")
    else:
        miou = "" if result.miou is None else f", eval mIoU {result.miou:.3f}"
        stdout.print(f"Registered {result.checkpoint}{step} as {result.model} version {result.version}{miou}")
    stdout.print(str(result.version))


# --- train ---------------------------------------------------------------------------------


@app.command()
def train(
    run_dir: Annotated[str, typer.Argument(help="Run folder to write checkpoints into (created if missing).", show_default=False)],
    steps: Annotated[int, typer.Option("--steps", min=1, help="Train until this global step.")] = 300,
    save_every: Annotated[int, typer.Option("--save-every", min=1, help="Write a checkpoint every this many steps.")] = 100,
    backbone: Annotated[
        str | None, typer.Option("--backbone", help="Backbone (small or resnet50); default: the model definition's.")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="Model definition to train (configs/<model>.yaml).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Train the demo network on procedural scenes and write TF checkpoints into RUN_DIR.

    Later checkpoints score better on the evaluation set. A RUN_DIR that already holds
    checkpoints is resumed from its latest one.

    Examples:

        mlc train ckpt/16645

        mlc train ckpt/16645 --steps 600 --save-every 200
    """

    def progress(c: api.TrainedCheckpoint) -> None:
        if not as_json:
            stdout.print(f"step {c.step}: loss {c.loss:.4f} -> {c.prefix}")

    result = run(lambda: api.train(run_dir, steps, save_every, backbone, model, on_checkpoint=progress))
    if as_json:
        print_json(result.to_dict())
    elif not result.checkpoints:
        stdout.print(f"{result.run_dir} is already at step {result.start_step}; nothing to do (raise --steps)")
    else:
        stdout.print(f"Wrote {len(result.checkpoints)} checkpoints to {result.run_dir}. "
                     f"Register the latest with: mlc register {result.run_dir}")



# --- watch ---------------------------------------------------------------------------------

_EVENT_STYLES = {
    "watching": "cyan", "waiting": "yellow", "gone": "yellow", "seen": "dim", "incomplete": "dim",
    "registered": "green", "known": "dim", "failed": "red", "skipped": "yellow",
    "promoted": "bold green", "kept": "yellow", "promote-failed": "red", "stopped": "cyan",
}


@app.command()
def watch(
    run_dirs: Annotated[
        list[str], typer.Argument(help="Run folders to watch (they may not exist yet).", show_default=False, metavar="RUN_DIR...")
    ],
    model: Annotated[str | None, typer.Option("--model", help="Model to register into (configs/<model>.yaml); default: the only one.")] = None,
    promote_if_better: Annotated[
        bool, typer.Option("--promote-if-better", help="Promote each new version that passes the quality gate (safe rollout).")
    ] = False,
    settle: Annotated[
        float, typer.Option("--settle", min=0, help="Seconds a checkpoint's files must stay unchanged before it is read.")
    ] = 2.0,
    max_events: Annotated[
        int | None, typer.Option("--max-events", min=1, help="Stop after this many checkpoints were handled (registered, known, failed or skipped).")
    ] = None,
    exit_after: Annotated[
        float | None, typer.Option("--exit-after", min=0.001, help="Stop after this many seconds.")
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Register what the folders hold now (waiting for it to settle), then stop.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per event, then the summary, instead of text.")
    ] = False,
) -> None:
    """Register every new checkpoint written into run folders, as soon as it is complete.

    A checkpoint is read once the run folder's `checkpoint` state file names it and its
    .index and .data-* files exist and have not changed for --settle seconds. Registration is
    idempotent by content, so restarting the watch registers nothing twice. A checkpoint that
    fails validation is logged and the watch goes on. With --promote-if-better, each new
    version that passes the quality gate (thresholds in configs/<model>.yaml) is promoted
    through the normal safe rollout; in a burst, only the newest. Ctrl-C (or SIGTERM) stops
    after the current checkpoint; a second Ctrl-C aborts.

    Examples:

        mlc watch ckpt/16645

        mlc watch ckpt/16645 ckpt/16646 --promote-if-better

        mlc watch ckpt/16645 --once --json

        mlc watch ckpt/16645 --max-events 3 --exit-after 600
    """
    stop = threading.Event()
    counts = {"registered": 0, "known": 0, "failed": 0, "promoted": 0}
    quiet = {"registering", "promoting"}  # shown in the progress line only
    spinner = None if as_json else stdout.status("watching ...", spinner="dots")

    def on_event(e: Any) -> None:
        if as_json:
            sys.stdout.write(json.dumps(e.to_dict(), default=str) + "\n")
            sys.stdout.flush()
            return
        kind = "failed" if e.kind == "skipped" else e.kind
        if kind in counts:
            counts[kind] += 1
        if e.kind not in quiet:
            style = _EVENT_STYLES.get(e.kind, "")
            stdout.print(f"{e.time[11:19]}  [{style}]{e.kind:<14}[/{style}] {escape(e.message)}" if style
                         else f"{e.time[11:19]}  {e.kind:<14} {escape(e.message)}", markup=True, highlight=False)
        if spinner is not None:
            doing = f"{e.message} ... " if e.kind in quiet else ""
            spinner.update(f"{doing}{len(run_dirs)} folder{'s' if len(run_dirs) != 1 else ''}, {e.pending} pending, "
                           f"{counts['registered']} registered, {counts['known']} known, {counts['failed']} failed, "
                           f"{counts['promoted']} promoted (Ctrl-C to stop)")

    def on_signal(signum: int, frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()
        stderr.print("stopping after the current checkpoint (Ctrl-C again to abort)")

    handlers = {}
    if threading.current_thread() is threading.main_thread():
        handlers = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if spinner is not None:
            spinner.start()
        summary = run(lambda: api.watch(run_dirs, model, promote_if_better, settle, max_events, exit_after, once,
                                        stop=stop, on_event=on_event))
    except KeyboardInterrupt:
        stderr.print("aborted")
        raise typer.Exit(130) from None
    finally:
        if spinner is not None:
            spinner.stop()
        for sig, old in handlers.items():
            signal.signal(sig, old)
    if as_json:
        sys.stdout.write(json.dumps({"kind": "summary", **summary.to_dict()}, default=str) + "\n")
        return
    stdout.print(
        f"Watched {len(summary.run_dirs)} folder{'s' if len(summary.run_dirs) != 1 else ''}: "
        f"{len(summary.registered)} registered, {len(summary.known)} already known, {len(summary.failed)} failed, "
        f"{len(summary.promoted)} promoted, {len(summary.kept)} kept back by the gate."
    )

# --- predict -------------------------------------------------------------------------------


@app.command()
def predict(
    model: ModelArg,
    images: Annotated[
        list[Path], typer.Argument(help="Photos to segment: JPEG, PNG or any image pillow reads, any size.",
                                   show_default=False)
    ],
    version: Annotated[
        int | None, typer.Option("--version", min=1, help="Ask for this version number (model_spec.version).")
    ] = None,
    label: Annotated[
        str | None, typer.Option("--label", help="Ask for the version this label points at, e.g. stable or canary.")
    ] = None,
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            help="HOST:PORT of the server (its REST port with --rest). Default: the first server of "
            "configs/servers.yaml, else the one `mlc serve` started.",
        ),
    ] = None,
    rest: Annotated[bool, typer.Option("--rest", help="Send TF Serving REST JSON instead of gRPC.")] = False,
    use_async: Annotated[
        bool, typer.Option("--async", help="Send all photos at once through Predict.future, then collect.")
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.001, help="Deadline of each request, in seconds.")
    ] = 30.0,
    out: Annotated[
        Path, typer.Option("--out", file_okay=False, help="Folder for <name>.mask.png and <name>.overlay.png.")
    ] = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Segment photos with the served model: a VOC-coloured mask and an overlay per photo.

    Prints each photo's share of every class by name, and which version answered.

    Examples:

        mlc predict deeplab photo.jpg

        mlc predict deeplab a.jpg b.png --label canary --out masks/

        mlc predict deeplab photo.jpg --version 3 --async --timeout 5

        mlc predict deeplab photo.jpg --rest --server 127.0.0.1:8501
    """
    if version is not None and label is not None:
        raise typer.BadParameter("give --version or --label, not both", param_hint="--version/--label")
    result = run(
        lambda: api.predict(
            model, list(images), version=version, label=label, server=server, rest=rest,
            use_async=use_async, timeout=timeout, out=out,
        )
    )
    if as_json:
        print_json(result.to_dict())
        return
    render_predict(result)


def _percent(share: float) -> str:
    return f"{100 * share:.1f}%" if share >= 0.001 else "<0.1%"


def render_predict(result: api.PredictResult) -> None:
    """Print each photo's answering version, class shares and picture paths."""
    stdout.print(
        f"{result.model}: asked for {result.asked} over {result.transport} ({result.call}) at {result.server}"
    )
    for p in result.images:
        answered = f"version {p.version}" if p.version is not None else "an unreported version"
        stdout.print(f"\n{p.image}  {p.width}x{p.height}  answered by {answered}")
        stdout.print("  " + "  ".join(f"{name} {_percent(share)}" for name, share in p.classes.items()))
        stdout.print(f"  mask     {p.mask}")
        stdout.print(f"  overlay  {p.overlay}")


# --- diff ----------------------------------------------------------------------------------


@app.command()
def diff(
    model: ModelArg,
    a: Annotated[int, typer.Argument(help="Version A, the reference.", show_default=False, min=1)],
    b: Annotated[int, typer.Argument(help="Version B, compared with A.", show_default=False, min=1)],
    image: Annotated[
        list[Path] | None,
        typer.Option("--image", help="Also compare on this photo (repeatable); the test image is always used."),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", file_okay=False, help="Folder for the side-by-side pictures.")
    ] = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Tell two versions apart: signatures, pixel agreement and mIoU of B against A, and pictures.

    Both versions are loaded from model_repo in this process (no server needed). Compares the
    masks on the test image, on each --image and on the evaluation set, and writes
    <model>-<A>-vs-<B>.<image>.png: photo | mask A | mask B | disagreement (white).

    Examples:

        mlc diff deeplab 2 3

        mlc diff deeplab 2 3 --image photo.jpg --out diffs/

        mlc diff deeplab 2 3 --json
    """
    result = run(lambda: api.diff(model, a, b, images=list(image or []), out=out))
    if as_json:
        print_json(result.to_dict())
        return
    render_diff(result)


def render_diff(result: api.DiffResult) -> None:
    """Print signature changes, then agreement per image and on the evaluation set."""
    stdout.print(f"{result.model}: version {result.a} (A) vs version {result.b} (B)")
    if result.signature_changes:
        stdout.print("Signatures:")
        for change in result.signature_changes:
            stdout.print(f"  {change['description']}")
    else:
        stdout.print("Signatures: identical")
    table = Table(title="Masks of B against A")
    for col in ("image", "size", "agreement", "mIoU", "differing px"):
        table.add_column(col)
    for d in result.images:
        table.add_row(Path(d.image).name, f"{d.width}x{d.height}", f"{100 * d.agreement:.2f}%", f"{d.miou:.3f}",
                      str(d.differing_pixels))
    if result.eval is not None:
        e = result.eval
        table.add_row(f"eval set ({e.images} scenes)", f"{e.size}x{e.size}", f"{100 * e.agreement:.2f}%",
                      f"{e.miou:.3f}", str(e.differing_pixels))
    stdout.print(table)
    if result.eval is not None:
        stdout.print(
            f"Eval mIoU against ground truth: version {result.a} {result.eval.miou_a:.3f}, "
            f"version {result.b} {result.eval.miou_b:.3f}"
        )
    stdout.print("Pictures (photo | mask A | mask B | disagreement in white):")
    for d in result.images:
        stdout.print(f"  {d.picture}")
    if result.identical:
        stdout.print("The two versions give the same masks.")


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
