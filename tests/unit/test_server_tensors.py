"""Unit: response tensors are written as TF Serving's AsProtoField and read back exactly."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tensorflow.core.framework import tensor_pb2

from lifecycle.server.tensors import fill_tensor_proto

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
