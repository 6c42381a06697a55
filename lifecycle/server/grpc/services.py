"""gRPC services: the official PredictionService and ModelService as one table, thin over the core.

Requests and responses are tensorflow_serving messages, which ship no type stubs (``Any``).

Both transports (grpcio's thread-per-RPC server here, the asyncio server in
:mod:`lifecycle.server.grpc.aio`) serve the same table of :class:`Rpc` through :func:`answer`:
request -> core call -> response, with errors mapped to gRPC status codes in exactly one
place. A transport only reads the deadline and the routing key (metadata ``mlc-route-key``,
for the traffic split) from its context and aborts with the status :func:`answer` returns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from operator import methodcaller
from typing import Any

import grpc
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    predict_pb2,
    regression_pb2,
)

from lifecycle.errors import LifecycleError
from lifecycle.server.core import ServerCore
from lifecycle.server.monitoring import request_observer
from lifecycle.server.traffic.split import ROUTE_KEY

log = logging.getLogger("mlc-model-server")

PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"

# (core, request, timeout in ms or None, routing key or None) -> the response (Predict: its bytes)
CoreCall = Callable[[ServerCore, Any, "int | None", "str | None"], Any]


def _model_spec_name(request: Any) -> str:
    return str(request.model_spec.name)


def _first_task_name(request: Any) -> str:
    return str(request.tasks[0].model_spec.name) if request.tasks else ""


@dataclass(frozen=True)
class Rpc:
    """One unary method: how its messages are read and written and which core call answers it.

    ``api`` names it in the request metrics (None: not counted); ``blocking`` says the call
    runs a model or waits for loads, so the asyncio transport runs it off the event loop.
    """

    service: str
    method: str
    request_type: Any
    call: CoreCall
    serialize: Callable[[Any], bytes] = methodcaller("SerializeToString")
    api: str | None = None
    model_of: Callable[[Any], str] = _model_spec_name
    blocking: bool = True


RPCS: tuple[Rpc, ...] = (
    # ServerCore.predict encodes the PredictResponse itself: its bytes pass through as they are.
    Rpc(PREDICTION_SERVICE, "Predict", predict_pb2.PredictRequest,
        lambda core, request, timeout, key: core.predict(request, timeout, key), serialize=bytes, api="Predict"),
    Rpc(PREDICTION_SERVICE, "Classify", classification_pb2.ClassificationRequest,
        lambda core, request, timeout, key: core.classify(request, timeout, key), api="Classify"),
    Rpc(PREDICTION_SERVICE, "Regress", regression_pb2.RegressionRequest,
        lambda core, request, timeout, key: core.regress(request, timeout, key), api="Regress"),
    Rpc(PREDICTION_SERVICE, "MultiInference", inference_pb2.MultiInferenceRequest,
        lambda core, request, timeout, key: core.multi_inference(request, timeout, key), api="MultiInference",
        model_of=_first_task_name),
    Rpc(PREDICTION_SERVICE, "GetModelMetadata", get_model_metadata_pb2.GetModelMetadataRequest,
        lambda core, request, timeout, key: core.get_model_metadata(request), blocking=False),
    Rpc(MODEL_SERVICE, "GetModelStatus", get_model_status_pb2.GetModelStatusRequest,
        lambda core, request, timeout, key: core.get_model_status(request), blocking=False),
    Rpc(MODEL_SERVICE, "HandleReloadConfigRequest", model_management_pb2.ReloadConfigRequest,
        lambda core, request, timeout, key: core.reload_config(request)),
)


def answer(core: ServerCore, rpc: Rpc, request: Any, timeout_ms: int | None,
           route_key: str | None) -> tuple[Any, grpc.StatusCode | None, str]:
    """Run one RPC on the core: ``(response, None, "")``, or ``(None, code, message)`` to abort with.

    A LifecycleError becomes the status TF Serving would send; any other exception is a bug,
    reported as INTERNAL without killing the connection. The request metrics (if the method is
    counted) time it on this thread and are told the status it ended with.
    """
    observe = request_observer(core.metrics, rpc.model_of(request), rpc.api, "GRPC") if rpc.api else None
    status = "OK"
    try:
        return rpc.call(core, request, timeout_ms, route_key), None, ""
    except LifecycleError as e:
        status = e.grpc_code
        log.debug("%s failed: %s", rpc.method, e.message)
        return None, getattr(grpc.StatusCode, e.grpc_code, grpc.StatusCode.UNKNOWN), e.message
    except Exception as e:
        status = "INTERNAL"
        log.exception("%s failed", rpc.method)
        return None, grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}"
    finally:
        if observe is not None:
            observe(status)


def timeout_ms(context: Any) -> int | None:
    """The time left before the RPC's deadline, in ms (None: no deadline)."""
    remaining = context.time_remaining()
    if remaining is None or remaining > 1e9:
        return None
    return max(1, int(remaining * 1000))


def route_key(context: Any) -> str | None:
    """The request's ``mlc-route-key`` metadata, if it has one."""
    for key, value in context.invocation_metadata() or ():
        if key == ROUTE_KEY:
            return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return None


def generic_handlers(make_behaviour: Callable[[Rpc], Callable[..., Any]]) -> tuple[grpc.GenericRpcHandler, ...]:
    """One generic handler per service, each method's behaviour made by the transport from its Rpc."""
    handlers = []
    for service in (PREDICTION_SERVICE, MODEL_SERVICE):
        methods = {
            rpc.method: grpc.unary_unary_rpc_method_handler(
                make_behaviour(rpc), request_deserializer=rpc.request_type.FromString,
                response_serializer=rpc.serialize)
            for rpc in RPCS if rpc.service == service
        }
        handlers.append(grpc.method_handlers_generic_handler(service, methods))
    return tuple(handlers)


def threaded_behaviour(core: ServerCore) -> Callable[[Rpc], Callable[[Any, grpc.ServicerContext], Any]]:
    """The thread-per-RPC transport's method behaviour: answer on grpcio's worker thread."""

    def make(rpc: Rpc) -> Callable[[Any, grpc.ServicerContext], Any]:
        def behaviour(request: Any, context: grpc.ServicerContext) -> Any:
            response, code, message = answer(core, rpc, request, timeout_ms(context), route_key(context))
            if code is not None:
                context.abort(code, message)
            return response

        return behaviour

    return make


def add_services(server: grpc.Server, core: ServerCore) -> None:
    """Register both TF Serving services on a (thread-per-RPC) grpc server."""
    server.add_generic_rpc_handlers(generic_handlers(threaded_behaviour(core)))
