"""One client for TF Serving (and mlc-model-server): model status, config reload, Predict.

Status reads go over REST (``GET /v1/models/<m>``) with the standard library, so ``mlc status``
never imports TensorFlow. Reloads (``ModelService.HandleReloadConfigRequest``), gRPC status and
``PredictionService.Predict`` go over gRPC on TF Serving's method paths, with mlc's
wire-compatible messages (:mod:`lifecycle.serving.wire`), so ``mlc promote`` and ``rollback``
import no TensorFlow either. ``predict``/``classify`` answer in the request's own message types:
an official ``tensorflow_serving.apis`` request gets the official response, a wire one the wire
response. Every call has a deadline.

``grpc.RpcError`` and HTTP/socket errors are translated here, and only here, into
:class:`ServerUnavailable`, :class:`ModelNotFound` or :class:`ServingError`.
"""

from __future__ import annotations

import json
import socket
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lifecycle.errors import ModelNotFound, ServerUnavailable, ServingError
from lifecycle.serving.tls import Tls

if TYPE_CHECKING:  # pragma: no cover
    import grpc

    from lifecycle.serving.fleet import ServerSpec

DEFAULT_TIMEOUT_S = 10.0

def answered_version(response: Any) -> int | None:
    """The version a Predict or Classify response says answered it (None when it does not say)."""
    return response.model_spec.version.value if response.model_spec.HasField("version") else None


# ModelVersionStatus.State numbers (tensorflow_serving/apis/get_model_status.proto).
STATE_NAMES = {0: "UNKNOWN", 10: "START", 20: "LOADING", 30: "AVAILABLE", 40: "UNLOADING", 50: "END"}


@dataclass(frozen=True)
class VersionState:
    """One version's state on one server, as GetModelStatus reports it."""

    version: int
    state: str  # START | LOADING | AVAILABLE | UNLOADING | END | UNKNOWN
    error_code: str = "OK"
    error_message: str = ""

    @property
    def failed(self) -> bool:
        """END with an error: the version failed to load (TF Serving keeps it there)."""
        return self.state == "END" and self.error_code not in ("OK", "0", "")

    def describe(self) -> str:
        """State for people: ``AVAILABLE``, or ``END: <error>``."""
        if self.failed:
            return f"END: {self.error_message or self.error_code}"
        return self.state


