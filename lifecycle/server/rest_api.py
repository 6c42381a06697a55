"""REST transport: TF Serving's ``/v1/models/...`` API on the standard library's HTTP server.

- ``GET /v1/models/{m}[/versions/{n}|/labels/{l}]``: model status, protobuf JSON as TF
  Serving prints it (proto field names, every field present, int64 as strings);
- ``GET .../metadata``: ``{"model_spec": ..., "metadata": {"signature_def": ...}}``;
- ``POST ...:predict``: row (``instances``) or columnar (``inputs``) JSON.

Errors are ``{"error": "<message>"}`` with the HTTP status of the error's gRPC code
(``lifecycle.errors.GRPC_TO_HTTP``), mapped in one place, :meth:`_Handler._respond_error`.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from lifecycle.errors import InvalidArgument, LifecycleError, Unimplemented
from lifecycle.server.core import ModelRef, ServerCore

log = logging.getLogger("mlc-model-server")

_PREDICT_PATH = re.compile(
    r"(?i)/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)"
)
_STATUS_PATH = re.compile(
    r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?"
)
MAX_BODY_BYTES = 1 << 31


class RestServer:
    """A threaded HTTP server answering TF Serving's REST API from a ServerCore."""

    def __init__(self, core: ServerCore, host: str, port: int, timeout_ms: int = 30000) -> None:
        handler = type("BoundHandler", (_Handler,), {"core": core, "timeout_ms": timeout_ms})
        self._httpd = ThreadingHTTPServer((host, port), handler)
        self._httpd.daemon_threads = True
        self.port: int = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="mlc-rest", daemon=True
        )

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting requests and close the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    core: ServerCore
    timeout_ms: int
    protocol_version = "HTTP/1.1"
    server_version = "mlc-model-server"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        log.debug("rest: " + format, *args)

    def do_GET(self) -> None:  # noqa: N802 - stdlib's name
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        path = urllib.parse.urlsplit(self.path).path
        try:
            body = self._read_body()
            if not re.match(r"(?i)/v1/", path):
                self._respond(404, {"error": f"Not found: {method} {path}"})
                return
            result = self._route(method, path, body)
        except LifecycleError as e:
            self._respond_error(e)
            return
        except Exception as e:  # a bug: answer 500 rather than drop the connection
            log.exception("REST %s %s failed", method, path)
            self._respond_error(LifecycleError(f"{type(e).__name__}: {e}"))
            return
        self._respond(200, result)

    def _read_body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise InvalidArgument("malformed Content-Length header") from None
        if length > MAX_BODY_BYTES:
            raise InvalidArgument("request body too large")
        return self.rfile.read(length) if length else b""

    def _route(self, method: str, path: str, body: bytes) -> str | dict[str, Any]:
        if method == "POST":
            match = _PREDICT_PATH.fullmatch(path)
            if match:
                ref = _ref(match.group(1), match.group(2), match.group(3))
                verb = match.group(4).lower()
                if verb != "predict":
                    raise Unimplemented(f"{verb} is not implemented by mlc-model-server yet")
                return predict_json(self.core, ref, body, self.timeout_ms)
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
        self._respond(error.http_status, {"error": error.message})

    def _respond(self, status: int, payload: str | dict[str, Any]) -> None:
        data = (payload if isinstance(payload, str) else json.dumps(payload)).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


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


# --- predict: JSON <-> tensors (TF Serving's json_tensor) ---------------------------------


def predict_json(core: ServerCore, ref: ModelRef, body: bytes, timeout_ms: int) -> str:
    """POST :predict with a row or columnar body; returns predictions or outputs."""
    try:
        document = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"JSON Parse error: {e}") from e
    if not isinstance(document, dict):
        raise InvalidArgument("JSON Value: not an object. Expecting a JSON object at the top level")
    signature_name = document.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise InvalidArgument("'signature_name' key must be a string value.")
    has_instances, has_inputs = "instances" in document, "inputs" in document
    if has_instances and has_inputs:
        raise InvalidArgument("Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist ")
    if not has_instances and not has_inputs:
        raise InvalidArgument("Missing 'inputs' or 'instances' key")
    infos = core.signature_inputs(ref, signature_name)
    if has_instances:
        inputs = _rows_to_arrays(document["instances"], infos)
    else:
        inputs = _columns_to_arrays(document["inputs"], infos)
    prediction = core.predict_arrays(ref, signature_name, inputs, timeout_ms=timeout_ms or None)
    outputs = prediction.outputs
    if has_instances:
        return '{"predictions": ' + _rows_json(outputs) + "}"
    if len(outputs) == 1:
        (alias, value), = outputs.items()
        return '{"outputs": ' + tensor_json(alias, value) + "}"
    members = ", ".join(f"{json.dumps(alias)}: {tensor_json(alias, value)}" for alias, value in outputs.items())
    return '{"outputs": {' + members + "}}"


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def _rows_to_arrays(instances: Any, infos: dict[str, object]) -> dict[str, np.ndarray]:
    if not isinstance(instances, list):
        raise InvalidArgument("Excepting 'instances' to be an list/array")
    if not instances:
        raise InvalidArgument("No instances found in 'instances' list")
    named = isinstance(instances[0], dict) and not _is_b64(instances[0])
    if not named:
        if len(infos) != 1:
            raise InvalidArgument(
                f"Expecting object with named inputs, as the signature has {len(infos)} inputs"
            )
        (alias, info), = infos.items()
        return {alias: _array(instances, info, alias)}
    columns: dict[str, list[Any]] = {alias: [] for alias in infos}
    for index, instance in enumerate(instances):
        if not isinstance(instance, dict) or set(instance) != set(infos):
            raise InvalidArgument(
                f"Failed to process element: {index} of 'instances' list. JSON object: "
                f"{json.dumps(instance)[:200]} keys must be equal to: {','.join(sorted(infos))}"
            )
        for alias, value in instance.items():
            columns[alias].append(value)
    return {alias: _array(values, infos[alias], alias) for alias, values in columns.items()}


