"""TensorProto <-> numpy conversion for the server, matching TF Serving's wire format.

Requests may carry ``tensor_content`` or the typed ``*_val`` fields (TF Serving accepts both);
``tensor_content`` of a numeric dtype is read with ``np.frombuffer``, without a copy.
Responses are written like TF Serving's default ``AsProtoField``: values in the typed repeated
fields (``float_val``, ``int64_val`` ...). For every numeric dtype the TensorProto is encoded
directly as wire bytes with numpy (raw bytes, or vectorised varints), so a large response is
never parsed into a message only to be serialized again (see :func:`tensor_proto_parts`).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from lifecycle.errors import InvalidArgument

# tensorflow.DataType values (tensorflow/core/framework/types.proto) of plain numpy dtypes.
DATA_TYPES: dict[np.dtype[Any], int] = {
    np.dtype(np.float32): 1, np.dtype(np.float64): 2, np.dtype(np.int32): 3, np.dtype(np.uint8): 4,
    np.dtype(np.int16): 5, np.dtype(np.int8): 6, np.dtype(np.complex64): 8, np.dtype(np.int64): 9,
    np.dtype(np.bool_): 10, np.dtype(np.uint16): 17, np.dtype(np.complex128): 18,
    np.dtype(np.float16): 19, np.dtype(np.uint32): 22, np.dtype(np.uint64): 23,
}
_NUMPY_TYPES: dict[int, np.dtype[Any]] = {enum: dtype for dtype, enum in DATA_TYPES.items()}
# The typed field a tensor of each DataType carries its values in, when not in tensor_content.
_VALUE_FIELDS = {1: "float_val", 2: "double_val", 3: "int_val", 4: "int_val", 5: "int_val", 6: "int_val",
                 9: "int64_val", 10: "bool_val", 17: "int_val", 19: "half_val", 22: "uint32_val", 23: "uint64_val",
                 8: "scomplex_val", 18: "dcomplex_val"}
DT_STRING = 7


def to_ndarray(proto: Any, alias: str = "") -> np.ndarray:
    """A TensorProto as a numpy array, as ``tf.make_ndarray`` reads it; malformed is INVALID_ARGUMENT.

    Numpy only, so that clients (the live check of ``mlc promote``) need no TensorFlow:
    ``tensor_content`` becomes a read-only view of the bytes (no copy); a typed field
    (``float_val`` ... ``half_val``, complex pairs) becomes an array, a short one broadcast with
    its last value as TensorFlow does (none at all: zeros); ``DT_STRING`` an object array of
    bytes. Only TensorFlow-only dtypes (bfloat16, quantized, resource, variant) and string
    ``tensor_content`` go through ``tf.make_ndarray``. Works on TF Serving's TensorProto and on
    mlc's wire copy (:mod:`lifecycle.serving.wire`) alike.
    """
    dtype = _NUMPY_TYPES.get(proto.dtype)
    shape = [d.size for d in proto.tensor_shape.dim]
    if dtype is not None or (proto.dtype == DT_STRING and not proto.tensor_content):
        try:
            if any(size < 0 for size in shape):
                raise ValueError(f"negative dimension in {shape}")
            if proto.tensor_content:
                return np.frombuffer(proto.tensor_content, dtype=dtype).reshape(shape)
            return _typed_values(proto, dtype, shape)
        except (ValueError, OverflowError) as e:  # size does not match the shape, or a value its dtype
            raise InvalidArgument(f"tensor parsing error: {alias}") from e
    import tensorflow as tf

    try:
        return tf.make_ndarray(proto)
    except Exception as e:
        raise InvalidArgument(f"tensor parsing error: {alias}") from e


def _typed_values(proto: Any, dtype: np.dtype | None, shape: list[int]) -> np.ndarray:
    """The values of a TensorProto's typed field, broadcast to ``shape`` as TensorFlow does."""
    count = math.prod(shape)  # Python ints: no numpy call for a handful of dims
    if dtype is None:  # DT_STRING
        strings = list(proto.string_val)
        if len(strings) > count:
            raise ValueError(f"{len(strings)} values for {count} elements")
        strings += [strings[-1] if strings else b""] * (count - len(strings))
        return np.array(strings, dtype=object).reshape(shape)
    field = getattr(proto, _VALUE_FIELDS[proto.dtype])
    if dtype.kind == "c":  # (real, imaginary) pairs
        values = np.array(field, dtype=np.float32 if dtype == np.complex64 else np.float64).view(dtype)
    elif dtype == np.float16:  # half_val holds each value's 16 bits
        values = np.array(field, dtype=np.int32).astype(np.uint16).view(np.float16)
    else:
        values = np.array(field, dtype=dtype)
    if values.size > count:
        raise ValueError(f"{values.size} values for {count} elements")
    if values.size == 0:
        return np.zeros(shape, dtype)
    if values.size < count:
        values = np.pad(values, (0, count - values.size), "edge")
    return values.reshape(shape)


_ONE_BYTE = [bytes([v]) for v in range(0x80)]  # varints below 128: tags, short lengths, small dims


