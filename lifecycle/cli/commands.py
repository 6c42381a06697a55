"""The mlc commands: each parses its arguments, makes exactly one ``api`` call and renders.

Every command runs through :func:`run`, which turns a :class:`LifecycleError` into one red line
on stderr and the error's exit code; the hidden ``--traceback`` flag shows the stack instead.
Rendering lives in :mod:`lifecycle.cli.render`. This module must not import TensorFlow
(``mlc --help``, ``status`` and ``history`` are fast paths); commands that need it import it
inside ``api``.

About 530 lines, above the usual 400, on purpose: twelve commands whose option declarations and
docstrings (their --help text, with examples) are most of it; the code per command is a few lines.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape

from lifecycle import api
from lifecycle.cli.render import (
    WatchDisplay,
    render_diff,
    render_history,
    render_predict,
    render_reconcile,
    render_register,
    render_rollout,
    render_serve,
    render_status,
    render_stop,
    render_train,
    show,
    stderr,
    stdout,
)
from lifecycle.errors import LifecycleError
from lifecycle.serving.fleet import ReloadMode
from lifecycle.operations.k8s import ServerEngine
from lifecycle.operations.processes import Engine

app = typer.Typer(
    name="mlc",
    help="mlc: model-version lifecycle manager for TensorFlow Serving.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

T = TypeVar("T")

_state: dict[str, bool] = {"traceback": False}

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")]
ModelArg = Annotated[str, typer.Argument(help="Model name (configs/<model>.yaml).", show_default=False)]


@app.callback()
def _root(
    traceback: Annotated[
        bool, typer.Option("--traceback", hidden=True, help="Show the Python traceback on errors.")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Also show TensorFlow's own log (start-up, deprecations).")
    ] = False,
) -> None:
    """mlc: model-version lifecycle manager for TensorFlow Serving."""
    _state["traceback"] = traceback
    # lifecycle.cli.main acted on --verbose already: TensorFlow is imported before typer parses.


def run(call: Callable[[], T]) -> T:
    """Run one api call; a LifecycleError becomes one red stderr line and its exit code."""
    try:
        return call()
    except LifecycleError as e:
        if _state["traceback"]:
            raise
        stderr.print(f"[red]Error:[/red] {e.message}", markup=True, highlight=False)
        raise typer.Exit(e.exit_code) from None


@app.command()
def status(
    model: Annotated[str | None, typer.Argument(help="Only this model.", show_default=False)] = None,
    all_versions: Annotated[bool, typer.Option(
        "--all", help="List every version, not only stable, canary, those configured or loaded and the 20 newest.",
    )] = False,
    as_json: JsonOption = False,
) -> None:
    """Show the registry, the serving config and every server's live state side by side.

    Each model lists the versions that matter: stable, canary, those in the serving config or
    on a server, and the 20 newest. --all lists every one; the JSON says how many were left out
    (versions_total, versions_omitted).

    Examples:

        mlc status

        mlc status deeplab --json

        mlc status deeplab --all
    """
    report = run(lambda: api.status(model, all_versions=all_versions))
    show(report, as_json, render_status)


@app.command()
def history(model: ModelArg, as_json: JsonOption = False) -> None:
    """List every promote and rollback of a model: time, user, action, from -> to, result, reason.

    Examples:

        mlc history deeplab

        mlc history deeplab --json
    """
    report = run(lambda: api.history(model))
    show(report, as_json, render_history)


TimeoutOption = Annotated[
    float, typer.Option("--timeout", min=1, help="Seconds to wait for the servers at each rollout (load, label, unload).")
]
ReplicaTimeoutOption = Annotated[
    float | None,
    typer.Option("--replica-timeout", min=1, show_default=False,
                 help="Seconds each replica has to load a version, from when it is asked (default: replica_timeout "
                      "of configs/servers.yaml, else 60); a replica that misses it is named and the rollout reverts."),
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
    replica_timeout: ReplicaTimeoutOption = None,
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
            dry_run=dry_run, force=force, replica_timeout=replica_timeout,
        )
    )
    render_rollout(result, as_json)


@app.command()
def rollback(
    model: ModelArg,
    to: Annotated[int | None, typer.Option("--to", help="Roll back to this version instead of the previous stable.", show_default=False)] = None,
    reason: ReasonOption = "",
    timeout: TimeoutOption = 120.0,
    replica_timeout: ReplicaTimeoutOption = None,
    dry_run: DryRunOption = False,
    as_json: JsonOption = False,
) -> None:
    """Go back to the previous known-good stable version, with the same safety as promote.

    Repeated rollbacks walk further back through the history; a canary is withdrawn first.

    Examples:

        mlc rollback deeplab

        mlc rollback deeplab --to 2 --reason "v4 mislabels cats"
    """
    result = run(lambda: api.rollback(model, to=to, reason=reason, timeout=timeout, dry_run=dry_run,
                                             replica_timeout=replica_timeout))
    render_rollout(result, as_json)


@app.command()
def reconcile(
    model: Annotated[str | None, typer.Argument(help="Report only this model (every model is reconciled: a reload replaces the whole config).", show_default=False)] = None,
    timeout: TimeoutOption = 120.0,
    replica_timeout: ReplicaTimeoutOption = None,
    as_json: JsonOption = False,
) -> None:
    """Bring every reachable replica to the recorded serving state and report what changed.

    Each replica (configs/servers.yaml, dns entries resolved now) that differs from the
    registry's stable/canary gets the wanted versions first and its labels only once they are
    AVAILABLE. Exits 1 naming the replicas that could not be reconciled.

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


