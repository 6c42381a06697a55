"""gRPC transport: the official PredictionService and ModelService servicers, thin over the core.

Requests and responses are tensorflow_serving messages, which ship no type stubs (``Any``).

Errors are mapped to gRPC status codes in exactly one place, :func:`_call`. The prediction
calls pass on the request's routing key (metadata ``mlc-route-key``) for the traffic split.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from lifecycle.errors import LifecycleError
from lifecycle.server.core import ServerCore
from lifecycle.server.monitoring import request_observer
from lifecycle.server.traffic.split import ROUTE_KEY

log = logging.getLogger("mlc-model-server")

T = TypeVar("T")


def _call(context: grpc.ServicerContext, method: str, fn: Callable[[], T],
          observe: Callable[[str], None] | None = None) -> T:
    """Run ``fn``; turn a LifecycleError into the gRPC status TF Serving would send.

    ``observe`` (request metrics) is told the status code name the call ended with.
    """
    status = "OK"
    try:
        return fn()
    except LifecycleError as e:
        status = e.grpc_code
        log.debug("%s failed: %s", method, e.message)
        context.abort(getattr(grpc.StatusCode, e.grpc_code, grpc.StatusCode.UNKNOWN), e.message)
    except Exception as e:  # an unexpected bug: report it, don't kill the connection
        status = "INTERNAL"
        log.exception("%s failed", method)
        context.abort(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")
    finally:
        if observe is not None:
            observe(status)
    raise AssertionError("unreachable")  # context.abort always raises


def _timeout_ms(context: grpc.ServicerContext) -> int | None:
    remaining = context.time_remaining()
    if remaining is None or remaining > 1e9:
        return None
    return max(1, int(remaining * 1000))


def _route_key(context: grpc.ServicerContext) -> str | None:
    """The request's ``mlc-route-key`` metadata, if it has one."""
    for key, value in context.invocation_metadata() or ():
        if key == ROUTE_KEY:
            return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return None


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """tensorflow.serving.PredictionService over a ServerCore."""

    def __init__(self, core: ServerCore) -> None:
        self.core = core

    def _observe(self, model: str, api: str) -> Callable[[str], None]:
        return request_observer(self.core.metrics, model, api, "GRPC")

    def Predict(self, request: Any, context: grpc.ServicerContext) -> bytes:  # noqa: N802 - gRPC's method names
        """PredictionService.Predict: the encoded PredictResponse (see _EncodedPredict)."""
        return _call(context, "Predict", lambda: self.core.predict(request, _timeout_ms(context), _route_key(context)),
                     self._observe(request.model_spec.name, "Predict"))

    def GetModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """PredictionService.GetModelMetadata."""
        return _call(context, "GetModelMetadata", lambda: self.core.get_model_metadata(request))

    def Classify(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """PredictionService.Classify."""
        return _call(context, "Classify", lambda: self.core.classify(request, _timeout_ms(context), _route_key(context)),
                     self._observe(request.model_spec.name, "Classify"))

    def Regress(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """PredictionService.Regress."""
        return _call(context, "Regress", lambda: self.core.regress(request, _timeout_ms(context), _route_key(context)),
                     self._observe(request.model_spec.name, "Regress"))

    def MultiInference(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """PredictionService.MultiInference."""
        model = request.tasks[0].model_spec.name if request.tasks else ""
        return _call(context, "MultiInference",
                     lambda: self.core.multi_inference(request, _timeout_ms(context), _route_key(context)),
                     self._observe(model, "MultiInference"))


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """tensorflow.serving.ModelService over a ServerCore."""

    def __init__(self, core: ServerCore) -> None:
        self.core = core

    def GetModelStatus(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """ModelService.GetModelStatus."""
        return _call(context, "GetModelStatus", lambda: self.core.get_model_status(request))

    def HandleReloadConfigRequest(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """ModelService.HandleReloadConfigRequest."""
        return _call(context, "HandleReloadConfigRequest", lambda: self.core.reload_config(request))


class _EncodedPredict(grpc.GenericRpcHandler):
    """Predict with a response serializer that passes on the bytes ServerCore.predict encoded.

    Registered before the generated handlers, so it answers Predict and they answer the rest.
    """

    def __init__(self, service: PredictionService) -> None:
        from tensorflow_serving.apis import predict_pb2

        self._handler = grpc.unary_unary_rpc_method_handler(
            service.Predict, request_deserializer=predict_pb2.PredictRequest.FromString,
            response_serializer=bytes)

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        if handler_call_details.method == "/tensorflow.serving.PredictionService/Predict":
            return self._handler
        return None


def add_services(server: grpc.Server, core: ServerCore) -> None:
    """Register both TF Serving services on a grpc server."""
    service = PredictionService(core)
    server.add_generic_rpc_handlers((_EncodedPredict(service),))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(service, server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(core), server)
