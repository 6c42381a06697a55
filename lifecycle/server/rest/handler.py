"""REST transport: TF Serving's ``/v1/models/...`` API as a standard-library HTTP handler.

Connections, framing, timeouts and the worker pool are :mod:`lifecycle.server.rest.connections`'s;
this module parses and answers one buffered request at a time.

- ``GET /v1/models/{m}[/versions/{n}|/labels/{l}]``: model status, protobuf JSON as TF
  Serving prints it (proto field names, every field present, int64 as strings);
- ``GET .../metadata``: ``{"model_spec": ..., "metadata": {"signature_def": ...}}``;
- ``POST ...:predict``: row (``instances``) or columnar (``inputs``) JSON.

Errors are ``{"error": "<message>"}`` with the HTTP status of the error's gRPC code
(``lifecycle.errors.GRPC_TO_HTTP``), mapped in one place, :meth:`_Handler._respond_error`.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.parse
from http.server import BaseHTTPRequestHandler
from typing import Any

from lifecycle.errors import (
    InvalidArgument,
    LifecycleError,
    RequestTooLarge,
    ResourceExhausted,
)
from lifecycle.server.rest import json_tensor, json_codec as rest_json
from lifecycle.server.core import ModelRef, ServerCore
from lifecycle.server.models.examples import input_from_json
from lifecycle.server.monitoring import request_observer

log = logging.getLogger("mlc-model-server")

_PREDICT_PATH = re.compile(
    r"(?i)/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)"
)
_STATUS_PATH = re.compile(
    r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?"
)
# Default bound on a REST request body (mlc's own; TF Serving has none). A 513x513 RGB image
# as JSON integers is about 3 MB; --mlc_max_request_bytes raises the bound.
DEFAULT_MAX_REQUEST_BYTES = 256 << 20


def handler_class(core: ServerCore, timeout_ms: int = 30000, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
                  metrics_path: str | None = None, cors: bool = False) -> type:
    """The HTTP handler bound to one server's core and settings (rest_server.RestServer runs it)."""
    return type("BoundHandler", (_Handler,), {
        "core": core, "timeout_ms": timeout_ms, "max_request_bytes": max_request_bytes,
        "metrics_path": metrics_path, "cors": cors,
    })


