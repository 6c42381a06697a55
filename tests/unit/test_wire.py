"""Unit: mlc's wire messages equal TF Serving's field for field, and their tensors decode
(numpy only) exactly as ``tf.make_ndarray`` decodes the official ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import descriptor_pool
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import (  # noqa: F401 - registers the official descriptors
    get_model_status_pb2,
    model_management_pb2,
    predict_pb2,
    prediction_log_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

from lifecycle.errors import InvalidArgument, ValidationFailed
from lifecycle.register import validate
from lifecycle.server.models.tensors import fill_tensor_proto, to_ndarray
from lifecycle.serving import warmup
from lifecycle.serving.wire import METHODS, messages, tfs_wire_pb2
from lifecycle.serving.wire.tfrecord import CorruptRecord, read_records

OFFICIAL_PACKAGES = ("tensorflow.serving.", "tensorflow.", "tensorflow.error.")


def _local(full_name: str) -> str:
    """A type's name without its package: ``ModelVersionStatus.State``."""
    for package in ("mlc.wire.", *OFFICIAL_PACKAGES, "google.protobuf."):
        if full_name.startswith(package) and full_name[len(package):][:1].isupper():
            return full_name[len(package):]
    return full_name


def _official(kind: str, local: str) -> object:
    pool = descriptor_pool.Default()
    find = pool.FindMessageTypeByName if kind == "message" else pool.FindEnumTypeByName
    for package in OFFICIAL_PACKAGES:
        try:
            return find(package + local)
        except KeyError:
            continue
    raise AssertionError(f"TF Serving has no {kind} {local}")


def _all_messages(descriptors: object) -> list[object]:
    out = []
    for d in descriptors:
        out.append(d)
        out.extend(_all_messages(d.nested_types))
    return out


WIRE = tfs_wire_pb2.DESCRIPTOR
MESSAGES = _all_messages(WIRE.message_types_by_name.values())
ENUMS = list(WIRE.enum_types_by_name.values()) + [e for m in MESSAGES for e in m.enum_types]


def test_the_wire_file_is_not_in_tensorflows_packages() -> None:
    assert WIRE.package == "mlc.wire"
    assert all(not m.full_name.startswith("tensorflow") for m in MESSAGES)


@pytest.mark.parametrize("ours", MESSAGES, ids=lambda d: d.full_name)
def test_every_field_equals_tf_servings(ours: object) -> None:
    theirs = _official("message", _local(ours.full_name))
    for field in ours.fields:
        assert field.name in theirs.fields_by_name, f"{theirs.full_name} has no field {field.name}"
        other = theirs.fields_by_name[field.name]
        where = f"{ours.full_name}.{field.name}"
        assert (field.number, field.type, field.is_repeated) == (other.number, other.type, other.is_repeated), where
        assert field.is_packed == other.is_packed, where
        assert (field.containing_oneof is None) == (other.containing_oneof is None), where
        if field.containing_oneof is not None:
            assert field.containing_oneof.name == other.containing_oneof.name, where
        for kind in ("message_type", "enum_type"):
            mine, official = getattr(field, kind), getattr(other, kind)
            assert (mine is None) == (official is None), where
            if mine is not None:
                assert _local(mine.full_name) == _local(official.full_name), where
    assert ours.GetOptions().map_entry == theirs.GetOptions().map_entry


@pytest.mark.parametrize("ours", ENUMS, ids=lambda d: d.full_name)
def test_every_enum_value_equals_tf_servings(ours: object) -> None:
    theirs = _official("enum", _local(ours.full_name))
    for value in ours.values:
        assert theirs.values_by_name[value.name].number == value.number, f"{ours.full_name}.{value.name}"


def test_method_paths_are_tf_servings() -> None:
    pool = descriptor_pool.Default()
    from tensorflow_serving.apis import model_service_pb2, prediction_service_pb2  # noqa: F401

    for name, (path, response) in METHODS.items():
        service, method = path.strip("/").split("/")
        official = pool.FindServiceByName(service).methods_by_name[method]
        assert method == name
        if response is not None:
            assert _local(response.DESCRIPTOR.full_name) == _local(official.output_type.full_name)


def test_official_bytes_parse_as_wire_messages_and_back() -> None:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    request.model_spec.version_label = "stable"
    request.model_spec.signature_name = "predict_images"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.arange(6, dtype=np.float32).reshape(2, 3)))
    request.inputs["s"].CopyFrom(tf.make_tensor_proto([b"a", b"bc"]))
    ours = messages.PredictRequest.FromString(request.SerializeToString())
    assert ours.model_spec.WhichOneof("version_choice") == "version_label"
    assert ours.inputs["x"].tensor_content == request.inputs["x"].tensor_content
    assert predict_pb2.PredictRequest.FromString(ours.SerializeToString()) == request

    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add(name="m", base_path="/b", model_platform="tensorflow")
    model.model_version_policy.specific.versions.extend([1, 2])
    model.version_labels["stable"] = 1
    model.logging_config.sampling_config.sampling_rate = 0.5  # not in the subset: kept as unknown
    reload = messages.ReloadConfigRequest()
    reload.config.MergeFromString(config.SerializeToString())
    back = model_management_pb2.ReloadConfigRequest.FromString(reload.SerializeToString())
    assert back.config == config


