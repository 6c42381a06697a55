"""TensorProto <-> numpy conversion for the server, matching TF Serving's wire format.

Requests may carry ``tensor_content`` or the typed ``*_val`` fields (TF Serving accepts both).
Responses are written like TF Serving's default ``AsProtoField``: values in the typed repeated
fields (``float_val`` ...). For float and double the packed field is built from the raw bytes
and parsed, which costs a memcpy instead of a Python loop per element.
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


# TensorProto field numbers of the packed fixed-width value fields.
_PACKED_FIELDS = {np.dtype(np.float32): 5, np.dtype(np.float64): 6}


def fill_tensor_proto(proto: object, array: np.ndarray) -> None:
    """Write ``array`` into ``proto`` (an empty TensorProto) as TF Serving's AsProtoField does."""
    from tensorflow.python.framework import dtypes, tensor_util

    array = np.asarray(array)
    field = _PACKED_FIELDS.get(array.dtype)
    if field is not None:
        header = type(proto)()
        header.dtype = dtypes.as_dtype(array.dtype).as_datatype_enum
        for dim in array.shape:
            header.tensor_shape.dim.add().size = dim
        payload = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
        packed = b"" if not payload else bytes([(field << 3) | 2]) + _varint(len(payload)) + payload
        proto.ParseFromString(header.SerializeToString() + packed)
        return
    made = tensor_util.make_tensor_proto(array)
    if made.tensor_content:
        # Re-express the content as typed values, as AsProtoField does.
        flat = array.ravel()
        proto.dtype = made.dtype
        proto.tensor_shape.CopyFrom(made.tensor_shape)
        _extend_typed(proto, flat)
    else:
        proto.CopyFrom(made)


def _extend_typed(proto: object, flat: np.ndarray) -> None:
    kind = flat.dtype
    if kind == np.bool_:
        proto.bool_val.extend(flat.tolist())
    elif kind in (np.int8, np.int16, np.int32, np.uint8, np.uint16):
        proto.int_val.extend(flat.astype(np.int64).tolist())
    elif kind == np.int64:
        proto.int64_val.extend(flat.tolist())
    elif kind == np.uint32:
        proto.uint32_val.extend(flat.tolist())
    elif kind == np.uint64:
        proto.uint64_val.extend(flat.tolist())
    elif kind == np.float16:
        proto.half_val.extend(flat.view(np.uint16).astype(np.int64).tolist())
    elif kind == np.complex64:
        proto.scomplex_val.extend(np.stack([flat.real, flat.imag], -1).ravel().tolist())
    elif kind == np.complex128:
        proto.dcomplex_val.extend(np.stack([flat.real, flat.imag], -1).ravel().tolist())
    else:
        from tensorflow.python.framework import tensor_util

        proto.CopyFrom(tensor_util.make_tensor_proto(flat.reshape(proto_shape(proto))))


def proto_shape(proto: object) -> list[int]:
    """The dims of a TensorProto's shape."""
    return [d.size for d in proto.tensor_shape.dim]
