"""TensorProto <-> numpy conversion for the server, matching TF Serving's wire format.

Requests may carry ``tensor_content`` or the typed ``*_val`` fields (TF Serving accepts both).
Responses are written like TF Serving's default ``AsProtoField``: values in the typed repeated
fields (``float_val``, ``int64_val`` ...). For every numeric dtype the packed field is encoded
with numpy (raw bytes, or vectorised varints) and parsed, instead of appending one Python object
per element.
"""

from __future__ import annotations

import numpy as np

from lifecycle.errors import InvalidArgument


def to_ndarray(proto: object, alias: str = "") -> np.ndarray:
    """A request TensorProto as a numpy array; malformed tensors are INVALID_ARGUMENT."""
    import tensorflow as tf

    try:
        return tf.make_ndarray(proto)
    except Exception as e:
        raise InvalidArgument(f"tensor parsing error: {alias}") from e


def _varint(value: int) -> bytes:
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
    if array.dtype == np.float16:
        as_ints = array.view(np.uint16).astype(np.uint64)
    elif array.dtype.kind == "i":
        as_ints = array.astype(np.int64).view(np.uint64)  # sign-extended, as protobuf does
    else:
        as_ints = array.astype(np.uint64)
    return field, _varints(as_ints)


def fill_tensor_proto(proto: object, array: np.ndarray, as_content: bool = False) -> None:
    """Write ``array`` into ``proto`` (an empty TensorProto) as TF Serving's AsProtoField does.

    Numeric values go into the typed repeated fields (``float_val``, ``int64_val`` ...). They
    are encoded as one packed field and parsed, instead of appended one Python object at a time.
    ``as_content`` (--enable_serialization_as_tensor_content) writes numeric values as raw
    ``tensor_content`` instead, as AsProtoTensorContent; strings stay in ``string_val``.
    """
    from tensorflow.python.framework import dtypes, tensor_util

    array = np.asarray(array)
    if as_content and array.dtype.kind not in ("O", "S", "U"):
        proto.CopyFrom(tensor_util.make_tensor_proto(array))
        return
    packed = _packed_values(array) if array.size else None
    if packed is None and array.dtype.kind not in ("O", "S", "U", "c") and not array.size:
        packed = (0, b"")
    if packed is not None:
        field, payload = packed
        header = type(proto)()
        header.dtype = dtypes.as_dtype(array.dtype).as_datatype_enum
        for dim in array.shape:
            header.tensor_shape.dim.add().size = dim
        body = _varint((field << 3) | 2) + _varint(len(payload)) + payload if payload else b""
        proto.ParseFromString(header.SerializeToString() + body)
        return
    made = tensor_util.make_tensor_proto(array)
    if made.tensor_content and array.dtype.kind == "c":
        flat = array.ravel()
        proto.dtype = made.dtype
        proto.tensor_shape.CopyFrom(made.tensor_shape)
        target = proto.scomplex_val if array.dtype == np.complex64 else proto.dcomplex_val
        target.extend(np.stack([flat.real, flat.imag], -1).ravel().tolist())
    else:
        proto.CopyFrom(made)


def proto_shape(proto: object) -> list[int]:
    """The dims of a TensorProto's shape."""
    return [d.size for d in proto.tensor_shape.dim]
