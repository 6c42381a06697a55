"""The gRPC endpoint: start the transport ``--mlc_grpc_transport`` picks, with TF Serving's services.

- ``threads`` (the default): grpcio's thread-per-RPC ``grpc.server`` on a pool of
  ``--grpc_max_threads`` (else 32) threads, as here;
- ``asyncio``: ``grpc.aio`` on an event loop (:mod:`lifecycle.server.grpc.aio`).

Both serve the same RPC table (:mod:`lifecycle.server.grpc.services`) and listen as
:mod:`lifecycle.server.grpc.listen` says (TCP and/or Unix socket, channel arguments, TLS,
health service), so what a client sees does not depend on the transport.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from lifecycle.errors import InvalidArgument
from lifecycle.server.grpc.listen import HEALTH_NAMES, bind, channel_arguments, log_listening, read_ssl_config

__all__ = ["TRANSPORTS", "GrpcEndpoint", "channel_arguments", "start_grpc"]

log = logging.getLogger("mlc-model-server")

TRANSPORTS = ("threads", "asyncio")


@dataclass
class GrpcEndpoint:
    """A started thread-per-RPC grpc.Server with what it listens on."""

    server: Any
    port: int | None
    socket_path: str | None
    health: Any = None
    transport: str = "threads"

    def stop(self, grace: float | None) -> None:
        """Report NOT_SERVING, then stop, letting in-flight RPCs finish for ``grace`` s."""
        if self.health is not None:
            self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()


def start_grpc(core: Any, host: str, port: int | None, socket_path: str, arguments: str, max_threads: int,
               health: bool, ssl_config_file: str = "", profiler: bool = False,
               transport: str = "threads") -> Any:
    """Build, bind and start the gRPC server with TF Serving's services (and health).

    ``transport`` is ``threads`` (grpcio's thread-per-RPC server) or ``asyncio`` (grpc.aio on
    an event loop of its own; :mod:`lifecycle.server.grpc.aio`). Either returns an endpoint
    with ``port``, ``socket_path`` and ``stop(grace)``.
    """
    if transport not in TRANSPORTS:
        raise InvalidArgument(f"--mlc_grpc_transport={transport}: use one of {', '.join(TRANSPORTS)}")
    credentials = read_ssl_config(ssl_config_file) if ssl_config_file else None
    if transport == "asyncio":
        from lifecycle.server.grpc.aio import start_asyncio  # grpc.aio only when asked for

        return start_asyncio(core, host, port, socket_path, channel_arguments(arguments), max_threads or 32,
                             health, credentials, profiler)
    import grpc

    from lifecycle.server.grpc.services import add_services

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
        for name in HEALTH_NAMES:
            health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    try:
        bound_port = bind(listen, host, port, socket_path)
    except BaseException:
        server.stop(None)
        raise
    server.start()
    log_listening(host, bound_port, socket_path, transport)
    return GrpcEndpoint(server, bound_port, socket_path or None, health_servicer)
