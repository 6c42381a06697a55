"""``--platform_config_file``: a text ``PlatformConfigMap`` instead of the TensorFlow flags.

As tensorflow_model_server (server.cc): with a platform config file, the ``tensorflow``
platform's ``SavedModelBundleSourceAdapterConfig.legacy_config`` (a ``SessionBundleConfig``)
replaces what the flags would build: ``session_config`` (a TensorFlow ConfigProto, as is),
``batching_parameters`` (batching on, with these parameters; --enable_batching is ignored),
``saved_model_tags``, ``enable_model_warmup`` and ``model_warmup_options.num_request_iterations``,
``prefer_tflite_model``, ``enable_per_model_batching_params`` and ``mixed_precision``.

tensorflow-serving-api does not ship ``SessionBundleConfig``, and its ``session_config`` field
is TensorFlow's ConfigProto, whose .proto source TensorFlow's wheel does not ship either, so
protoc cannot generate it here. The three messages are therefore described at run time
(``descriptor_pb2``) in the default pool, with TF Serving's names and field numbers, on top of the
already-loaded ``tensorflow.ConfigProto``; then ``[type.googleapis.com/tensorflow.serving.
SavedModelBundleSourceAdapterConfig] {...}`` in the file's ``Any`` parses as in TF Serving.
Fields not listed here are refused by the parser with its line and column.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lifecycle.errors import InvalidArgument
from lifecycle.server.config.textproto import read_textproto
from lifecycle.server.models.batching import BatchingOptions, options_from_proto

ADAPTER = "tensorflow.serving.SavedModelBundleSourceAdapterConfig"
_FILE = "mlc/tensorflow_serving/session_bundle_config.proto"


@dataclass(frozen=True)
class TensorFlowPlatform:
    """What the ``tensorflow`` platform's legacy_config sets."""

    session_config: bytes | None
    batching: BatchingOptions | None
    saved_model_tags: str
    enable_model_warmup: bool
    num_request_iterations_for_warmup: int
    prefer_tflite_model: bool
    per_model_batching: bool


def _adapter_class() -> Any:
    """The SavedModelBundleSourceAdapterConfig message class, described once in the default pool."""
    from google.protobuf import (
        descriptor_pb2,
        descriptor_pool,
        message_factory,
        wrappers_pb2,
    )
    from tensorflow.core.protobuf import config_pb2

    from lifecycle.server.protos import batching_pb2

    pool = descriptor_pool.Default()
    try:
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(ADAPTER))
    except KeyError:
        pass
    field = descriptor_pb2.FieldDescriptorProto
    f = descriptor_pb2.FileDescriptorProto(name=_FILE, package="tensorflow.serving", syntax="proto3")
    f.dependency.extend([config_pb2.DESCRIPTOR.name, batching_pb2.DESCRIPTOR.name, wrappers_pb2.DESCRIPTOR.name])

    def message(name: str, fields: list[tuple[str, int, int, str, bool]]) -> None:
        proto = f.message_type.add(name=name)
        for field_name, number, kind, type_name, repeated in fields:
            added = proto.field.add(name=field_name, number=number, type=kind,
                                    label=field.LABEL_REPEATED if repeated else field.LABEL_OPTIONAL)
            if type_name:
                added.type_name = type_name

    message("ModelWarmupOptions", [
        ("num_request_iterations", 1, field.TYPE_MESSAGE, ".google.protobuf.Int32Value", False),
        ("num_model_warmup_threads", 2, field.TYPE_MESSAGE, ".google.protobuf.Int32Value", False),
    ])
    message("SessionBundleConfig", [
        ("session_target", 1, field.TYPE_STRING, "", False),
        ("session_config", 2, field.TYPE_MESSAGE, ".tensorflow.ConfigProto", False),
        ("batching_parameters", 3, field.TYPE_MESSAGE, "." + batching_pb2.BatchingParameters.DESCRIPTOR.full_name, False),
        ("saved_model_tags", 6, field.TYPE_STRING, "", True),
        ("enable_model_warmup", 779, field.TYPE_BOOL, "", False),
        ("model_warmup_options", 780, field.TYPE_MESSAGE, ".tensorflow.serving.ModelWarmupOptions", False),
        ("prefer_tflite_model", 783, field.TYPE_BOOL, "", False),
        ("enable_per_model_batching_params", 789, field.TYPE_BOOL, "", False),
        ("mixed_precision", 791, field.TYPE_STRING, "", False),
    ])
    message("SavedModelBundleSourceAdapterConfig", [
        ("legacy_config", 1000, field.TYPE_MESSAGE, ".tensorflow.serving.SessionBundleConfig", False),
    ])
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(ADAPTER))


def read_platform_config(path: str | Path) -> TensorFlowPlatform:
    """The tensorflow platform's settings from a text PlatformConfigMap file."""
    from tensorflow_serving.config import platform_config_pb2

    adapter_class = _adapter_class()
    platforms = read_textproto(path, platform_config_pb2.PlatformConfigMap()).platform_configs
    unknown = sorted(set(platforms) - {"tensorflow"})
    if unknown:
        raise InvalidArgument(f"Platform config file '{path}': platform {unknown[0]} is not supported "
                              "by mlc-model-server (only tensorflow)")
    adapter = adapter_class()
    if "tensorflow" in platforms:
        packed = platforms["tensorflow"].source_adapter_config
        if packed.type_url and not packed.Unpack(adapter):
            raise InvalidArgument(f"Platform config file '{path}': the tensorflow platform's "
                                  f"source_adapter_config must be a {ADAPTER}, not {packed.type_url}")
    legacy = adapter.legacy_config
    session = None
    if legacy.HasField("session_config") or legacy.mixed_precision:
        config = legacy.session_config
        if legacy.mixed_precision == "bfloat16":
            from tensorflow.core.protobuf import rewriter_config_pb2

            config.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 = (
                rewriter_config_pb2.RewriterConfig.ON)
        elif legacy.mixed_precision:
            raise InvalidArgument(f"Unsupported mixed_precision mode: {legacy.mixed_precision} (use bfloat16)")
        session = config.SerializeToString()
    warmup = legacy.model_warmup_options
    return TensorFlowPlatform(
        session_config=session,
        batching=options_from_proto(legacy.batching_parameters) if legacy.HasField("batching_parameters") else None,
        saved_model_tags=",".join(legacy.saved_model_tags) or "serve",
        enable_model_warmup=legacy.enable_model_warmup,
        num_request_iterations_for_warmup=(warmup.num_request_iterations.value
                                           if warmup.HasField("num_request_iterations") else 1),
        prefer_tflite_model=legacy.prefer_tflite_model,
        per_model_batching=legacy.enable_per_model_batching_params,
    )
