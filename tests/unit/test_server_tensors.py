"""Unit: request tensors are read without copies; response tensors are written as TF Serving's
AsProtoField and read back exactly."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tensorflow.core.framework import tensor_pb2

from lifecycle.errors import InvalidArgument
from lifecycle.server.models.tensors import DATA_TYPES, fill_tensor_proto, tensor_proto_bytes, to_ndarray

DTYPES = [np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
          np.uint32, np.uint64, np.bool_, np.float16]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(DTYPES).flatmap(lambda d: hnp.arrays(d, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))))
def test_round_trip_through_make_ndarray(array: np.ndarray) -> None:
    proto = tensor_pb2.TensorProto()
    fill_tensor_proto(proto, array)
    back = tf.make_ndarray(proto)
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    assert not proto.tensor_content  # typed fields, as TF Serving's AsProtoField


@pytest.mark.parametrize(("array", "field"), [
    (np.array([1.5], np.float32), "float_val"),
    (np.array([-1, 300], np.int32), "int_val"),
    (np.array([-(2**63), 2**63 - 1], np.int64), "int64_val"),
    (np.array([True], np.bool_), "bool_val"),
    (np.array([2**64 - 1], np.uint64), "uint64_val"),
])
def test_typed_fields(array: np.ndarray, field: str) -> None:
    proto = tensor_pb2.TensorProto()
    fill_tensor_proto(proto, array)
    assert list(getattr(proto, field)) == array.tolist()


def test_strings() -> None:
    proto = tensor_pb2.TensorProto()
    fill_tensor_proto(proto, np.array([[b"a", b"bc"]], dtype=object))
    assert list(proto.string_val) == [b"a", b"bc"]
    assert [d.size for d in proto.tensor_shape.dim] == [1, 2]


def test_data_type_table_matches_tensorflow() -> None:
    for dtype, enum in DATA_TYPES.items():
        assert tf.as_dtype(dtype).as_datatype_enum == enum


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(DTYPES).flatmap(lambda d: hnp.arrays(d, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))))
def test_request_tensor_content_is_read_without_a_copy(array: np.ndarray) -> None:
    proto = tf.make_tensor_proto(array)
    back = to_ndarray(proto, "x")
    expected = tf.make_ndarray(proto)
    assert back.dtype == expected.dtype and back.shape == expected.shape
    np.testing.assert_array_equal(back, expected)
    if proto.tensor_content:
        assert not back.flags.owndata  # a view of the request's bytes


def test_tensor_content_that_does_not_fit_its_shape_is_invalid_argument() -> None:
    proto = tf.make_tensor_proto(np.zeros((2, 3), np.float32))
    proto.tensor_shape.dim[0].size = 3
    with pytest.raises(InvalidArgument, match="tensor parsing error: images"):
        to_ndarray(proto, "images")


def test_encoded_bytes_parse_to_the_same_tensor_as_the_message() -> None:
    array = np.arange(-3, 300, dtype=np.int64).reshape(3, 101)
    proto = tensor_pb2.TensorProto.FromString(tensor_proto_bytes(array))
    assert list(proto.int64_val) == array.ravel().tolist()
    assert [d.size for d in proto.tensor_shape.dim] == [3, 101]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(DTYPES).flatmap(lambda d: hnp.arrays(d, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))))
def test_as_content_round_trips_through_tensor_content(array: np.ndarray) -> None:
    proto = tensor_pb2.TensorProto.FromString(tensor_proto_bytes(array, as_content=True))
    back = tf.make_ndarray(proto)
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    assert proto.tensor_content == array.tobytes()


@pytest.mark.parametrize("proto", [
    tensor_pb2.TensorProto(dtype=1, float_val=[1.5, 2.5], tensor_shape={"dim": [{"size": 2}, {"size": 1}]}),
    tensor_pb2.TensorProto(dtype=9, int64_val=[7], tensor_shape={"dim": [{"size": 3}]}),  # broadcast
    tensor_pb2.TensorProto(dtype=4, int_val=[1, 255], tensor_shape={"dim": [{"size": 2}]}),
    tensor_pb2.TensorProto(dtype=10, bool_val=[True], tensor_shape={}),
    tensor_pb2.TensorProto(dtype=22, uint32_val=[4000000000], tensor_shape={"dim": [{"size": 1}]}),
])
def test_request_typed_fields_read_as_tensorflow_reads_them(proto: object) -> None:
    back, expected = to_ndarray(proto), tf.make_ndarray(proto)
    assert back.dtype == expected.dtype and back.shape == expected.shape
    np.testing.assert_array_equal(back, expected)