def tcp_ready(address: str, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections at host:port."""
    host, _, port = address.rpartition("://")[2].rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def rest_call(
    rest: str, method: str, path: str, timeout: float = DEFAULT_TIMEOUT_S, body: bytes | None = None,
    tls: Tls | None = None, headers: dict[str, str] | None = None,
) -> tuple[int, str, bytes]:
    """One HTTP request to ``rest`` (host:port, or an http:// or https:// URL): status, reason, body."""
    import http.client  # the standard library's client; urllib.request costs more to import

    scheme, _, address = rest.rpartition("://")
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if scheme == "https":  # TF Serving's REST has no TLS; a proxy in front of it may
        context = tls.ssl_context() if tls else None
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(host, int(port), timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.reason, resp.read()
    except (OSError, http.client.HTTPException) as e:
        raise ServerUnavailable(f"server {rest} (REST) is unreachable: {e}") from e
    finally:
        conn.close()


def rest_request(
    rest: str, method: str, path: str, timeout: float = DEFAULT_TIMEOUT_S, body: Any = None, tls: Tls | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    """One JSON request to ``rest`` (host:port, or an http:// or https:// URL); errors become mlc's."""
    sent = dict(headers or {})
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        sent["Content-Type"] = "application/json"
    status, reason, raw = rest_call(rest, method, path, timeout, data, tls, sent)
    try:
        answer = json.loads(raw or b"{}")
    except ValueError as e:
        raise ServingError(f"server {rest}: {method} {path} answered with invalid JSON: {e}", "INTERNAL") from e
    if status != 200:
        message = str(answer.get("error") or reason) if isinstance(answer, dict) else reason
        if status == 404:
            raise ModelNotFound(f"server {rest}: {message}")
        raise ServingError(f"server {rest}: {message}", _grpc_code_for_http(status))
    return answer


def rest_model_status(
    rest: str, model: str, timeout: float = DEFAULT_TIMEOUT_S, label: str | None = None, tls: Tls | None = None
) -> dict[int, VersionState]:
    """``GET /v1/models/<model>[/labels/<label>]`` on ``rest`` (host:port or URL): each version's state."""
    body = rest_request(rest, "GET", f"/v1/models/{model}" + (f"/labels/{label}" if label else ""), timeout, tls=tls)
    states = {}
    for entry in body.get("model_version_status", []) if isinstance(body, dict) else []:
        status = entry.get("status") or {}
        v = int(entry.get("version", 0))
        states[v] = VersionState(
            v, str(entry.get("state", "UNKNOWN")), str(status.get("error_code", "OK")), str(status.get("error_message", ""))
        )
    return states


def _serialize(message: Any) -> bytes:
    return message.SerializeToString()


def _grpc_code_for_http(status: int) -> str:
    return {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 409: "ABORTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}.get(
        status, "UNKNOWN"
    )


class ServingClient:
    """A client for one server (gRPC address, optional REST address). Use as a context manager."""

    def __init__(
        self, grpc_address: str, rest_address: str | None = None, timeout: float = DEFAULT_TIMEOUT_S, tls: Tls | None = None
    ) -> None:
        self.grpc_address = grpc_address
        self.rest_address = rest_address
        self.timeout = timeout
        self.tls = tls
        self._channel: grpc.Channel | None = None
        self._callables: dict[tuple[str, Any], Any] = {}

    @classmethod
    def of(cls, spec: ServerSpec, timeout: float = DEFAULT_TIMEOUT_S) -> ServingClient:
        """The client for a server of the fleet: its gRPC and REST addresses and its TLS.

        Every caller that talks to a configured server (rollouts, reconcile, predict) builds its
        client here, so a ``tls`` section of configs/servers.yaml reaches every channel.
        """
        return cls(spec.grpc, spec.rest, timeout=timeout, tls=spec.tls)

    # --- plumbing ---------------------------------------------------------------------------

    def __enter__(self) -> ServingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the gRPC channel, if one was opened."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None
            self._callables.clear()

    def _open(self) -> grpc.Channel:
        if self._channel is None:
            import grpc

            # Segmentation maps of large images exceed gRPC's 4 MB default.
            options: list[tuple[str, int | str]] = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
            if self.tls is None:
                self._channel = grpc.insecure_channel(self.grpc_address, options=options)
            else:
                ca, cert, key = self.tls.read()
                credentials = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
                if self.tls.server_name:
                    options.append(("grpc.ssl_target_name_override", self.tls.server_name))
                self._channel = grpc.secure_channel(self.grpc_address, credentials, options=options)
        return self._channel

    def _method(self, name: str, request: Any) -> Any:
        """The unary-unary callable of TF Serving's method ``name`` for ``request``'s message types.

        The response type is the wire module's, or for Predict and Classify the one beside the
        request's own type (an official request gets the official response).
        """
        from lifecycle.serving.wire import METHODS  # the protobuf runtime: not for REST-only status

        path, response_type = METHODS[name]
        if name in ("Predict", "Classify"):
            module = sys.modules[type(request).__module__]
            response_type = getattr(module, type(request).__name__.replace("Request", "Response"))
        key = (path, response_type)
        method = self._callables.get(key)
        if method is None:
            method = self._open().unary_unary(
                path, request_serializer=_serialize, response_deserializer=response_type.FromString
            )
            self._callables[key] = method
        return method

    def _translate(self, e: Exception, what: str) -> Exception:
        """A grpc.RpcError as one of mlc's errors."""
        code = e.code() if hasattr(e, "code") else None
        name = getattr(code, "name", "UNKNOWN")
        details = e.details() if hasattr(e, "details") else str(e)
        where = f"server {self.grpc_address}"
        if name in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED"):
            return ServerUnavailable(f"{where} did not answer {what}: {name}: {details}")
        if name == "NOT_FOUND":
            return ModelNotFound(f"{where}: {details}")
        return ServingError(f"{where} refused {what}: {name}: {details}", name)

    # --- status -----------------------------------------------------------------------------

    def model_status(self, model: str, timeout: float | None = None) -> dict[int, VersionState]:
        """Each version's state of ``model``: over REST when known (no TensorFlow), else gRPC."""
        if self.rest_address:
            return rest_model_status(self.rest_address, model, timeout or self.timeout, tls=self.tls)
        return self.model_status_grpc(model, timeout)

    def model_status_grpc(self, model: str, timeout: float | None = None) -> dict[int, VersionState]:
        """``ModelService.GetModelStatus`` for ``model``."""
        import grpc

        from lifecycle.serving.wire import messages

        request = messages.GetModelStatusRequest()
        request.model_spec.name = model
        try:
            response = self._method("GetModelStatus", request)(request, timeout=timeout or self.timeout)
        except grpc.RpcError as e:
            raise self._translate(e, f"GetModelStatus({model})") from e
        out = {}
        for s in response.model_version_status:
            code = messages.Code.Name(s.status.error_code) if s.status.error_code in messages.Code.values() else None
            out[s.version] = VersionState(
                s.version, STATE_NAMES.get(s.state, str(s.state)), code or str(s.status.error_code), s.status.error_message,
            )
        return out

    # --- reload -----------------------------------------------------------------------------

    def reload(self, config: Any, timeout: float | None = None) -> None:
        """``ModelService.HandleReloadConfigRequest``: replace the server's whole config.

        ``config`` is a ModelServerConfig: tensorflow_serving.config's (as :mod:`tfs_config`
        builds it) or the wire one; it travels as its bytes, every field kept.
        """
        import grpc

        from lifecycle.serving.wire import messages

        request = messages.ReloadConfigRequest()
        request.config.MergeFromString(config.SerializeToString())
        try:
            response = self._method("HandleReloadConfigRequest", request)(request, timeout=timeout or self.timeout)
        except grpc.RpcError as e:
            raise self._translate(e, "the config reload") from e
        if response.status.error_code != 0:
            raise ServingError(
                f"server {self.grpc_address} refused the config reload: {response.status.error_message}",
                "FAILED_PRECONDITION",
            )

    # --- predict ----------------------------------------------------------------------------

    def predict(self, request: Any, timeout: float | None = None) -> Any:
        """``PredictionService.Predict`` with a deadline; the response in the request's message types."""
        import grpc

        try:
            return self._method("Predict", request)(request, timeout=timeout or self.timeout)
        except grpc.RpcError as e:
            raise self._translate(e, f"Predict({request.model_spec.name})") from e

    def classify(self, request: Any, timeout: float | None = None) -> Any:
        """``PredictionService.Classify`` (a ClassificationRequest of tf.Examples) with a deadline."""
        import grpc

        try:
            return self._method("Classify", request)(request, timeout=timeout or self.timeout)
        except grpc.RpcError as e:
            raise self._translate(e, f"Classify({request.model_spec.name})") from e

    def call_all(self, method: str, requests: list[Any], timeout: float | None, use_async: bool) -> list[Any]:
        """The responses to every request of ``method`` (``Predict`` or ``Classify``): sent one
        after another, or all at once through the stub's ``.future``; deadlines and errors as above."""
        import grpc

        if not use_async:
            call = self.predict if method == "Predict" else self.classify
            return [call(r, timeout=timeout) for r in requests]
        futures = [self._method(method, r).future(r, timeout=timeout or self.timeout) for r in requests]
        responses = []
        for future, r in zip(futures, requests, strict=True):
            try:
                responses.append(future.result())
            except grpc.RpcError as e:
                raise self._translate(e, f"{method}({r.model_spec.name})") from e
        return responses

    # --- REST predict -----------------------------------------------------------------------

    def predict_rest(
        self,
        model: str,
        body: dict[str, Any],
        version: int | None = None,
        label: str | None = None,
        timeout: float | None = None,
        verb: str = "predict",
    ) -> dict[str, Any]:
        """``POST /v1/models/<m>[/versions/<n>|/labels/<l>]:<verb>`` (predict, classify) with a JSON body."""
        if not self.rest_address:
            raise ServerUnavailable(f"server {self.grpc_address} has no known REST address")
        where = f"/versions/{version}" if version is not None else f"/labels/{label}" if label else ""
        answer = rest_request(
            self.rest_address, "POST", f"/v1/models/{model}{where}:{verb}", timeout or self.timeout, body, tls=self.tls
        )
        if not isinstance(answer, dict):
            raise ServingError(f"server {self.rest_address} answered {verb}({model}) with {type(answer).__name__}")
        return answer

    def serving_version(self, model: str, label: str | None = None, timeout: float | None = None) -> int | None:
        """The version a request naming no version (or naming ``label``) reaches: the highest AVAILABLE."""
        if not self.rest_address:
            raise ServerUnavailable(f"server {self.grpc_address} has no known REST address")
        states = rest_model_status(self.rest_address, model, timeout or self.timeout, label=label, tls=self.tls)
        return max((v for v, s in states.items() if s.state == "AVAILABLE"), default=None)
