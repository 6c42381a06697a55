"""Classify, Regress and MultiInference: tf.Example inputs in, TF Serving's result shapes out.

TF Serving runs these APIs on SavedModel signatures whose single input (alias ``inputs``) takes
a 1-D string tensor of serialized ``tf.Example`` protos:

- an ``Input`` proto becomes that tensor; with ``example_list_with_context`` each element is
  the serialized context followed by the serialized example (protobuf's concatenation is a
  merge, so an example's own features win over the context's);
- a classify signature has outputs ``classes`` (DT_STRING) and/or ``scores`` (DT_FLOAT), each
  ``[batch_size, num_classes]``, and gives one ``Classifications`` per example;
- a regress signature has the output ``outputs`` (DT_FLOAT) of shape ``[batch_size]`` or
  ``[batch_size, 1]``, and gives one ``Regression`` per example;
- MultiInference runs several classify/regress signatures of one model on one input in a
  single session run.

The messages are TF Serving's (classifier.cc, regressor.cc, multi_inference.cc), so clients
that match on them keep working. Like ``tensorflow_model_server`` without
``--enable_signature_method_name_check``, a signature's method_name is not enforced unless asked.

This module also turns the REST ``{"examples": [...], "context": {...}}`` body into an
``Input`` proto, following TF Serving's json_tensor rules for feature kinds.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from lifecycle.errors import FailedPrecondition, InvalidArgument, Unimplemented
from lifecycle.server.models.loader import DEFAULT_SIGNATURE, Servable

CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
CLASSIFY_INPUTS = "inputs"
CLASSIFY_CLASSES = "classes"
CLASSIFY_SCORES = "scores"
REGRESS_INPUTS = "inputs"
REGRESS_OUTPUTS = "outputs"


# --- Input proto -> serialized Example tensor --------------------------------------------


def serialized_examples(input_proto: Any) -> np.ndarray:
    """The 1-D string tensor TF Serving feeds for an ``Input`` (InputToSerializedExampleTensor)."""
    kind = input_proto.WhichOneof("kind")
    if kind == "example_list":
        examples = [e.SerializeToString() for e in input_proto.example_list.examples]
    elif kind == "example_list_with_context":
        listed = input_proto.example_list_with_context
        context = listed.context.SerializeToString()
        examples = [context + e.SerializeToString() for e in listed.examples]
    else:
        examples = []
    if not examples:
        raise InvalidArgument("Input is empty.")
    array = np.empty(len(examples), dtype=object)
    array[:] = examples
    return array


# --- signatures ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """What to feed and fetch for one classify or regress signature."""

    input_name: str
    output_names: list[str]


def _signature(servable: Servable, model_spec: Any) -> tuple[str, Any]:
    name = model_spec.signature_name or DEFAULT_SIGNATURE
    signature = servable.signatures.get(name)
    if signature is None:
        raise InvalidArgument(f"No signature was found with the name: {name}")
    return name, signature


PREDICT_METHOD = "tensorflow/serving/predict"


def check_predict_method(signature: Any) -> None:
    """With --enable_signature_method_name_check: Predict runs predict/classify/regress signatures."""
    if signature.method_name not in (PREDICT_METHOD, CLASSIFY_METHOD, REGRESS_METHOD):
        raise InvalidArgument(
            f"Expected prediction signature method_name to be one of {{{PREDICT_METHOD}, {CLASSIFY_METHOD}, "
            f"{REGRESS_METHOD}}}. Was: {signature.method_name}"
        )


def _check_method(signature: Any, wanted: str, what: str) -> None:
    if signature.method_name != wanted:
        raise InvalidArgument(f"Expected {what} signature method_name to be {wanted}. Was: {signature.method_name}")


def _plan_classification(signature: Any, check_method: bool = False) -> _Plan:
    if check_method:
        _check_method(signature, CLASSIFY_METHOD, "classification")
    if len(signature.inputs) != 1:
        raise InvalidArgument("Expected one input Tensor.")
    if len(signature.outputs) not in (1, 2):
        raise InvalidArgument(f"Expected one or two output Tensors, found {len(signature.outputs)}")
    if CLASSIFY_INPUTS not in signature.inputs:
        raise FailedPrecondition(f"No classification inputs found in SignatureDef: {signature}")
    outputs = [signature.outputs[k].name for k in (CLASSIFY_CLASSES, CLASSIFY_SCORES) if k in signature.outputs]
    if not outputs:
        raise FailedPrecondition(
            'Expected classification signature outputs to contain at least one of "classes" or '
            f'"scores". Signature was: {signature}'
        )
    return _Plan(signature.inputs[CLASSIFY_INPUTS].name, outputs)


def _plan_regression(signature: Any, check_method: bool = False) -> _Plan:
    if check_method:
        _check_method(signature, REGRESS_METHOD, "regression")
    if len(signature.inputs) != 1:
        raise InvalidArgument("Expected one input Tensor.")
    if len(signature.outputs) != 1:
        raise InvalidArgument("Expected one output Tensor.")
    if REGRESS_INPUTS not in signature.inputs:
        raise FailedPrecondition(f"No regression inputs found in SignatureDef: {signature}")
    if REGRESS_OUTPUTS not in signature.outputs:
        raise FailedPrecondition(f"No regression outputs found in SignatureDef: {signature}")
    return _Plan(signature.inputs[REGRESS_INPUTS].name, [signature.outputs[REGRESS_OUTPUTS].name])


def _shape(value: np.ndarray) -> str:
    return "[" + ",".join(str(d) for d in value.shape) + "]"


def _dtype_name(value: np.ndarray) -> str:
    from tensorflow.core.framework import types_pb2
    from tensorflow.python.framework import dtypes

    if value.dtype == object or value.dtype.kind == "S":
        return "DT_STRING"
    try:
        return types_pb2.DataType.Name(dtypes.as_dtype(value.dtype).as_datatype_enum)
    except TypeError:
        return str(value.dtype)


def _fill_classification(signature: Any, count: int, fetched: dict[str, np.ndarray], result: Any) -> None:
    """PostProcessClassificationResult: check classes/scores and write one entry per example."""
    classes = fetched.get(signature.outputs[CLASSIFY_CLASSES].name) if CLASSIFY_CLASSES in signature.outputs else None
    scores = fetched.get(signature.outputs[CLASSIFY_SCORES].name) if CLASSIFY_SCORES in signature.outputs else None
    for value, what, want in ((classes, "classes", "DT_STRING"), (scores, "scores", "DT_FLOAT")):
        if value is None:
            continue
        if value.ndim != 2:
            raise InvalidArgument(f"Expected Tensor shape: [batch_size num_classes] but got {_shape(value)}")
        if _dtype_name(value) != want:
            raise InvalidArgument(f"Expected {what} Tensor of {want}. Got: {_dtype_name(value)}")
        if value.shape[0] != count:
            raise InvalidArgument(f"Expected {what} output batch size of {count}. Got: {value.shape[0]}")
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise InvalidArgument(
            f"Tensors class and score should match in dim_size(1). Got {classes.shape[1]} vs. {scores.shape[1]}"
        )
    either = classes if classes is not None else scores
    if either is None:  # the plan fetches at least one of the two
        raise FailedPrecondition("The classification signature returned neither classes nor scores")
    num_classes = either.shape[1]
    for i in range(count):
        classifications = result.classifications.add()
        for c in range(num_classes):
            entry = classifications.classes.add()
            if classes is not None:
                entry.label = bytes(classes[i, c]).decode("utf-8", errors="replace")
            if scores is not None:
                entry.score = float(scores[i, c])


def _fill_regression(signature: Any, count: int, fetched: dict[str, np.ndarray], result: Any) -> None:
    """PostProcessRegressionResult: check the output and write one value per example."""
    value = fetched[signature.outputs[REGRESS_OUTPUTS].name]
    if not (value.ndim == 1 or (value.ndim == 2 and value.shape[1] == 1)):
        raise InvalidArgument(
            f"Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got {_shape(value)}"
        )
    if value.shape[0] != count:
        raise InvalidArgument(f"Input batch size did not match output batch size: {count} vs. {value.shape[0]}")
    if _dtype_name(value) != "DT_FLOAT":
        raise InvalidArgument(f"Expected output Tensor of DT_FLOAT.  Got: {_dtype_name(value)}")
    for v in value.reshape(-1):
        result.regressions.add().value = float(v)


def _response_spec(spec: Any, name: str, signature_name: str, version: int) -> None:
    spec.name = name
    spec.signature_name = signature_name
    spec.version.value = version


# TF Serving's two example-based methods: how each plans its signature, fills its result, and
# which field of an InferenceResult holds it.
_METHODS: dict[str, tuple[Callable[[Any, bool], _Plan], Callable[..., None], str]] = {
    CLASSIFY_METHOD: (_plan_classification, _fill_classification, "classification_result"),
    REGRESS_METHOD: (_plan_regression, _fill_regression, "regression_result"),
}


def _infer(servable: Servable, request: Any, method: str, response: Any, timeout_ms: int | None,
           check_method: bool) -> Any:
    """Classify or Regress on one held servable: plan, one run on the examples, fill, spec."""
    plan_signature, fill, _ = _METHODS[method]
    name, signature = _signature(servable, request.model_spec)
    plan = plan_signature(signature, check_method)
    examples = serialized_examples(request.input)
    values = servable.run_tensors({plan.input_name: examples}, plan.output_names, timeout_ms)
    fill(signature, len(examples), dict(zip(plan.output_names, values, strict=True)), response.result)
    _response_spec(response.model_spec, request.model_spec.name, name, servable.version)
    return response


def classify(servable: Servable, request: Any, timeout_ms: int | None = None, check_method: bool = False) -> Any:
    """PredictionService.Classify on one held servable."""
    from tensorflow_serving.apis import classification_pb2

    return _infer(servable, request, CLASSIFY_METHOD, classification_pb2.ClassificationResponse(), timeout_ms,
                  check_method)


def regress(servable: Servable, request: Any, timeout_ms: int | None = None, check_method: bool = False) -> Any:
    """PredictionService.Regress on one held servable."""
    from tensorflow_serving.apis import regression_pb2

    return _infer(servable, request, REGRESS_METHOD, regression_pb2.RegressionResponse(), timeout_ms, check_method)


def multi_inference(servable: Servable, request: Any, timeout_ms: int | None = None,
                    check_method: bool = False) -> Any:
    """PredictionService.MultiInference: several classify/regress tasks, one session run.

    As TF Serving's multi_inference.cc: the tasks' signatures may read different input tensors
    (a TF2 model's classify and regress signatures each have their own placeholder); the same
    serialized examples are fed to every one of them in a single run.
    """
    from tensorflow_serving.apis import inference_pb2

    model_name = ""
    input_names: set[str] = set()
    seen: set[str] = set()
    outputs: set[str] = set()
    planned: list[tuple[Any, str, Any]] = []
    for task in request.tasks:
        if not task.model_spec.name:
            raise InvalidArgument("Found ModelSpec with an empty model name.")
        if not model_name:
            model_name = task.model_spec.name
        elif model_name != task.model_spec.name:
            raise InvalidArgument("All ModelSpecs in a MultiInferenceRequest must access the same model name.")
        signature_name = task.model_spec.signature_name or DEFAULT_SIGNATURE
        if signature_name in seen:
            raise InvalidArgument(f"Duplicate evaluation of signature: {signature_name}")
        seen.add(signature_name)
        signature = servable.signatures.get(signature_name)
        if signature is None:
            raise InvalidArgument(f"Requested signature not found in model graph: {signature_name}")
        if task.method_name not in _METHODS:
            raise Unimplemented(f"Unsupported signature method_name: {task.method_name}")
        plan = _METHODS[task.method_name][0](signature, check_method)
        input_names.add(plan.input_name)
        outputs.update(plan.output_names)
        planned.append((task, signature_name, signature))
    examples = serialized_examples(request.input)
    fetches = sorted(outputs)
    values = servable.run_tensors({name: examples for name in sorted(input_names)}, fetches, timeout_ms)
    fetched = dict(zip(fetches, values, strict=True))
    response = inference_pb2.MultiInferenceResponse()
    for task, signature_name, signature in planned:
        result = response.results.add()
        _, fill, field = _METHODS[task.method_name]
        fill(signature, len(examples), fetched, getattr(result, field))
        _response_spec(result.model_spec, task.model_spec.name, signature_name, servable.version)
    return response


def first_task_spec(request: Any) -> Any:
    """The ModelSpec that picks the servable of a MultiInferenceRequest: the first task's."""
    from tensorflow_serving.apis import model_pb2

    if request.tasks and request.tasks[0].HasField("model_spec"):
        return request.tasks[0].model_spec
    return model_pb2.ModelSpec()


# --- REST: JSON examples -> Input proto ---------------------------------------------------


def _feature_kind_error(name: str, kind: str | None) -> InvalidArgument:
    label = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64"}.get(kind or "", "UNKNOWN")
    return InvalidArgument(f"Unexpected element type in feature: {name} expecting type: {label}")


def json_type(value: Any) -> str:
    """rapidjson's name for a JSON value's type (Null, True, False, Object, Array, String, Number)."""
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def _add_feature_value(value: Any, name: str, feature: Any) -> None:
    kind = feature.WhichOneof("kind")

    def want(target: str) -> None:
        if kind not in (None, target):
            raise _feature_kind_error(name, kind)

    if isinstance(value, bool):
        want("int64_list")
        feature.int64_list.value.append(1 if value else 0)
    elif isinstance(value, dict):
        if not is_b64(value):
            raise InvalidArgument(f"Feature: {name} has element with unexpected JSON type: Object")
        want("bytes_list")
        feature.bytes_list.value.append(decode_b64(value))
    elif isinstance(value, str):
        want("bytes_list")
        feature.bytes_list.value.append(value.encode("utf-8", errors="surrogatepass"))
    elif isinstance(value, float) or (isinstance(value, int) and not -(2**63) <= value < 2**64):
        # rapidjson's IsDouble (a fraction or exponent, or an integer beyond uint64) -> GetFloat
        want("float_list")
        try:
            number = float(value)
        except OverflowError:  # rapidjson refuses such a literal while parsing
            raise InvalidArgument(f"JSON Parse error: Number too big to be stored in double: {value}") from None
        with np.errstate(over="ignore"):
            feature.float_list.value.append(float(np.float32(number)))
    elif isinstance(value, int):
        want("int64_list")
        if value >= 2**63:
            raise InvalidArgument(f"Feature: {name} has uint64_t element. Only int64_t is supported.")
        feature.int64_list.value.append(value)
    else:
        raise InvalidArgument(f"Feature: {name} has element with unexpected JSON type: {json_type(value)}")


def example_from_json(value: Any, example: Any) -> None:
    """Fill a tf.Example from a JSON object of feature name -> value or list of values."""
    if not isinstance(value, dict):
        raise InvalidArgument(f"Example must be JSON object but got JSON {json_type(value)}")
    for name, content in value.items():
        feature = example.features.feature[name]
        feature.Clear()
        for item in content if isinstance(content, list) else [content]:
            _add_feature_value(item, name, feature)


def input_from_json(document: dict[str, Any], input_proto: Any, describe: Callable[[], str]) -> None:
    """Fill an ``Input`` from a classify/regress body (``examples`` and optional ``context``)."""
    has_context = "context" in document
    if has_context:
        example_from_json(document["context"], input_proto.example_list_with_context.context)
    if "examples" not in document:
        raise InvalidArgument(f"JSON Value: {describe()} When method is classify, key 'examples' is expected and was not found")
    examples = document["examples"]
    if not isinstance(examples, list):
        raise InvalidArgument(f"JSON Value: {describe()} Expecting 'examples' value to be an list/array")
    if not examples:
        raise InvalidArgument(f"JSON Value: {describe()} 'examples' value is an empty array")
    target = input_proto.example_list_with_context.examples if has_context else input_proto.example_list.examples
    for value in examples:
        example_from_json(value, target.add())


def is_b64(value: Any) -> bool:
    """Whether a JSON value is TF Serving's binary form ``{"b64": "<base64>"}``."""
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def decode_b64(value: dict[str, str]) -> bytes:
    """Decode ``{"b64": ...}``; INVALID_ARGUMENT if it is not base64."""
    text = value["b64"].strip()
    if len(text) % 4 in (2, 3):  # absl's Base64Unescape accepts unpadded input
        text += "=" * (4 - len(text) % 4)
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise InvalidArgument("Unable to base64 decode") from None