class _Handler(BaseHTTPRequestHandler):
    core: ServerCore
    timeout_ms: int
    max_request_bytes: int
    metrics_path: str | None  # Prometheus exposition on this GET path, if enabled
    cors: bool  # --rest_api_enable_cors_support
    protocol_version = "HTTP/1.1"
    server_version = "mlc-model-server"

    def handle_expect_100(self) -> bool:
        """The event loop already sent ``100 Continue`` before it read the body."""
        return True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        log.debug("rest: " + format, *args)

    def do_GET(self) -> None:  # noqa: N802 - stdlib's name
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    # TF Serving answers any other method with INVALID_ARGUMENT "Malformed request" (400).
    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")

    def do_OPTIONS(self) -> None:  # noqa: N802
        self._dispatch("OPTIONS")

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("HEAD")

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The standard library's own errors (bad request line, headers too long) as JSON too."""
        self.close_connection = True
        self._respond(code, rest_json.error_json(message or self.responses.get(code, ("Error",))[0]))

    def _dispatch(self, method: str) -> None:
        path = urllib.parse.urlsplit(self.path).path
        try:
            body = self._read_body()
            if method == "OPTIONS" and self.cors:  # a CORS preflight
                self._respond(200, b"")
                return
            if method == "GET" and self.metrics_path is not None and path == self.metrics_path:
                self._respond(200, self.core.metrics.render(), content_type="text/plain; version=0.0.4")
                return
            if not re.match(r"(?i)/v1/", path):
                self._respond(404, rest_json.error_json(f"Not found: {method} {path}"))
                return
            result = self._route(method, path, body)
        except LifecycleError as e:
            self._respond_error(e)
            return
        except RecursionError:
            self._respond_error(InvalidArgument("JSON Value: nested too deeply"))
            return
        except MemoryError:
            self._respond_error(ResourceExhausted("Request too large to process in memory"))
            return
        except Exception as e:  # a bug: answer 500 rather than drop the connection
            log.exception("REST %s %s failed", method, path)
            self._respond_error(LifecycleError(f"{type(e).__name__}: {e}"))
            return
        self._respond(200, result)

    def _read_body(self) -> bytes:
        """The request body: Content-Length or chunked, at most max_request_bytes."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            raise InvalidArgument("malformed Content-Length header") from None
        if length < 0:
            self.close_connection = True
            raise InvalidArgument("malformed Content-Length header")
        if length > self.max_request_bytes:
            self.close_connection = True  # the unread body must not be taken for the next request
            raise self._too_large(length)
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                raise InvalidArgument("malformed chunked request body") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if size < 0 or total > self.max_request_bytes:
                self.close_connection = True
                raise self._too_large(total)
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _too_large(self, size: int) -> RequestTooLarge:
        return RequestTooLarge(
            f"Request body of {size} bytes exceeds the limit of {self.max_request_bytes} bytes "
            "(raise it with --mlc_max_request_bytes)"
        )

    def _route(self, method: str, path: str, body: bytes) -> bytes | str | dict[str, Any]:
        if method == "POST":
            match = _PREDICT_PATH.fullmatch(path)
            if match:
                ref = _ref(match.group(1), match.group(2), match.group(3))
                verb = match.group(4).lower()
                handler = {"predict": predict_json, "classify": classify_json, "regress": regress_json}[verb]
                observe = request_observer(self.core.metrics, ref.name, verb.capitalize(), "REST")
                status = "INTERNAL"
                try:
                    result = handler(self.core, ref, body, self.timeout_ms)
                    status = "OK"
                    return result
                except LifecycleError as e:
                    status = e.grpc_code
                    raise
                except RecursionError:
                    status = "INVALID_ARGUMENT"
                    raise
                finally:
                    observe(status)
        elif method == "GET":
            match = _STATUS_PATH.fullmatch(path)
            if match:
                if not match.group(1):
                    raise InvalidArgument("Missing model name in request.")
                ref = _ref(match.group(1), match.group(2), match.group(3))
                if match.group(4):
                    return metadata_json(self.core, ref)
                return status_json(self.core, ref)
        raise InvalidArgument(f"Malformed request: {method} {path}")

    def _respond_error(self, error: LifecycleError) -> None:
        self._respond(error.http_status, rest_json.error_json(error.message))

    def _respond(self, status: int, payload: bytes | str | dict[str, Any],
                 content_type: str = "application/json") -> None:
        if isinstance(payload, dict):
            payload = json.dumps(payload)
        data = payload if isinstance(payload, bytes) else payload.encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            if self.close_connection:
                self.send_header("Connection", "close")
            if getattr(self, "cors", False):
                self.send_header("Access-Control-Allow-Origin", "*")
                if self.command == "OPTIONS":
                    self.send_header("Access-Control-Allow-Methods", "POST, GET")
                    self.send_header("Access-Control-Allow-Headers", "Content-Type")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        except OSError:  # the client went away; nothing left to tell it
            self.close_connection = True


def _ref(name: str, version: str | None, label: str | None) -> ModelRef:
    return ModelRef(
        urllib.parse.unquote(name),
        version=int(version) if version else None,
        label=urllib.parse.unquote(label) if label else None,
    )


def _spec(ref: ModelRef) -> object:
    from tensorflow_serving.apis import model_pb2

    spec = model_pb2.ModelSpec(name=ref.name)
    if ref.version is not None:
        spec.version.value = ref.version
    if ref.label is not None:
        spec.version_label = ref.label
    return spec


def _to_json(message: object) -> str:
    from google.protobuf import json_format

    return json_format.MessageToJson(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True, indent=1
    )


def status_json(core: ServerCore, ref: ModelRef) -> str:
    """GetModelStatus as TF Serving's REST API prints it."""
    from tensorflow_serving.apis import get_model_status_pb2

    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.CopyFrom(_spec(ref))
    return _to_json(core.get_model_status(request)) + "\n"


