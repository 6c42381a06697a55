"""JSON values to tensors for the REST API, as TF Serving's util/json_tensor.cc.

``json_to_array`` is AddValueToTensor and FillTensorProto for one named input (shape from the
first element along each level, every leaf checked against the signature's dtype, TF Serving's
messages); ``arrays_from_instances`` and ``arrays_from_inputs`` are
FillTensorMapFromInstancesList and FillTensorMapFromInputsMap (the row and columnar formats).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lifecycle.errors import InvalidArgument, Unimplemented
from lifecycle.server.models.examples import decode_b64, is_b64, json_type
from lifecycle.server.rest.json_codec import value_text

_INT_RANGES = {
    "int8": (-(2**31), 2**31 - 1), "int16": (-(2**31), 2**31 - 1), "int32": (-(2**31), 2**31 - 1),
    "uint8": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1), "uint32": (0, 2**32 - 1),
    "uint64": (0, 2**64 - 1),
}
MAX_RANK = 64  # numpy's limit on dimensions
_WRAPPING_INTS = ("int8", "int16", "uint8")  # accepted as int32 (IsInt), stored in fewer bits


def dense_shape(value: Any) -> list[int]:
    """GetDenseTensorShape: the sizes along the first element of each nested list."""
    shape: list[int] = []
    while isinstance(value, list):
        if len(shape) == MAX_RANK:
            # numpy (so this server) holds at most 64 dimensions; TF Serving builds the tensor
            # and the model then refuses its rank, also an INVALID_ARGUMENT
            raise InvalidArgument(f"JSON Value: tensor has more than {MAX_RANK} dimensions, the most this server supports")
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _type_error(value: Any, dtype_name: str) -> InvalidArgument:
    return InvalidArgument(
        f"JSON Value: {value_text(value)} Type: {json_type(value)} is not of expected type: {dtype_name}"
    )


def _check_scalar(value: Any, dtype_name: str) -> Any:
    """AddValueToTensor (json_tensor.cc) for one leaf: the value converted, or TF Serving's error.

    float and double take any JSON number (an integer too, converted as rapidjson's GetFloat
    does: too large a value becomes inf); int8, int16, int32 and uint8 take an integer in
    int32's range (rapidjson's IsInt; the tensor then keeps its low bits), int64 IsInt64,
    uint32 IsUint, uint64 IsUint64; bool only true/false. A bool is never a number.
    """
    if dtype_name in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _type_error(value, dtype_name)
        if isinstance(value, int):
            try:
                return float(value)
            except OverflowError:  # rapidjson refuses such a literal while parsing
                raise InvalidArgument(f"JSON Parse error: Number too big to be stored in double: {value}") from None
        return value
    if dtype_name == "string":
        if isinstance(value, str):
            return value.encode("utf-8", errors="surrogatepass")
        if isinstance(value, dict):
            if not is_b64(value):
                raise InvalidArgument(f"JSON Value: {value_text(value)} not formatted correctly for base64 data")
            return decode_b64(value)
        raise _type_error(value, dtype_name)
    if dtype_name == "bool":
        if not isinstance(value, bool):
            raise _type_error(value, dtype_name)
        return value
    limits = _INT_RANGES.get(dtype_name)
    if limits is None:
        raise Unimplemented(f"Conversion of JSON Value: {value_text(value)} to type: {dtype_name}")
    if isinstance(value, bool) or not isinstance(value, int) or not limits[0] <= value <= limits[1]:
        raise _type_error(value, dtype_name)
    return value


def _flatten(value: Any, level: int, shape: list[int], dtype_name: str, out: list[Any]) -> None:
    """FillTensorProto: walk the nested lists, checking every size and leaf."""
    rank = len(shape)
    if not isinstance(value, list):
        if level != rank:
            raise InvalidArgument(
                f"JSON Value: {value_text(value)} found at incorrect level: {level + 1} in the JSON DOM. "
                f"Expected at level: {rank}"
            )
        if isinstance(value, dict) and dtype_name != "string":
            raise _type_error(value, dtype_name)
        out.append(_check_scalar(value, dtype_name))
        return
    if level >= rank:
        raise InvalidArgument(f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(value) != shape[level]:
        raise InvalidArgument(
            f"Encountered list at unexpected size: {len(value)} at level: {level} expected size: {shape[level]}"
        )
    for item in value:
        _flatten(item, level + 1, shape, dtype_name, out)


_TF_NAMES = {"float32": "float", "float64": "double", "float16": "half"}


_DTYPE_NAMES: dict[int, str] = {}  # DataType enum -> name, filled as requests name them


def tf_dtype_name(enum: int) -> str:
    """TensorFlow's DataTypeString for a DataType enum (``float``, ``int32``, ``string``...)."""
    known = _DTYPE_NAMES.get(enum)
    if known is not None:
        return known
    from tensorflow.python.framework import dtypes

    name = dtypes.as_dtype(enum).name
    _DTYPE_NAMES[enum] = _TF_NAMES.get(name, name)
    return _DTYPE_NAMES[enum]


def _numpy_dtype(dtype_name: str) -> Any:
    return object if dtype_name == "string" else np.dtype(dtype_name if dtype_name != "float" else "float32")