DTYPES = [np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
          np.uint32, np.uint64, np.bool_, np.float16, np.complex64, np.complex128]


def _same(back: np.ndarray, expected: np.ndarray) -> None:
    assert back.dtype == expected.dtype and back.shape == expected.shape
    np.testing.assert_array_equal(back, expected)


@settings(max_examples=120, deadline=None)
@given(st.sampled_from(DTYPES).flatmap(lambda d: hnp.arrays(d, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))),
       st.booleans())
def test_wire_tensors_decode_as_make_ndarray(array: np.ndarray, as_content: bool) -> None:
    """tensor_content and every typed field (AsProtoField, complex pairs, half bits)."""
    official = tf.make_tensor_proto(array) if as_content else tensor_pb2.TensorProto()
    if not as_content:
        fill_tensor_proto(official, array)
    ours = messages.TensorProto.FromString(official.SerializeToString())
    _same(to_ndarray(ours), tf.make_ndarray(official))


@pytest.mark.parametrize("official", [
    tensor_pb2.TensorProto(dtype=7, string_val=[b"a", b"bc"], tensor_shape={"dim": [{"size": 2}]}),
    tensor_pb2.TensorProto(dtype=7, string_val=[b"z"], tensor_shape={"dim": [{"size": 3}, {"size": 1}]}),
    tensor_pb2.TensorProto(dtype=1, float_val=[1.5, 2.5], tensor_shape={"dim": [{"size": 4}]}),
    tensor_pb2.TensorProto(dtype=3, tensor_shape={"dim": [{"size": 2}, {"size": 2}]}),
    tensor_pb2.TensorProto(dtype=19, half_val=[15360], tensor_shape={"dim": [{"size": 3}]}),
    tensor_pb2.TensorProto(dtype=8, scomplex_val=[1, 2], tensor_shape={"dim": [{"size": 2}]}),
    tensor_pb2.TensorProto(dtype=4, int_val=[0, 255], tensor_shape={"dim": [{"size": 2}]}),
], ids=["strings", "broadcast-string", "broadcast-float", "zeros", "half", "complex", "uint8"])
def test_short_fields_and_strings_decode_as_make_ndarray(official: object) -> None:
    ours = messages.TensorProto.FromString(official.SerializeToString())
    _same(to_ndarray(ours), tf.make_ndarray(official))


def test_no_strings_are_empty_bytes() -> None:
    """Where tf.make_ndarray pads with the str "" (its quirk), the values are bytes, as every other string."""
    ours = messages.TensorProto(dtype=7, tensor_shape={"dim": [{"size": 2}]})
    assert to_ndarray(ours).tolist() == [b"", b""]


def test_too_many_values_is_invalid_argument() -> None:
    ours = messages.TensorProto(dtype=1, float_val=[1, 2, 3], tensor_shape={"dim": [{"size": 2}]})
    with pytest.raises(InvalidArgument, match="tensor parsing error: x"):
        to_ndarray(ours, "x")


# --- TFRecord framing without TensorFlow -------------------------------------------------------


def test_records_written_by_tensorflow_read_back(tmp_path: Path) -> None:
    path = tmp_path / "records"
    payloads = [b"", b"x", bytes(range(256)) * 40, b"last"]
    with tf.io.TFRecordWriter(str(path)) as writer:
        for p in payloads:
            writer.write(p)
    assert read_records(path) == payloads


@pytest.mark.parametrize("damage", ["cut-data", "cut-header", "flip-data", "flip-length"])
def test_a_damaged_file_is_refused(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "records"
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(b"a" * 100)
        writer.write(b"b" * 100)
    raw = bytearray(path.read_bytes())
    second = 8 + 4 + 100 + 4
    if damage == "cut-data":
        raw = raw[:second + 50]
    elif damage == "cut-header":
        raw = raw[:second + 5]
    elif damage == "flip-data":
        raw[second + 12 + 7] ^= 1
    else:
        raw[second] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptRecord, match=f"at offset {second}"):
        read_records(path)
    if damage != "cut-header":  # TensorFlow takes a partial header at the end for the end; mlc does not
        with pytest.raises(Exception, match="corrupt|truncat|DataLoss|length"):
            list(tf.data.TFRecordDataset(str(path)).as_numpy_iterator())


def test_warmup_requests_read_as_written_and_a_torn_file_refused(tmp_path: Path) -> None:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.ones((1, 2), np.float32)))
    validate.write_warmup(tmp_path, [request, request])
    read = warmup.read_warmup_requests(tmp_path)
    assert [r.SerializeToString(deterministic=True) for r in read] == [request.SerializeToString(deterministic=True)] * 2
    path = warmup.warmup_file(tmp_path)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(ValidationFailed, match=r"tf_serving_warmup_requests is unreadable: truncated record at offset \d+$"):
        warmup.read_warmup_requests(tmp_path)