def metadata_json(core: ServerCore, ref: ModelRef) -> str:
    """GetModelMetadata (signature_def) as TF Serving's REST API prints it."""
    from tensorflow_serving.apis import get_model_metadata_pb2

    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.CopyFrom(_spec(ref))
    response = core.get_model_metadata(request)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    return (
        "{\n" + f'"model_spec":{_to_json(response.model_spec)},\n'
        + f'"metadata": {{"signature_def": {_to_json(signature_map)}}}\n' + "}\n"
    )


# --- predict, classify, regress: JSON <-> tensors and Examples (see rest_json.py) ----------


def _parse(body: bytes) -> dict[str, Any]:
    """ParseJson: the body as a JSON object, or TF Serving's parse error."""
    if not body:
        raise InvalidArgument("JSON Parse error: The document is empty")
    try:
        document = json.loads(body)
    except RecursionError:
        raise InvalidArgument("JSON Parse error: Nesting too deep") from None
    except (ValueError, UnicodeDecodeError) as e:
        position = getattr(e, "pos", 0)
        reason = getattr(e, "msg", str(e))
        raise InvalidArgument(f"JSON Parse error: {reason} at offset: {position}") from None
    if not isinstance(document, dict):
        raise InvalidArgument(f"JSON Value: {rest_json.value_text(document)} Is not object")
    return document


def _signature_name(document: dict[str, Any]) -> str:
    signature_name = document.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise InvalidArgument(
            f"JSON Value: {rest_json.value_text(document)} not formatted correctly. "
            "'signature_name' key must be a string value."
        )
    return signature_name


def predict_json(core: ServerCore, ref: ModelRef, body: bytes, timeout_ms: int) -> bytes:
    """POST :predict with a row or columnar body; returns TF Serving's predictions/outputs JSON."""
    document = _parse(body)
    bools = b"true" in body or b"false" in body  # numpy's fast path would take true for 1
    signature_name = _signature_name(document)
    infos = core.signature_inputs(ref, signature_name)
    if not infos:
        raise InvalidArgument(f"Failed to get input map for signature: {signature_name or 'DEFAULT'}")
    has_instances, has_inputs = "instances" in document, "inputs" in document
    if has_instances and has_inputs:
        raise InvalidArgument(
            f"JSON Value: {rest_json.value_text(document)} Not formatted correctly expecting only one of "
            "'inputs' or 'instances' keys to exist "
        )
    if has_instances:
        instances = document["instances"]
        if not isinstance(instances, list):
            raise InvalidArgument(
                f"JSON Value: {rest_json.value_text(document)} Excepting 'instances' to be an list/array"
            )
        if not instances:
            raise InvalidArgument(f"JSON Value: {rest_json.value_text(document)} No values in 'instances' array")
        inputs = json_tensor.arrays_from_instances(instances, infos, bools)
    elif has_inputs:
        inputs = json_tensor.arrays_from_inputs(document["inputs"], infos, bools)
    else:
        raise InvalidArgument("Missing 'inputs' or 'instances' key")
    prediction = core.predict_arrays(ref, signature_name, inputs, timeout_ms=timeout_ms or None)
    if has_instances:
        return rest_json.rows_json(prediction.outputs)
    return rest_json.columns_json(prediction.outputs)


def classify_json(core: ServerCore, ref: ModelRef, body: bytes, timeout_ms: int) -> bytes:
    """POST :classify with ``examples`` (and optional ``context``); returns ``{"results": ...}``."""
    from tensorflow_serving.apis import classification_pb2

    request = classification_pb2.ClassificationRequest()
    _fill_examples_request(request, ref, body)
    response = core.classify(request, timeout_ms or None)
    return rest_json.classification_json(response.result)


def regress_json(core: ServerCore, ref: ModelRef, body: bytes, timeout_ms: int) -> bytes:
    """POST :regress with ``examples`` (and optional ``context``); returns ``{"results": ...}``."""
    from tensorflow_serving.apis import regression_pb2

    request = regression_pb2.RegressionRequest()
    _fill_examples_request(request, ref, body)
    response = core.regress(request, timeout_ms or None)
    return rest_json.regression_json(response.result)


def _fill_examples_request(request: object, ref: ModelRef, body: bytes) -> None:
    document = _parse(body)
    request.model_spec.CopyFrom(_spec(ref))
    request.model_spec.signature_name = _signature_name(document)
    input_from_json(document, request.input, lambda: rest_json.value_text(document))