def _columns_to_arrays(inputs: Any, infos: dict[str, object]) -> dict[str, np.ndarray]:
    if isinstance(inputs, dict) and not _is_b64(inputs):
        unknown = set(inputs) - set(infos)
        if unknown:
            raise InvalidArgument(
                f"input tensor alias not found in signature: {sorted(unknown)[0]}. "
                f"Inputs expected to be in the set {{{','.join(sorted(infos))}}}."
            )
        return {alias: _array(value, infos[alias], alias) for alias, value in inputs.items()}
    if len(infos) != 1:
        raise InvalidArgument(f"Expecting 'inputs' to be an object with {len(infos)} named inputs")
    (alias, info), = infos.items()
    return {alias: _array(inputs, info, alias)}


def _array(value: Any, info: object, alias: str) -> np.ndarray:
    from tensorflow.python.framework import dtypes

    dtype = dtypes.as_dtype(info.dtype)
    try:
        if dtype == dtypes.string:
            return np.array(_decode_strings(value), dtype=object)
        return np.array(value, dtype=dtype.as_numpy_dtype)
    except (TypeError, ValueError) as e:
        raise InvalidArgument(f"Failed to convert JSON value for input {alias} to {dtype.name}: {e}") from e


def _decode_strings(value: Any) -> Any:
    if _is_b64(value):
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_decode_strings(v) for v in value]
    if isinstance(value, str):
        return value.encode("utf-8")
    raise InvalidArgument(f"expected a string or {{\"b64\": ...}} but got {json.dumps(value)[:100]}")


def _decimal_tokens(value: np.ndarray) -> np.ndarray:
    """JSON number tokens for floats as TF Serving writes them (json_tensor.cc WriteDecimal).

    Six significant digits unless that does not round-trip, then max_digits10; whole numbers
    get a trailing ".0"; NaN and infinities are written as NaN, Infinity, -Infinity.
    """
    digits = 9 if value.dtype in (np.float32, np.float16) else 17
    flat = value.astype(np.float32 if digits == 9 else np.float64).ravel()
    tokens = np.char.mod("%g", flat).astype(object)
    finite = np.isfinite(flat)
    with np.errstate(all="ignore"):
        lossy = finite & (tokens.astype(flat.dtype) != flat)
    if lossy.any():
        tokens[lossy] = np.char.mod(f"%.{digits}g", flat[lossy])
    for i in np.flatnonzero(finite):
        token = tokens[i]
        if "." not in token and "e" not in token:
            tokens[i] = token + ".0"
    for i in np.flatnonzero(~finite):
        tokens[i] = "NaN" if np.isnan(flat[i]) else ("-Infinity" if flat[i] < 0 else "Infinity")
    return tokens.reshape(value.shape)


def _tokens(alias: str, value: np.ndarray) -> np.ndarray:
    if value.dtype.kind == "f":
        return _decimal_tokens(value)
    if value.dtype == np.bool_:
        return np.where(value, "true", "false").astype(object)
    if value.dtype.kind in ("i", "u"):
        return value.astype(object).astype(str).astype(object)
    binary = alias.endswith("_bytes")
    flat = [
        ('{"b64": ' + json.dumps(base64.b64encode(item).decode("ascii")) + "}") if binary
        else json.dumps(item.decode("utf-8", errors="replace") if isinstance(item, bytes) else str(item))
        for item in value.ravel().tolist()
    ]
    return np.array(flat, dtype=object).reshape(value.shape)


def _nest(tokens: np.ndarray | str) -> str:
    if isinstance(tokens, str):  # one element of an object array
        return tokens
    if tokens.ndim == 0:
        return str(tokens.item())
    if tokens.ndim == 1:
        return "[" + ", ".join(tokens.tolist()) + "]"
    return "[" + ", ".join(_nest(part) for part in tokens) + "]"


def tensor_json(alias: str, value: np.ndarray) -> str:
    """One output tensor as JSON text, numbers formatted as TF Serving formats them."""
    return _nest(_tokens(alias, np.asarray(value)))


def _rows_json(outputs: dict[str, np.ndarray]) -> str:
    batch = -1
    for alias, value in outputs.items():
        if value.ndim == 0:
            raise InvalidArgument(f"Tensor name: {alias} has no shape information ")
        if batch >= 0 and value.shape[0] != batch:
            raise InvalidArgument(
                f"Tensor name: {alias} has inconsistent batch size: {value.shape[0]} expecting: {batch}"
            )
        batch = value.shape[0]
    tokens = {alias: _tokens(alias, value) for alias, value in outputs.items()}
    if len(tokens) == 1:
        (only,) = tokens.values()
        return "[" + ", ".join(_nest(row) for row in only) + "]"
    rows = []
    for i in range(batch):
        members = ", ".join(f"{json.dumps(alias)}: {_nest(t[i])}" for alias, t in tokens.items())
        rows.append("{" + members + "}")
    return "[" + ", ".join(rows) + "]"
