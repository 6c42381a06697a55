"""REST JSON -> tensors exactly as strict as TF Serving's json_tensor.cc (AddValueToTensor).

float/double take any JSON number (integers too, since TF Serving dropped its lossless check in
2021) but never a bool; int8/int16/int32/uint8 take integers in int32's range and keep their low
bits; int64, uint32 and uint64 their own ranges; bool only true/false.
"""

from __future__ import annotations

import numpy as np
import pytest

from lifecycle.errors import InvalidArgument, Unimplemented
from lifecycle.server.rest.json_tensor import json_to_array


@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize(("value", "dtype", "message"), [
    ([1.0, True, 2.0], "float", "JSON Value: true Type: True is not of expected type: float"),
    ([[1, 2], [False, 3]], "int32", "JSON Value: false Type: False is not of expected type: int32"),
    ([1, 0], "bool", "JSON Value: 1 Type: Number is not of expected type: bool"),
    ([1.0], "int32", "JSON Value: 1.0 Type: Number is not of expected type: int32"),
    ([1.5], "int64", "JSON Value: 1.5 Type: Number is not of expected type: int64"),
    ([2**31], "int8", "JSON Value: 2147483648 Type: Number is not of expected type: int8"),
    ([2**63], "int64", "JSON Value: 9223372036854775808 Type: Number is not of expected type: int64"),
    ([-1], "uint32", "JSON Value: -1 Type: Number is not of expected type: uint32"),
    ([2**32], "uint32", "JSON Value: 4294967296 Type: Number is not of expected type: uint32"),
    (["1"], "float", 'JSON Value: "1" Type: String is not of expected type: float'),
    ([None], "double", "JSON Value: null Type: Null is not of expected type: double"),
])
def test_type_errors_name_the_value_and_type(value: object, dtype: str, message: str, fast: bool) -> None:
    # fast=True is a body with no true/false token: the numpy fast path, which must agree.
    if fast and "true" in repr(value).lower() or fast and "false" in repr(value).lower():
        pytest.skip("a body holding a bool never takes the fast path")
    with pytest.raises(InvalidArgument) as info:
        json_to_array(value, dtype, may_hold_bools=not fast)
    assert info.value.message == message


@pytest.mark.parametrize("fast", [False, True])
def test_accepted_coercions(fast: bool) -> None:
    def convert(value: object, dtype: str) -> np.ndarray:
        return json_to_array(value, dtype, may_hold_bools=not fast)

    # Integers into float: accepted whatever their size (no "loss of precision" error).
    assert convert([16777217, 2], "float").tolist() == [16777216.0, 2.0]
    assert convert([2**60], "double").tolist() == [float(2**60)]
    assert np.isinf(convert([1e39], "float")).all()  # GetFloat of a too-large double
    # Narrow ints: any int32, the tensor keeps the low bits (int_val -> uint8).
    assert convert([300, -1], "uint8").tolist() == [44, 255]
    assert convert([2**31 - 1], "int16").tolist() == [-1]
    assert convert([2**64 - 1], "uint64").tolist() == [2**64 - 1]
    assert convert([[True, False]], "bool").tolist() == [[True, False]]


def test_unsupported_dtype_is_unimplemented() -> None:
    with pytest.raises(Unimplemented) as info:
        json_to_array(["a"], "complex64")
    assert info.value.message == 'Conversion of JSON Value: "a" to type: complex64'


def test_deeper_nesting_than_numpy_holds_is_invalid_argument() -> None:
    # a REST body nested 65 deep once answered 500 (numpy's ValueError); found by the REST fuzz test
    from lifecycle.server.rest.json_tensor import MAX_RANK

    value: object = 1.0
    for _ in range(MAX_RANK):
        value = [value]
    assert json_to_array(value, "float").ndim == MAX_RANK
    with pytest.raises(InvalidArgument, match="more than 64 dimensions"):
        json_to_array([value], "float")
