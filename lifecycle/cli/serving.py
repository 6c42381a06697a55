"""The commands that run servers or describe them: ``serve``, ``stop`` and ``k8s render``.

They register on the one typer ``app`` of :mod:`lifecycle.cli.commands` and follow its rules:
parse, one ``api`` call, render. This module must not import TensorFlow.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from lifecycle import api
from lifecycle.cli.commands import HELP_OPTIONS, Command, ModelArg, app, run
from lifecycle.cli.progress import pause
from lifecycle.cli.render import render_serve, render_stop, stderr, stdout
from lifecycle.operations.k8s import ServerEngine
from lifecycle.operations.processes import Engine
from lifecycle.serving.fleet import ReloadMode


@app.command(cls=Command)
def serve(
    engine: Annotated[
        Engine, typer.Option("--engine", metavar="auto|embedded|tfserving",
                             help="auto: tensorflow_model_server if on PATH, else embedded mlc-model-server.")
    ] = Engine.auto,
    grpc_port: Annotated[
        int | None, typer.Option("--grpc-port", min=0, max=65535, metavar="PORT",
                                 help="gRPC port, 0-65535 (default 8500; not with configs/servers.yaml).", show_default=False)
    ] = None,
    rest_port: Annotated[
        int | None, typer.Option("--rest-port", min=0, max=65535, metavar="PORT",
                                 help="REST port, 0-65535 (default 8501; 0 = off; not with configs/servers.yaml).", show_default=False)
    ] = None,
    detach: Annotated[bool, typer.Option("--detach", help="Run in the background; stop it with `mlc stop`.")] = False,
    reload: Annotated[
        ReloadMode,
        typer.Option("--reload", metavar="request|poll",
                     help="request: mlc sends HandleReloadConfigRequest; poll: servers poll the config file."),
    ] = ReloadMode.request,
    timeout: Annotated[float, typer.Option("--timeout", min=1, metavar="S",
                                           help="Seconds to wait for the server to be ready.")] = 120.0,
) -> None:
    """Run a TF-Serving-compatible server on models.config.

    Writes configs/models.config from the registry and runs a TF-Serving-compatible server on
    it: the real tensorflow_model_server when it is on PATH in auto mode, else the embedded
    mlc-model-server (docs/server.md), with the same flags, bound to 127.0.0.1 (gRPC 8500, REST
    8501 by default), serving each model's stable (and canary) version.

    It starts on the versions alone and then adds the labels by a reload, because TF Serving
    lets a label point only at an AVAILABLE version (with --reload poll the servers read the
    labelled file themselves and are started with
    --allow_version_labels_for_unavailable_models; start a tensorflow_model_server by hand on
    configs/models.config the same way). The servers' addresses are recorded in .mlc/servers/,
    where promote, rollback and status find them; with configs/servers.yaml (docs/fleet.md) it
    starts the listed loopback servers that do not run yet, so it also restarts a fleet member
    that died. Stop a detached server with `mlc stop`; stop a foreground one with Ctrl-C. Note
    that the real tensorflow_model_server binds gRPC to all interfaces; the embedded server
    binds 127.0.0.1.

    Examples:

        mlc serve --detach

        mlc serve --grpc-port 9000 --rest-port 9001

        mlc serve --engine embedded --reload poll
    """

    def ready(result: api.ServeResult) -> None:
        pause()  # the status line gives way: the server runs on until Ctrl-C
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


@app.command(cls=Command)
def stop(
    grpc_port: Annotated[
        int | None, typer.Option("--grpc-port", metavar="PORT", show_default=False,
                                 help="Only the server on this gRPC port (default: all).")
    ] = None,
) -> None:
    """Stop the servers `mlc serve --detach` started.

    Each gets SIGTERM, then SIGKILL after 10 s.

    Examples:

        mlc stop

        mlc stop --grpc-port 9000
    """
    result = run(lambda: api.stop(grpc_port))
    render_stop(result)


k8s_app = typer.Typer(
    help="""Kubernetes manifests for model-server replicas.

    Printed, never applied.

    Examples:

        mlc k8s render deeplab --replicas 3 --repository s3://models/team-a | kubectl apply -f -
    """,
    no_args_is_help=True,
    context_settings=HELP_OPTIONS,
)
app.add_typer(k8s_app, name="k8s")


@k8s_app.command("render", cls=Command)
def k8s_render(
    model: ModelArg,
    replicas: Annotated[int, typer.Option("--replicas", min=1, metavar="N",
                                          help="Number of pods (replicas of the model server).")] = 3,
    repository: Annotated[str | None, typer.Option("--repository", metavar="s3://BUCKET/PREFIX", show_default=False,
                                                   help="The repository the pods sync versions from (default: $MLC_REPOSITORY).")] = None,
    image: Annotated[str | None, typer.Option("--image", metavar="IMAGE", show_default=False,
                                              help="Model server image: default tensorflow/serving:2.18.0, or with --engine embedded the mlc image mlc:<version of this mlc>, which --image then also sets for the sync containers.")] = None,
    engine: Annotated[ServerEngine, typer.Option("--engine", metavar="tfserving|embedded",
                                                 help="tfserving (tensorflow_model_server) or embedded (mlc-model-server).")] = ServerEngine.tfserving,
    mlc_image: Annotated[str | None, typer.Option("--mlc-image", metavar="IMAGE", show_default=False,
                                                  help="Image with mlc installed, for the sync containers (default: --image with --engine embedded, else mlc:<version of this mlc>, the image the Dockerfile builds).")] = None,
    namespace: Annotated[str, typer.Option("--namespace", metavar="NS", help="Kubernetes namespace of the objects.")] = "default",
    secret: Annotated[str, typer.Option("--secret", metavar="NAME", help="Secret whose keys (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...) become the sync containers' environment.")] = "mlc-s3",
) -> None:
    """Print the Kubernetes manifests of MODEL's replicas.

    Prints a Deployment, a headless and a ClusterIP Service for MODEL as one YAML stream
    (nothing is applied). The Deployment's N pods run the model server (tensorflow/serving or,
    with --engine embedded, mlc-model-server) on an emptyDir that an init container running
    `mlc sync --to /models` fills and a `mlc sync --follow` sidecar keeps current (versions,
    then models.config, which the server polls; its labels only once the server reports their
    versions AVAILABLE); readiness is a probe on TF Serving's REST model status
    GET /v1/models/MODEL. mlc finds the replicas through the headless Service MODEL-replicas
    (dns: MODEL-replicas.NS.svc.cluster.local:8500 in configs/servers.yaml); clients use the
    ClusterIP Service MODEL. The S3 credentials come from the Secret --secret through envFrom.
    Containers run non-root on a read-only root, with resource requests; the mlc image is the
    one the repository's Dockerfile builds (docs/container.md).

    The tests validate the output against the Kubernetes 1.33 schemas bundled by
    kubernetes-validate; no cluster is exercised: the manifests are checked for shape, not run.

    Examples:

        mlc k8s render deeplab --replicas 3 --repository s3://models/team-a

        mlc k8s render deeplab --replicas 2 --engine embedded --image registry.example/mlc:0.1.0
    """
    from lifecycle.operations.k8s import to_yaml

    mlc_image = image if engine is ServerEngine.embedded and mlc_image is None else mlc_image  # one image holds both
    manifests = run(lambda: api.k8s_render(model, replicas, repository, image, engine.value, mlc_image, namespace, secret))
    sys.stdout.write(to_yaml(manifests))