def json_to_array(value: Any, dtype_name: str, may_hold_bools: bool = True) -> np.ndarray:
    """One JSON value (scalar or nested lists) as an array of a signature dtype, checked as TF Serving does.

    ``dtype_name`` is TensorFlow's name (``float``, ``int32``, ``string``...). Numeric data
    takes a numpy fast path when the request cannot hold a bool (numpy would take ``true`` for
    1; pass ``may_hold_bools=False`` only if the body has no ``true``/``false`` token); anything
    else is walked leaf by leaf, for TF Serving's error.
    """
    shape = dense_shape(value)
    if dtype_name not in ("string", "bool") and shape and not may_hold_bools:
        fast = _fast_numeric(value, dtype_name, shape)
        if fast is not None:
            return fast
    out: list[Any] = []
    _flatten(value, 0, shape, dtype_name, out)
    if dtype_name == "string":
        array = np.empty(len(out), dtype=object)
        array[:] = out
        return array.reshape(shape)
    if dtype_name in _WRAPPING_INTS:  # int_val holds int32s; the tensor keeps their low bits
        return np.array(out, dtype=np.int64).astype(_numpy_dtype(dtype_name)).reshape(shape)
    with np.errstate(over="ignore"):  # GetFloat: too large a double becomes inf
        return np.array(out, dtype=_numpy_dtype(dtype_name)).reshape(shape)


def _fast_numeric(value: Any, dtype_name: str, shape: list[int]) -> np.ndarray | None:
    try:
        probe = np.array(value)
    except (ValueError, TypeError, OverflowError, RecursionError):
        return None
    if probe.dtype.kind not in "iuf" or list(probe.shape) != shape:
        return None
    if dtype_name in ("float", "double"):
        with np.errstate(over="ignore"):  # GetFloat: too large a double becomes inf
            return probe.astype(_numpy_dtype(dtype_name))
    limits = _INT_RANGES.get(dtype_name)
    if limits is None or probe.dtype.kind == "f":
        return None
    if probe.size and (probe.min() < limits[0] or probe.max() > limits[1]):
        return None
    if dtype_name in _WRAPPING_INTS:
        return probe.astype(np.int64).astype(_numpy_dtype(dtype_name))
    return probe.astype(_numpy_dtype(dtype_name))


def _dtype(info: Any) -> str:
    return tf_dtype_name(info.dtype)


def arrays_from_instances(instances: list[Any], infos: dict[str, Any], bools: bool = True) -> dict[str, np.ndarray]:
    """FillTensorMapFromInstancesList: every element adds one row to each named input."""
    first = instances[0]
    if not isinstance(first, dict) and len(infos) > 1:
        raise InvalidArgument(
            "instances is a plain list, but expecting list of objects as multiple input tensors "
            "required as per tensorinfo_map"
        )

    def is_object(value: Any) -> bool:
        return isinstance(value, dict) and not is_b64(value)

    objects = is_object(first)
    names = sorted(infos)
    if not objects:
        (alias, info), = infos.items()
        for index, element in enumerate(instances):
            if is_object(element):
                raise InvalidArgument(f"Expecting value/list but got object at item {index} of input list")
        # The rows stacked: one array whose first dimension is the number of instances.
        try:
            return {alias: json_to_array(instances, _dtype(info), bools)}
        except InvalidArgument as e:
            raise InvalidArgument(f"Failed to process 'instances' list. Error: {e.grpc_code}: {e.message}") from None
    columns: dict[str, list[Any]] = {alias: [] for alias in infos}
    for index, element in enumerate(instances):
        if not is_object(element):
            raise InvalidArgument(f"Expecting object but got list at item {index} of input list")
        for key in element:
            if key not in infos:
                raise InvalidArgument(
                    f"Failed to process element: {index} key: {key} of 'instances' list. Error: "
                    f"INVALID_ARGUMENT: JSON object: does not have named input: {key}"
                )
        if set(element) != set(infos):
            raise InvalidArgument(
                f"Failed to process element: {index} of 'instances' list. JSON object: "
                f"{value_text(element)} keys must be equal to: {','.join(names)}"
            )
        for alias, value in element.items():
            columns[alias].append(value)
    arrays = {}
    for alias, values in columns.items():
        try:
            arrays[alias] = json_to_array(values, _dtype(infos[alias]), bools)
        except InvalidArgument as e:
            raise InvalidArgument(
                f"Failed to process 'instances' list key: {alias}. Error: {e.grpc_code}: {e.message}"
            ) from None
    return arrays


def arrays_from_inputs(inputs: Any, infos: dict[str, Any], bools: bool = True) -> dict[str, np.ndarray]:
    """FillTensorMapFromInputsMap: one value per named input (or a bare value for one input)."""
    if not isinstance(inputs, dict) or is_b64(inputs):
        if len(infos) > 1:
            raise InvalidArgument(
                "inputs is a plain value/list, but expecting an object as multiple input tensors "
                "required as per tensorinfo_map"
            )
        (alias, info), = infos.items()
        return {alias: json_to_array(inputs, _dtype(info), bools)}
    arrays = {}
    for alias in sorted(infos):
        if alias not in inputs:
            raise InvalidArgument(f"Missing named input: {alias} in 'inputs' object.")
        arrays[alias] = json_to_array(inputs[alias], _dtype(infos[alias]), bools)
    return arrays


