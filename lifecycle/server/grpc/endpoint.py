"""The gRPC endpoint: TCP port and/or Unix socket, channel arguments, and the health service.

As tensorflow_model_server does:

- messages are unlimited in size (``grpc.max_{send,receive}_message_length`` = INT_MAX);
- ``--grpc_channel_arguments`` (``key=value,key=value``; integer values become ints) are passed
  to the server and override those defaults;
- ``--grpc_socket_path`` also listens on a Unix socket (``unix:<path>``); an existing socket
  file is unlinked first, even one a live server listens on, as gRPC does;
- ``--enable_grpc_healthcheck_service`` adds the standard ``grpc.health.v1.Health`` service,
  SERVING for the server ("") and both TF Serving services until shutdown starts;
- ``--ssl_config_file`` (a text ``SSLConfig``: PEM ``server_key``, ``server_cert``, optional
  ``custom_ca``, ``client_verify``) serves TLS instead of plaintext on every listening address.
"""

from __future__ import annotations

import logging
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lifecycle.errors import BindError, InvalidArgument

log = logging.getLogger("mlc-model-server")

UNLIMITED = 2**31 - 1
SERVICE_NAMES = ("tensorflow.serving.PredictionService", "tensorflow.serving.ModelService")


def channel_arguments(text: str) -> list[tuple[str, Any]]:
    """TF Serving's server options plus ``--grpc_channel_arguments`` (later keys win)."""
    merged: dict[str, Any] = {
        "grpc.max_send_message_length": UNLIMITED,
        "grpc.max_receive_message_length": UNLIMITED,
        "grpc.so_reuseport": 0,
    }
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise InvalidArgument(f"grpc_channel_arguments entry '{item}' is not key=value")
        try:
            merged[key.strip()] = int(value)
        except ValueError:
            merged[key.strip()] = value
    return list(merged.items())


def take_over_socket_path(path: Path) -> None:
    """Unlink an existing Unix socket file so that this server can bind the path.

    As gRPC does before binding a ``unix:`` address (grpc_unlink_if_unix_domain_socket), and
    so tensorflow_model_server: a socket file is removed whether or not a live server still
    listens on it (that server keeps its open listener, new clients reach this one). A path
    that exists and is not a socket is refused.
    """
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise BindError(f"--grpc_socket_path {path} exists and is not a socket")
    log.info("Taking over gRPC socket path %s", path)
    path.unlink(missing_ok=True)


def read_ssl_config(path: str | Path) -> Any:
    """grpc server credentials from a text SSLConfig; INVALID_ARGUMENT naming the file if malformed."""
    import grpc

    from lifecycle.server.config.textproto import read_textproto
    from lifecycle.server.protos import ssl_pb2

    config = read_textproto(path, ssl_pb2.SSLConfig())
    if not config.server_key or not config.server_cert:
        raise InvalidArgument(f"SSL config file '{path}' needs both server_key and server_cert")
    try:
        return grpc.ssl_server_credentials(
            [(config.server_key.encode(), config.server_cert.encode())],
            root_certificates=config.custom_ca.encode() or None,
            require_client_auth=config.client_verify,
        )
    except (ValueError, TypeError, RuntimeError) as e:
        raise InvalidArgument(f"SSL config file '{path}' is not usable: {e}") from e


@dataclass
class GrpcEndpoint:
    """A started grpc.Server with what it listens on."""

    server: Any
    port: int | None
    socket_path: str | None
    health: Any = None

    def stop(self, grace: float | None) -> None:
        """Report NOT_SERVING, then stop, letting in-flight RPCs finish for ``grace`` s."""
        if self.health is not None:
            self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()


def start_grpc(core: Any, host: str, port: int | None, socket_path: str, arguments: str, max_threads: int,
               health: bool, ssl_config_file: str = "", profiler: bool = False) -> GrpcEndpoint:
    """Build, bind and start the gRPC server with TF Serving's services (and health)."""
    import grpc

    from lifecycle.server.grpc.services import add_services

    credentials = read_ssl_config(ssl_config_file) if ssl_config_file else None

    def listen(address: str) -> int:
        if credentials is None:
            return server.add_insecure_port(address)
        return server.add_secure_port(address, credentials)

    server = grpc.server(
        ThreadPoolExecutor(max_workers=max_threads or 32, thread_name_prefix="mlc-grpc"),
        options=channel_arguments(arguments),
    )
    add_services(server, core)
    if profiler:  # --enable_profiler: TensorFlow's ProfilerService on the same port
        from lifecycle.server.profiler import add_profiler_service

        add_profiler_service(server)
    health_servicer = None
    if health:
        from grpc_health.v1 import health as grpc_health
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        health_servicer = grpc_health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        for name in ("", *SERVICE_NAMES):
            health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    bound_port = None
    try:
        if port is not None:
            address = f"{host}:{port}"
            try:
                bound_port = listen(address)
            except RuntimeError as e:
                raise BindError(f"could not bind gRPC to {address}: {e}") from e
            if not bound_port:
                raise BindError(f"could not bind gRPC to {address}")
        if socket_path:
            path = Path(socket_path)
            take_over_socket_path(path)
            try:
                bound = listen(f"unix:{path}")
            except RuntimeError as e:
                raise BindError(f"could not listen on gRPC socket {path}: {e}") from e
            if not bound:
                raise BindError(f"could not listen on gRPC socket {path}")
    except BaseException:
        server.stop(None)
        raise
    server.start()
    if bound_port is not None:
        log.info("Running gRPC ModelServer at %s:%d ...", host, bound_port)
    if socket_path:
        log.info("Running gRPC ModelServer at UNIX socket %s ...", socket_path)
    return GrpcEndpoint(server, bound_port, socket_path or None, health_servicer)
