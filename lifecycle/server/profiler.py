"""TensorFlow's ProfilerService on the gRPC port (``--enable_profiler``, default true).

As tensorflow_model_server registers ``tsl::profiler::CreateProfilerService()`` on its gRPC
server (model_servers/server.cc), this serves ``tensorflow.ProfilerService/Profile`` and
``Terminate`` next to TF Serving's services, so TensorFlow's own client works unchanged::

    tf.profiler.experimental.client.trace("grpc://127.0.0.1:8500", logdir, duration_ms=2000)

``Profile`` runs an in-process TensorFlow profiler session for ``duration_ms`` (or until a
``Terminate`` for its session id), then writes the collected XSpace where the client asked,
``<repository_root>/<session_id>/<host_name>.xplane.pb`` (TSL's SaveXSpace), and returns it in
the response too when the client sets ``emit_xspace``. One session runs at a time, as in
TensorFlow; a second gets UNAVAILABLE.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger("mlc-model-server")

SERVICE = "tensorflow.ProfilerService"
# ProfileOptions fields that TensorFlow's ProfilerSession takes as its options dict.
_LEVELS = ("host_tracer_level", "python_tracer_level", "device_tracer_level", "delay_ms")


class ProfilerService:
    """Profile and Terminate of tensorflow.ProfilerService, on this process's TF runtime."""

    def __init__(self) -> None:
        self._busy = threading.Lock()
        self._sessions: dict[str, threading.Event] = {}

    def profile(self, request: Any, context: Any) -> Any:
        """Collect a trace for duration_ms and save it under repository_root/session_id."""
        import grpc
        from tensorflow.python.profiler.internal import _pywrap_profiler
        from tensorflow.tsl.profiler.protobuf import profiler_options_pb2

        from lifecycle.server.protos import profiler_pb2

        if not self._busy.acquire(blocking=False):
            context.abort(grpc.StatusCode.UNAVAILABLE, "Another profiling session is active.")
        stop = self._sessions.setdefault(request.session_id, threading.Event())
        try:
            opts = profiler_options_pb2.ProfileOptions.FromString(request.opts)
            options = {name: getattr(opts, name) for name in _LEVELS if getattr(opts, name, 0)}
            session = _pywrap_profiler.ProfilerSession()
            try:
                session.start(request.repository_root, options)
            except Exception as e:  # TensorFlow refuses a second session in the process
                context.abort(grpc.StatusCode.UNAVAILABLE, f"Could not start a profiler session: {e}")
            stop.wait(request.duration_ms / 1000)
            xspace = session.stop()
        finally:
            self._sessions.pop(request.session_id, None)
            self._busy.release()
        if request.repository_root and request.session_id:
            folder = Path(request.repository_root) / request.session_id
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{request.host_name or 'localhost'}.xplane.pb").write_bytes(xspace)
        log.info("Profiler session %s collected %d bytes of trace", request.session_id, len(xspace))
        return profiler_pb2.ProfileResponse(empty_trace=not xspace, xspace=xspace if request.emit_xspace else b"")

    def terminate(self, request: Any, context: Any) -> Any:
        """End a running Profile early."""
        from lifecycle.server.protos import profiler_pb2

        stop = self._sessions.get(request.session_id)
        if stop is not None:
            stop.set()
        return profiler_pb2.TerminateResponse()


def add_profiler_service(server: Any) -> None:
    """Register tensorflow.ProfilerService on a grpc.Server."""
    import grpc

    from lifecycle.server.protos import profiler_pb2

    service = ProfilerService()
    handlers = {
        "Profile": grpc.unary_unary_rpc_method_handler(
            service.profile, request_deserializer=profiler_pb2.ProfileRequest.FromString,
            response_serializer=profiler_pb2.ProfileResponse.SerializeToString),
        "Terminate": grpc.unary_unary_rpc_method_handler(
            service.terminate, request_deserializer=profiler_pb2.TerminateRequest.FromString,
            response_serializer=profiler_pb2.TerminateResponse.SerializeToString),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
