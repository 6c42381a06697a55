"""REST endpoints: each converts one ``/v1/models/...`` request to a core call and its answer to JSON.

They are named by :data:`lifecycle.server.rest.routes.ROUTES`; framing and errors are
:mod:`lifecycle.server.rest.handler`'s, and the JSON shapes :mod:`lifecycle.server.rest.json_codec`'s.
The last two are mlc's admin path for the traffic split (:mod:`lifecycle.server.traffic`).
"""

from __future__ import annotations

import gc
import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from lifecycle.errors import InvalidArgument, ServableNotFound
from lifecycle.server.core import ModelRef, ServerCore
from lifecycle.server.models.examples import input_from_json
from lifecycle.server.rest import json_codec as rest_json
from lifecycle.server.rest import json_tensor
from lifecycle.server.traffic.split import Split, parse_split

log = logging.getLogger("mlc-model-server")


@dataclass(frozen=True)
class RestRequest:
    """One routed request: the servable its path names, its body, the REST timeout and its routing key."""

    ref: ModelRef
    body: bytes = b""
    timeout_ms: int = 0
    route_key: str | None = None  # the mlc-route-key header (the traffic split)


Endpoint = Callable[[ServerCore, RestRequest], "bytes | str"]


def model_status_body(core: ServerCore, request: RestRequest) -> str:
    """GET /v1/models/{m}[/versions/{n}|/labels/{l}]: GetModelStatus as TF Serving's REST API prints it."""
    from tensorflow_serving.apis import get_model_status_pb2

    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.CopyFrom(_spec(request.ref))
    return _to_json(core.get_model_status(status_request)) + "\n"


def model_metadata_body(core: ServerCore, request: RestRequest) -> str:
    """GET .../metadata: GetModelMetadata (signature_def) as TF Serving's REST API prints it."""
    from tensorflow_serving.apis import get_model_metadata_pb2

    metadata_request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    metadata_request.model_spec.CopyFrom(_spec(request.ref))
    response = core.get_model_metadata(metadata_request)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    return (
        "{\n" + f'"model_spec":{_to_json(response.model_spec)},\n'
        + f'"metadata": {{"signature_def": {_to_json(signature_map)}}}\n' + "}\n"
    )


def missing_model_name(core: ServerCore, request: RestRequest) -> str:
    """GET /v1/models[/...] without a model name: TF Serving's INVALID_ARGUMENT."""
    raise InvalidArgument("Missing model name in request.")


_PAUSE_GC_FROM = 1 << 16  # body bytes: from here, parsing makes enough lists for the collector to matter
_gc_lock = threading.Lock()
_gc_pauses = [0, False]  # requests parsing a large body now; whether the collector ran before the first


@contextmanager
def _collector_paused(size: int) -> Iterator[None]:
    """The cyclic collector off while a large body becomes lists and arrays (they hold no cycles).

    A 513x513x3 image is 790,000 lists and ints; with TensorFlow's objects in the heap, the
    collections their allocation triggers cost twice the parse itself.
    """
    if size < _PAUSE_GC_FROM:
        yield
        return
    with _gc_lock:
        if _gc_pauses[0] == 0:
            _gc_pauses[1] = gc.isenabled()
            gc.disable()
        _gc_pauses[0] += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses[0] -= 1
            if _gc_pauses[0] == 0 and _gc_pauses[1]:
                gc.enable()


def predict_body(core: ServerCore, request: RestRequest) -> bytes:
    """POST :predict with a row or columnar body; returns TF Serving's predictions/outputs JSON."""
    with _collector_paused(len(request.body)):
        inputs, signature_name, has_instances = _predict_inputs(core, request)
    prediction = core.predict_arrays(request.ref, signature_name, inputs, timeout_ms=request.timeout_ms or None,
                                     route_key=request.route_key)
    if has_instances:
        return rest_json.rows_json(prediction.outputs)
    return rest_json.columns_json(prediction.outputs)


def _predict_inputs(core: ServerCore, request: RestRequest) -> tuple[dict[str, Any], str, bool]:
    """A :predict body as input arrays, its signature name, and whether it holds ``instances``."""
    body = request.body
    document = _parse(body)
    bools = b"true" in body or b"false" in body  # numpy's fast path would take true for 1
    signature_name = _signature_name(document)
    infos = core.signature_inputs(request.ref, signature_name)
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
    return inputs, signature_name, has_instances


def classify_body(core: ServerCore, request: RestRequest) -> bytes:
    """POST :classify with ``examples`` (and optional ``context``); returns ``{"results": ...}``."""
    from tensorflow_serving.apis import classification_pb2

    classification_request = classification_pb2.ClassificationRequest()
    _fill_examples_request(classification_request, request)
    response = core.classify(classification_request, request.timeout_ms or None, request.route_key)
    return rest_json.classification_json(response.result)


def regress_body(core: ServerCore, request: RestRequest) -> bytes:
    """POST :regress with ``examples`` (and optional ``context``); returns ``{"results": ...}``."""
    from tensorflow_serving.apis import regression_pb2

    regression_request = regression_pb2.RegressionRequest()
    _fill_examples_request(regression_request, request)
    response = core.regress(regression_request, request.timeout_ms or None, request.route_key)
    return rest_json.regression_json(response.result)


def traffic_body(core: ServerCore, request: RestRequest) -> str:
    """GET /v1/mlc/traffic/models/{m} (admin): the model's split (null: none) and its generation."""
    split, generation = core.traffic.get(request.ref.name)
    return _traffic_json(request.ref.name, split, generation)


def set_traffic_body(core: ServerCore, request: RestRequest) -> str:
    """PUT /v1/mlc/traffic/models/{m} (admin): set the model's split; ``{}`` or weight and shadow 0 clear it."""
    name = request.ref.name
    if name not in core.manager.model_names():
        raise ServableNotFound(f"Model {name} is not in this server's config")
    split = parse_split(_parse(request.body), f"the split of model {name!r}")
    generation = core.set_split(name, split)
    log.info("Traffic split of model %s (generation %d): %s", name, generation,
             "none" if split is None else json.dumps(split.to_json()))
    return _traffic_json(name, split, generation)


def _traffic_json(name: str, split: Split | None, generation: int) -> str:
    return json.dumps({"model": name, "split": None if split is None else split.to_json(), "generation": generation})


def _spec(ref: ModelRef) -> Any:  # a tensorflow_serving ModelSpec (no type stubs)
    from tensorflow_serving.apis import model_pb2

    spec = model_pb2.ModelSpec(name=ref.name)
    if ref.version is not None:
        spec.version.value = ref.version
    if ref.label is not None:
        spec.version_label = ref.label
    return spec


def _to_json(message: Any) -> str:
    from google.protobuf import json_format

    return json_format.MessageToJson(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True, indent=1
    )


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


def _fill_examples_request(examples_request: Any, request: RestRequest) -> None:
    document = _parse(request.body)
    examples_request.model_spec.CopyFrom(_spec(request.ref))
    examples_request.model_spec.signature_name = _signature_name(document)
    input_from_json(document, examples_request.input, lambda: rest_json.value_text(document))
