"""The asyncio gRPC transport (``--mlc_grpc_transport=asyncio``): grpc.aio on an event loop.

It serves the same table of RPCs as the thread-per-RPC server (:mod:`lifecycle.server.grpc.services`),
through the same :func:`~lifecycle.server.grpc.services.answer`, so codes, messages, deadlines and
the traffic split are the same. What differs is who waits: connections, reads and writes are
handled by the event loop, and a thread of a pool sized like grpcio's (``--grpc_max_threads``,
else 32) runs the calls that block (model runs, a reload); cheap ones are answered on the loop:
model status and metadata, and the runs of a model measured to take under 0.3 ms (RunCosts). Sync handlers (TensorFlow's ProfilerService) run on that
pool too, as grpc.aio does with its ``migration_thread_pool``.

Every asyncio server of the process shares one event loop on a daemon thread of its own, started
by the first: grpc.aio objects belong to the loop that made them, and one loop keeps the public
server and the sandbox apart from each other's threads without a second poller.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import grpc

from lifecycle.server.core import ServerCore
from lifecycle.server.grpc.listen import HEALTH_NAMES, bind, log_listening
from lifecycle.server.grpc.services import Rpc, answer, generic_handlers, route_key, timeout_ms

log = logging.getLogger("mlc-model-server")

T = TypeVar("T")

_loop_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def event_loop() -> asyncio.AbstractEventLoop:
    """The process's gRPC event loop, running on its own daemon thread (started on first use)."""
    global _loop
    with _loop_lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="mlc-grpc-asyncio", daemon=True).start()
            _loop = loop
        return _loop


def run_on_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on the gRPC event loop and wait for its result from this thread."""
    return asyncio.run_coroutine_threadsafe(coroutine, event_loop()).result()


class RunCosts:
    """How long each (method, model)'s model runs take, to run the cheap ones on the event loop.

    A run's handoff to the pool and back costs the loop two thread wake-ups, more than a model
    like half_plus_two takes to answer (bench/bench_transport.py). So a (method, model) whose
    runs have averaged under ``INLINE_BELOW_S`` over at least ``PROBE_RUNS`` runs is answered
    on the loop; any run that takes longer pulls the average up and sends the next ones back to
    the pool, so a slow version, a batch queue or a long deadline never holds the loop for long.
    """

    INLINE_BELOW_S = 0.0003
    PROBE_RUNS = 16
    WEIGHT = 0.1  # of the newest run in the moving average

    def __init__(self) -> None:
        self._average: dict[tuple[str, str], tuple[int, float]] = {}

    def inline(self, key: tuple[str, str]) -> bool:
        """Whether runs of ``key`` are cheap enough for the event loop."""
        runs, average = self._average.get(key, (0, 0.0))
        return runs >= self.PROBE_RUNS and average < self.INLINE_BELOW_S

    def record(self, key: tuple[str, str], seconds: float) -> None:
        """Add one run's time (taken on the thread that ran it)."""
        runs, average = self._average.get(key, (0, seconds))
        self._average[key] = (runs + 1, average + self.WEIGHT * (seconds - average))


def asyncio_behaviour(core: ServerCore, executor: ThreadPoolExecutor) -> Callable[[Rpc], Callable[..., Awaitable[Any]]]:
    """The asyncio transport's method behaviour: blocking calls on ``executor``, cheap ones on the loop.

    Model runs (the methods with request metrics) go to the pool until :class:`RunCosts` has
    measured them cheap; a reload always goes to the pool; status and metadata never do.
    """
    costs = RunCosts()

    def timed(rpc: Rpc, request: Any, timeout: int | None, key: str | None) -> tuple[tuple[Any, Any, str], float]:
        started = time.perf_counter()
        outcome = answer(core, rpc, request, timeout, key)
        return outcome, time.perf_counter() - started

    def make(rpc: Rpc) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
        async def behaviour(request: Any, context: grpc.aio.ServicerContext) -> Any:
            timeout, key = timeout_ms(context), route_key(context)
            if not rpc.blocking:
                response, code, message = answer(core, rpc, request, timeout, key)
            elif rpc.api is None:  # a reload: it waits for the loads
                loop = asyncio.get_running_loop()
                response, code, message = await loop.run_in_executor(executor, answer, core, rpc, request, timeout, key)
            else:
                which = (rpc.method, rpc.model_of(request))
                if costs.inline(which):
                    (response, code, message), seconds = timed(rpc, request, timeout, key)
                else:
                    loop = asyncio.get_running_loop()
                    (response, code, message), seconds = await loop.run_in_executor(
                        executor, timed, rpc, request, timeout, key)
                costs.record(which, seconds)
            if code is not None:
                await context.abort(code, message)
            return response

        return behaviour

    return make


class AsyncioEndpoint:
    """A started grpc.aio server with what it listens on; stopped from any thread."""

    transport = "asyncio"

    def __init__(self, server: Any, executor: ThreadPoolExecutor, port: int | None, socket_path: str | None,
                 health: Any) -> None:
        self.server = server
        self.port = port
        self.socket_path = socket_path
        self.health = health
        self._executor = executor

    def stop(self, grace: float | None) -> None:
        """Report NOT_SERVING, then stop, letting in-flight RPCs finish for ``grace`` s."""

        async def stop() -> None:
            if self.health is not None:
                await self.health.enter_graceful_shutdown()
            await self.server.stop(grace)

        try:
            run_on_loop(stop())
        finally:
            self._executor.shutdown(wait=False)


def start_asyncio(core: ServerCore, host: str, port: int | None, socket_path: str, options: list[tuple[str, Any]],
                  threads: int, health: bool, credentials: Any, profiler: bool) -> AsyncioEndpoint:
    """Build, bind and start the grpc.aio server with TF Serving's services (and health)."""
    executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mlc-grpc")

    async def start() -> AsyncioEndpoint:
        server = grpc.aio.server(migration_thread_pool=executor, options=options)
        server.add_generic_rpc_handlers(generic_handlers(asyncio_behaviour(core, executor)))
        if profiler:  # --enable_profiler: TensorFlow's ProfilerService on the same port
            from lifecycle.server.profiler import add_profiler_service

            add_profiler_service(server)
        health_servicer = None
        if health:
            from grpc_health.v1 import health as grpc_health
            from grpc_health.v1 import health_pb2, health_pb2_grpc

            health_servicer = grpc_health.aio.HealthServicer()
            health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
            for name in HEALTH_NAMES:
                await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)

        def listen(address: str) -> int:
            if credentials is None:
                return int(server.add_insecure_port(address))
            return int(server.add_secure_port(address, credentials))

        try:
            bound_port = bind(listen, host, port, socket_path)
        except BaseException:
            await server.stop(None)
            raise
        await server.start()
        return AsyncioEndpoint(server, executor, bound_port, socket_path or None, health_servicer)

    try:
        endpoint = run_on_loop(start())
    except BaseException:
        executor.shutdown(wait=False)
        raise
    log_listening(host, endpoint.port, socket_path, "asyncio")
    return endpoint