def _varint(value: int) -> bytes:
    if value < 0x80:
        return _ONE_BYTE[value]
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _varints(values: np.ndarray) -> bytes:
    """Protobuf varint encoding of uint64 values, vectorised (negative ints as 10 bytes)."""
    u = values.astype(np.uint64, copy=False).ravel()
    width = max(1, (int(u.max()).bit_length() + 6) // 7) if u.size else 1
    if width == 1:  # every value < 128: one byte each (e.g. class maps)
        return u.astype(np.uint8).tobytes()
    shifted = [u >> np.uint64(7 * i) for i in range(width)]
    groups = np.stack([(s & np.uint64(0x7F)).astype(np.uint8) for s in shifted], axis=1)
    # (u >> 7i) != 0 holds for a prefix of i, so its count is the encoded length - 1.
    length = 1 + np.sum(np.stack([s != 0 for s in shifted[1:]], axis=1), axis=1)
    positions = np.arange(width)
    groups[positions[None, :] < (length - 1)[:, None]] |= 0x80
    return groups[positions[None, :] < length[:, None]].tobytes()


# TensorProto field numbers of the typed value fields that AsProtoField writes.
_FIXED_FIELDS = {np.dtype(np.float32): 5, np.dtype(np.float64): 6}
_VARINT_FIELDS = {
    np.dtype(np.int8): 7, np.dtype(np.int16): 7, np.dtype(np.int32): 7, np.dtype(np.uint8): 7,
    np.dtype(np.uint16): 7, np.dtype(np.int64): 10, np.dtype(np.bool_): 11, np.dtype(np.float16): 13,
    np.dtype(np.uint32): 16, np.dtype(np.uint64): 17,
}


def _packed_values(array: np.ndarray) -> tuple[int, bytes] | None:
    field = _FIXED_FIELDS.get(array.dtype)
    if field is not None:
        return field, np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    field = _VARINT_FIELDS.get(array.dtype)
    if field is None:
        return None
    if array.dtype.kind in "biu" and array.min() >= 0 and array.max() < 128:
        return field, array.astype(np.uint8).tobytes()  # one byte per value (e.g. class maps)
    if array.dtype == np.float16:
        as_ints = array.view(np.uint16).astype(np.uint64)
    elif array.dtype.kind == "i":
        as_ints = array.astype(np.int64).view(np.uint64)  # sign-extended, as protobuf does
    else:
        as_ints = array.astype(np.uint64)
    return field, _varints(as_ints)


def length_delimited(field: int, parts: list[bytes]) -> list[bytes]:
    """A length-delimited protobuf field around already-encoded ``parts`` (not joined)."""
    return [_varint((field << 3) | 2), _varint(sum(map(len, parts))), *parts]


def tensor_proto_parts(array: np.ndarray, as_content: bool = False) -> list[bytes]:
    """The encoded TensorProto of ``array`` as TF Serving's AsProtoField writes it, in pieces.

    Joining the pieces gives the message's bytes; callers nest them in an enclosing message
    with :func:`length_delimited` and join once, so the values are copied once.
    ``as_content`` (--enable_serialization_as_tensor_content) writes numeric values as raw
    ``tensor_content`` instead, as AsProtoTensorContent; strings stay in ``string_val``.
    """
    array = np.asarray(array)
    enum = DATA_TYPES.get(array.dtype)
    packed: tuple[int, bytes] | None
    if as_content and enum is not None:
        content = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
        packed = (4, content)  # TensorProto.tensor_content
    else:
        packed = _packed_values(array) if array.size else None
        if packed is None and enum is not None and array.dtype.kind != "c" and not array.size:
            packed = (0, b"")
    if packed is None or enum is None:  # strings, complex, TensorFlow-only dtypes: TensorFlow's converter
        return [_converted_proto(array, as_content).SerializeToString()]
    field, payload = packed
    parts = [_DTYPE_FIELDS[enum]]
    if array.shape:
        parts.append(_shape_field(array.shape))
    if payload:
        parts += length_delimited(field, [payload])
    return parts


_DTYPE_FIELDS = {enum: b"\x08" + _varint(enum) for enum in DATA_TYPES.values()}  # TensorProto.dtype (1)


@functools.lru_cache(maxsize=256)
def _shape_field(shape: tuple[int, ...]) -> bytes:
    """TensorProto.tensor_shape (field 2) of ``shape``, encoded: the same for every answer of a plan."""
    dims = [b"".join(length_delimited(2, [b"\x08" + _varint(size)] if size else [])) for size in shape]
    return b"".join(length_delimited(2, dims))


def tensor_proto_bytes(array: np.ndarray, as_content: bool = False) -> bytes:
    """The encoded TensorProto of ``array`` (see :func:`tensor_proto_parts`)."""
    return b"".join(tensor_proto_parts(array, as_content))


def fill_tensor_proto(proto: Any, array: np.ndarray, as_content: bool = False) -> None:
    """Write ``array`` into ``proto`` (an empty TensorProto) as TF Serving's AsProtoField does
    (or AsProtoTensorContent with ``as_content``)."""
    proto.ParseFromString(tensor_proto_bytes(array, as_content))


def _converted_proto(array: np.ndarray, as_content: bool) -> Any:
    from tensorflow.python.framework import tensor_util

    made = tensor_util.make_tensor_proto(array)
    if made.tensor_content and array.dtype.kind == "c" and not as_content:
        flat = array.ravel()
        target = made.scomplex_val if array.dtype == np.complex64 else made.dcomplex_val
        target.extend(np.stack([flat.real, flat.imag], -1).ravel().tolist())
        made.tensor_content = b""
    return made


def proto_shape(proto: Any) -> list[int]:
    """The dims of a TensorProto's shape."""
    return [d.size for d in proto.tensor_shape.dim]