k8s_app = typer.Typer(
    help="""Kubernetes manifests for a fleet of model-server replicas (printed, never applied).

    Examples:

        mlc k8s render deeplab --replicas 3 --repository s3://models/team-a | kubectl apply -f -
    """,
    no_args_is_help=True,
)
app.add_typer(k8s_app, name="k8s")


@k8s_app.command("render")
def k8s_render(
    model: ModelArg,
    replicas: Annotated[int, typer.Option("--replicas", min=1, help="Number of pods (replicas of the model server).")] = 3,
    repository: Annotated[str | None, typer.Option("--repository", help="s3://bucket/prefix the pods sync versions from (default: $MLC_REPOSITORY).", show_default=False)] = None,
    image: Annotated[str | None, typer.Option("--image", help="Model server image: default tensorflow/serving:2.18.0, or with --engine embedded the mlc image mlc:<version of this mlc>, which --image then also sets for the sync containers.", show_default=False)] = None,
    engine: Annotated[ServerEngine, typer.Option("--engine", help="tfserving (tensorflow_model_server) or embedded (mlc-model-server).")] = ServerEngine.tfserving,
    mlc_image: Annotated[str | None, typer.Option("--mlc-image", help="Image with mlc installed, for the sync containers (default: --image with --engine embedded, else mlc:<version of this mlc>, the image the Dockerfile builds).", show_default=False)] = None,
    namespace: Annotated[str, typer.Option("--namespace", help="Kubernetes namespace of the objects.")] = "default",
    secret: Annotated[str, typer.Option("--secret", help="Secret whose keys (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...) become the sync containers' environment.")] = "mlc-s3",
) -> None:
    """Print a Deployment, a headless and a ClusterIP Service for MODEL as one YAML stream.

    Each pod runs the model server on an emptyDir that `mlc sync --to /models` fills (init
    container) and keeps current (`--follow` sidecar); readiness is TF Serving's REST model
    status. mlc finds the replicas through the headless Service `<model>-replicas`. Containers
    run non-root on a read-only root, with requests; the mlc image is the Dockerfile's.

    Examples:

        mlc k8s render deeplab --replicas 3 --repository s3://models/team-a

        mlc k8s render deeplab --replicas 2 --engine embedded --image registry.example/mlc:0.1.0
    """
    from lifecycle.operations.k8s import to_yaml

    mlc_image = image if engine is ServerEngine.embedded and mlc_image is None else mlc_image  # one image holds both
    manifests = run(lambda: api.k8s_render(model, replicas, repository, image, engine.value, mlc_image, namespace, secret))
    sys.stdout.write(to_yaml(manifests))


