"""What both gRPC transports listen with: addresses, channel arguments, TLS, health names.

As tensorflow_model_server does:

- messages are unlimited in size (``grpc.max_{send,receive}_message_length`` = INT_MAX);
- ``--grpc_channel_arguments`` (``key=value,key=value``; integer values become ints) are passed
  to the server and override those defaults;
- ``--grpc_socket_path`` also listens on a Unix socket (``unix:<path>``); an existing socket
  file is unlinked first, even one a live server listens on, as gRPC does;
- ``--enable_grpc_healthcheck_service`` adds the standard ``grpc.health.v1.Health`` service,
  SERVING for the server ("") and both TF Serving services until shutdown starts;
- ``--ssl_config_file`` (a text ``SSLConfig``: PEM ``server_key``, ``server_cert``, optional
  ``custom_ca``, ``client_verify``) serves TLS instead of plaintext on every listening address;
- ``--mlc_grpc_transport`` picks the server behind all of this: grpcio's thread-per-RPC
  ``grpc.server`` (``threads``) or ``grpc.aio`` on an event loop (``asyncio``).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lifecycle.errors import BindError, InvalidArgument

log = logging.getLogger("mlc-model-server")

UNLIMITED = 2**31 - 1
SERVICE_NAMES = ("tensorflow.serving.PredictionService", "tensorflow.serving.ModelService")
HEALTH_NAMES = ("", *SERVICE_NAMES)  # the names the health service reports SERVING for


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


def bind(listen: Callable[[str], int], host: str, port: int | None, socket_path: str) -> int | None:
    """Listen on ``host:port`` (if a port is given) and ``unix:<socket_path>`` (if given); the bound TCP port."""
    bound_port = None
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
    return bound_port


def log_listening(host: str, port: int | None, socket_path: str, transport: str) -> None:
    """TF Serving's start-up lines for the gRPC addresses (and, for mlc, the transport)."""
    if port is not None:
        log.info("Running gRPC ModelServer at %s:%d ...", host, port)
    if socket_path:
        log.info("Running gRPC ModelServer at UNIX socket %s ...", socket_path)
    log.info("gRPC transport: %s", transport)