@app.command()
def serve(
    engine: Annotated[
        Engine, typer.Option("--engine", help="auto: tensorflow_model_server if on PATH, else embedded mlc-model-server.")
    ] = Engine.auto,
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
        ReloadMode,
        typer.Option("--reload", help="request: mlc sends HandleReloadConfigRequest; poll: servers poll the config file."),
    ] = ReloadMode.request,
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
            engine=engine.value, grpc_port=grpc_port, rest_port=rest_port, detach=detach, reload=reload.value,
            timeout=timeout,
            on_ready=ready,
        )
    )
    if detach:
        render_serve(result)
        stdout.print("Stop with: mlc stop")
    elif result.exit_code:
        stderr.print(f"[red]Error:[/red] the server exited with code {result.exit_code}", markup=True)
        raise typer.Exit(1)


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
    render_stop(result)


@app.command()
def register(
    path: Annotated[str, typer.Argument(help="Run folder (its latest checkpoint), checkpoint prefix, or SavedModel folder.", show_default=False)],
    model: Annotated[str | None, typer.Option("--model", help="Model to register into (configs/<model>.yaml); default: the only one.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Export a checkpoint (or copy a SavedModel folder) to the next integer version, validated.

    Prints the version. Registering the same content again prints its existing version.

    Examples:

        mlc register ckpt/16645

        mlc register exports/my_saved_model --model segmenter

        mlc register ckpt/16645/ckpt-200 --model deeplab --json
    """
    result = run(lambda: api.register(path, model))
    show(result, as_json, render_register)


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
    show(result, as_json, render_train)


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

    def on_signal(signum: int, frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()
        stderr.print("stopping after the current checkpoint (Ctrl-C again to abort)")

    handlers = {}
    if threading.current_thread() is threading.main_thread():
        handlers = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with WatchDisplay(len(run_dirs), as_json) as display:
            summary = run(lambda: api.watch(run_dirs, model, promote_if_better, settle, max_events, exit_after, once,
                                            stop=stop, on_event=display.event))
    except KeyboardInterrupt:
        stderr.print("aborted")
        raise typer.Exit(130) from None
    finally:
        for sig, old in handlers.items():
            signal.signal(sig, old)
    display.summary(summary)


@app.command()
def predict(
    model: ModelArg,
    images: Annotated[
        list[Path], typer.Argument(help="Photos to segment or classify: JPEG, PNG or any image pillow reads, any size.",
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
        bool, typer.Option("--async", help="Send all photos at once through Predict.future (Classify.future), then collect.")
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.001, help="Deadline of each request, in seconds.")
    ] = 30.0,
    out: Annotated[
        Path, typer.Option("--out", file_okay=False, help="Folder for <name>.mask.png and <name>.overlay.png.")
    ] = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Segment photos with the served model (a VOC-coloured mask and an overlay each), or classify them.

    Prints each photo's share of every class by name (a classifier: its top 5 classes and scores,
    asked through TF Serving's Classify API), and which version answered.

    Examples:

        mlc predict deeplab photo.jpg

        mlc predict shapes photo.png --label stable

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
    show(result, as_json, render_predict)


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
    <model>-<A>-vs-<B>.<image>.png: photo | mask A | mask B | disagreement (white). For a
    classifier: the top classes of A and B per photo, top-1 agreement and accuracy on the
    evaluation set (no pictures).

    Examples:

        mlc diff deeplab 2 3

        mlc diff deeplab 2 3 --image photo.jpg --out diffs/

        mlc diff deeplab 2 3 --json
    """
    result = run(lambda: api.diff(model, a, b, images=list(image or []), out=out))
    show(result, as_json, render_diff)


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
