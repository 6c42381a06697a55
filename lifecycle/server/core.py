"""The protocol-agnostic core: TF Serving's request semantics over the servable manager.

Transports (gRPC, REST) convert their wire format to the calls here and map the
``lifecycle.errors`` exceptions raised here to status codes, each in one place. Every
prediction (gRPC, REST, warmup) ends in :meth:`ServerCore._run` -> ``Servable.run``; batching
(issue 4) wraps ``Servable.run`` per servable, as TF Serving's BatchingSession wraps a session.

mlc's one extension: a request that names neither a version nor a label (the default route)
goes where the model's traffic split sends it (:mod:`lifecycle.server.traffic`), and a Predict
stable answers may be copied to the candidate for comparison, after the client has its answer.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lifecycle.errors import InvalidArgument, LifecycleError, ServableNotFound, ServingError
from lifecycle.failpoints import failpoint
from lifecycle.server.models.batching import PER_MODEL_BATCHING_FILE, BatchingOptions, BatchScheduler, read_batching_parameters
from lifecycle.server.models.loader import DEFAULT_SIGNATURE, Servable
from lifecycle.server.models.manager import ManagerOptions, ServableManager
from lifecycle.server.models.tensors import length_delimited, tensor_proto_parts, to_ndarray
from lifecycle.server.monitoring import Metrics
from lifecycle.server.traffic.shadow import Shadow, ShadowCopy
from lifecycle.server.traffic.split import Split, TrafficTable

log = logging.getLogger("mlc-model-server")

SIGNATURE_DEF_FIELD = "signature_def"


@dataclass(frozen=True)
class ModelRef:
    """Which servable a request names: a model and at most one of version or label."""

    name: str
    version: int | None = None
    label: str | None = None


@dataclass(frozen=True)
class Prediction:
    """Outputs of one predict call, with the version and signature that produced them."""

    name: str
    version: int
    signature_name: str
    outputs: dict[str, np.ndarray]


def model_ref(model_spec: Any) -> ModelRef:
    """The ModelRef of a ModelSpec proto."""
    choice = model_spec.WhichOneof("version_choice")
    if choice == "version":
        return ModelRef(model_spec.name, version=model_spec.version.value)
    if choice == "version_label":
        return ModelRef(model_spec.name, label=model_spec.version_label)
    return ModelRef(model_spec.name)


class ServerCore:
    """Predict, metadata, status and reload with TF Serving's semantics and messages."""

    def __init__(self, options: ManagerOptions, batching: BatchingOptions | None = None,
                 method_name_check: bool = False, warmup_iterations: int = 1,
                 per_model_batching: bool = False, tensor_content: bool = False) -> None:
        # --enable_per_model_batching_parameters: a version's batching_params.pbtxt wins.
        self.per_model_batching = per_model_batching
        # --enable_serialization_as_tensor_content: Predict outputs as raw tensor_content.
        self.tensor_content = tensor_content
        # --enable_signature_method_name_check: each API runs only signatures of its method.
        self.method_name_check = method_name_check
        # --num_request_iterations_for_warmup: each warmup record is replayed this many times.
        self.warmup_iterations = max(1, warmup_iterations)
        self.batch_scheduler = BatchScheduler(batching) if batching is not None else None
        self.manager = ServableManager(options, warmup=self._warmup, prepare=self._prepare)
        self.metrics = Metrics()
        self.metrics.add_gauges(self._version_states)
        self.traffic = TrafficTable()  # the default route's splits (mlc rollout; the admin path sets them)
        self.shadow = Shadow(self._run_shadow, self.metrics)

    def _version_states(self) -> list[tuple[str, tuple[tuple[str, str], ...], float]]:
        rows: list[tuple[str, tuple[tuple[str, str], ...], float]] = []
        for name in self.manager.model_names():
            for status in self.manager.servable_states(name):
                labels = (("model_name", name), ("model_version", str(status.version)), ("state", status.state.value))
                rows.append((":mlc:serving:model_version_state", labels, 1.0))
        return rows

    def _prepare(self, servable: Servable) -> None:
        """Route the servable's session runs through the shared batch scheduler, if batching."""
        self.metrics.record_load(servable.name, servable.version, str(servable.path), servable.load_seconds * 1e6)
        scheduler = self.batch_scheduler
        if scheduler is None:
            return
        own_params = Path(servable.path) / PER_MODEL_BATCHING_FILE
        if self.per_model_batching and own_params.is_file():
            # --enable_per_model_batching_parameters: this version batches on its own threads.
            scheduler = BatchScheduler(read_batching_parameters(own_params))
            servable.on_close.append(scheduler.stop)
        servable.batch_runner = lambda feeds, fetches, timeout_ms: scheduler.run(
            servable, servable.run_session, feeds, fetches, timeout_ms)
        servable.on_close.append(lambda: scheduler.forget(servable))

    # --- prediction ---------------------------------------------------------------------

    def predict_arrays(
        self,
        ref: ModelRef,
        signature_name: str,
        inputs: Mapping[str, np.ndarray],
        output_filter: list[str] | None = None,
        timeout_ms: int | None = None,
        route_key: str | None = None,
    ) -> Prediction:
        """Run a signature of the servable ``ref`` names (or the split sends it to) on named arrays."""
        servable, shadow = self._acquire(ref, route_key)
        try:
            _fail_if_asked(servable)
            prediction = self._run(servable, signature_name, inputs, output_filter or (), timeout_ms)
        finally:
            servable.release()
        if shadow:
            self._offer_shadow(prediction, inputs, output_filter or ())
        return prediction

    def _acquire(self, ref: ModelRef, route_key: str | None) -> tuple[Servable, bool]:
        """Hold the servable ``ref`` names, or the split's choice for a default route (and whether to shadow)."""
        if ref.version is None and ref.label is None and ref.name:
            decision = self.traffic.route(ref.name, route_key, self.manager.available_versions(ref.name))
            if decision is not None:
                try:
                    return self.manager.acquire(ref.name, decision[0]), decision[1]
                except ServableNotFound:
                    pass  # it is unloading this instant: answer as without a split
        return self.manager.acquire(ref.name, ref.version, ref.label), False

    def _run(
        self,
        servable: Servable,
        signature_name: str,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str],
        timeout_ms: int | None,
    ) -> Prediction:
        name = signature_name or DEFAULT_SIGNATURE
        signature = servable.signature(name)  # FAILED_PRECONDITION before looking at inputs, as TF Serving
        if self.method_name_check:
            from lifecycle.server.models.examples import check_predict_method

            check_predict_method(signature)
        plan = servable.plan(name, inputs, output_filter)
        values = servable.run_plan(plan, inputs, timeout_ms)
        return Prediction(servable.name, servable.version, name, dict(zip(plan.outputs, values, strict=True)))

    def predict(self, request: Any, timeout_ms: int | None = None, route_key: str | None = None) -> bytes:
        """PredictionService.Predict on protos; returns the encoded PredictResponse.

        The response is assembled from encoded pieces (outputs = 1, model_spec = 2, in field
        order as TF Serving writes it): the output tensors are copied once, into the bytes
        gRPC sends, instead of being parsed into a message and serialized again. The pieces
        that depend only on the signature (output keys, the ModelSpec) are encoded once.
        """
        if not request.HasField("model_spec"):
            raise InvalidArgument("Missing ModelSpec")
        ref = model_ref(request.model_spec)
        servable, shadow = self._acquire(ref, route_key)
        try:
            signature_name, inputs = _request_inputs(servable, request)
            _fail_if_asked(servable)
            prediction = self._run(servable, signature_name, inputs, request.output_filter, timeout_ms)
        finally:
            servable.release()
        if shadow:
            self._offer_shadow(prediction, inputs, request.output_filter)
        parts: list[bytes] = []
        for alias, value in prediction.outputs.items():
            parts += length_delimited(1, [_output_key(alias), *length_delimited(2, tensor_proto_parts(value, self.tensor_content))])
        parts.append(_model_spec_field(prediction.name, prediction.signature_name, prediction.version))
        return b"".join(parts)

    def _predict_on(self, servable: Servable, request: Any, timeout_ms: int | None) -> Prediction:
        signature_name, inputs = _request_inputs(servable, request)
        return self._run(servable, signature_name, inputs, request.output_filter, timeout_ms)

    # --- the traffic split's shadow copies (lifecycle.server.traffic) ------------------------

    def set_split(self, name: str, split: Split | None) -> int:
        """Set (None: clear) a model's split; returns its new generation.

        A split that names another candidate than the model's current one (or follows none)
        starts the shadow's largest-difference gauge afresh; clearing a split keeps it.
        """
        previous = self.traffic.split(name)
        generation = self.traffic.set(name, split)
        if split is not None and (previous is None or previous.candidate != split.candidate):
            self.shadow.reset(name)
        return generation

    def _offer_shadow(self, prediction: Prediction, inputs: Mapping[str, np.ndarray], output_filter: Sequence[str]) -> None:
        split = self.traffic.split(prediction.name)
        if split is None or (split.compare.signature and split.compare.signature != prediction.signature_name):
            return
        self.shadow.offer(ShadowCopy(prediction.name, split.candidate, prediction.signature_name, inputs,
                                     tuple(output_filter), prediction.outputs, split.compare))

    def _run_shadow(self, copy: ShadowCopy) -> Mapping[str, np.ndarray]:
        """Run a shadow copy on its candidate (the shadow worker's thread)."""
        with self.manager.servable(copy.model, copy.version) as servable:
            _fail_if_asked(servable)
            return self._run(servable, copy.signature_name, copy.inputs, copy.output_filter, None).outputs

    # --- classify, regress, multi-inference (tf.Example inputs; see examples.py) -----------

    def classify(self, request: Any, timeout_ms: int | None = None, route_key: str | None = None) -> Any:
        """PredictionService.Classify on protos."""
        from lifecycle.server.models import examples

        servable, _ = self._acquire(_request_ref(request), route_key)
        try:
            return examples.classify(servable, request, timeout_ms, self.method_name_check)
        finally:
            servable.release()

    def regress(self, request: Any, timeout_ms: int | None = None, route_key: str | None = None) -> Any:
        """PredictionService.Regress on protos."""
        from lifecycle.server.models import examples

        servable, _ = self._acquire(_request_ref(request), route_key)
        try:
            return examples.regress(servable, request, timeout_ms, self.method_name_check)
        finally:
            servable.release()

    def multi_inference(self, request: Any, timeout_ms: int | None = None, route_key: str | None = None) -> Any:
        """PredictionService.MultiInference on protos: the first task's ModelSpec picks the servable."""
        from lifecycle.server.models import examples

        servable, _ = self._acquire(model_ref(examples.first_task_spec(request)), route_key)
        try:
            return examples.multi_inference(servable, request, timeout_ms, self.method_name_check)
        finally:
            servable.release()

    def _warmup(self, servable: Servable) -> None:
        from lifecycle.server.models import examples

        def run_once(kind: str, request: Any) -> Any:
            if kind == "predict_log":
                return self._predict_on(servable, request, None)
            if kind == "classify_log":
                return examples.classify(servable, request, None, self.method_name_check)
            if kind == "regress_log":
                return examples.regress(servable, request, None, self.method_name_check)
            return examples.multi_inference(servable, request, None, self.method_name_check)

        def run(kind: str, request: Any) -> None:
            for _ in range(self.warmup_iterations):
                run_once(kind, request)

        started = time.monotonic()
        count = servable.warmup(run)
        if count:
            self.metrics.record_warmup(str(servable.path), (time.monotonic() - started) * 1e6)
            log.info("Finished reading warmup data for model at %s. Number of warmup records read: %d.",
                     servable.path, count)

    # --- metadata -----------------------------------------------------------------------

    def signature_inputs(self, ref: ModelRef, signature_name: str) -> dict[str, Any]:
        """The TensorInfo map of a signature's inputs (for JSON -> tensor conversion)."""
        name = signature_name or DEFAULT_SIGNATURE
        with self.manager.servable(ref.name, ref.version, ref.label) as servable:
            signature = servable.signatures.get(name)
            if signature is None:
                raise InvalidArgument(f'Serving signature name: "{name}" not found in signature def')
            return dict(signature.inputs)

    def get_model_metadata(self, request: Any) -> Any:
        """PredictionService.GetModelMetadata: the signature_def map of one servable."""
        from google.protobuf import any_pb2
        from tensorflow_serving.apis import get_model_metadata_pb2

        if not request.HasField("model_spec"):
            raise InvalidArgument("Missing ModelSpec")
        if not request.metadata_field:
            raise InvalidArgument("GetModelMetadataRequest must specify at least one metadata_field")
        for metadata_field in request.metadata_field:
            if metadata_field != SIGNATURE_DEF_FIELD:
                raise InvalidArgument(f"Metadata field {metadata_field} is not supported")
        ref = model_ref(request.model_spec)
        with self.manager.servable(ref.name, ref.version, ref.label) as servable:
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            for key, signature in servable.signatures.items():
                signature_map.signature_def[key].CopyFrom(signature)
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = servable.name
            response.model_spec.version.value = servable.version
        packed = any_pb2.Any()
        packed.Pack(signature_map)
        response.metadata[SIGNATURE_DEF_FIELD].CopyFrom(packed)
        return response

    # --- model service ------------------------------------------------------------------

    def get_model_status(self, request: Any) -> Any:
        """ModelService.GetModelStatus: every version's state, or one version's."""
        from tensorflow_serving.apis import get_model_status_pb2

        if not request.HasField("model_spec"):
            raise InvalidArgument("Missing ModelSpec")
        ref = model_ref(request.model_spec)
        statuses = self.manager.servable_states(ref.name)
        version = ref.version
        if ref.label is not None:
            version = self.manager.labels(ref.name).get(ref.label)
            if version is None:
                raise InvalidArgument(f"Unrecognized servable version label: {ref.label}")
        if version is not None:
            statuses = [s for s in statuses if s.version == version]
            if not statuses:
                raise ServableNotFound(f"Could not find version {version} of model {ref.name}")
        elif not statuses:
            raise ServableNotFound(f"Could not find any versions of model {ref.name}")
        response = get_model_status_pb2.GetModelStatusResponse()
        for status in statuses:
            entry = response.model_version_status.add()
            entry.version = status.version
            entry.state = get_model_status_pb2.ModelVersionStatus.State.Value(status.state.value)
            fill_status_proto(entry.status, status.error)
        return response

    def reload_config(self, request: Any) -> Any:
        """ModelService.HandleReloadConfigRequest: replace the whole config."""
        from tensorflow_serving.apis import model_management_pb2

        if request.config.WhichOneof("config") != "model_config_list":
            raise InvalidArgument(
                "ServerModelConfig type not supported by HandleReloadConfigRequest. Only "
                "ModelConfigList is currently supported"
            )
        for index, config in enumerate(request.config.model_config_list.config):
            log.info("Config entry index : %d path : %s name : %s platform : %s",
                     index, config.base_path, config.name, config.model_platform)
        try:
            self.manager.apply_config(request.config)
        except LifecycleError as e:
            log.error("ReloadConfig failed: %s", e.message)
            raise
        response = model_management_pb2.ReloadConfigResponse()
        fill_status_proto(response.status, None)
        return response

    def stop(self) -> None:
        """Stop the shadow worker and unload everything."""
        self.shadow.stop()
        self.manager.stop()
        if self.batch_scheduler is not None:
            self.batch_scheduler.stop()


@functools.lru_cache(maxsize=1024)
def _output_key(alias: str) -> bytes:
    """The key field (1) of a PredictResponse.outputs map entry."""
    return b"".join(length_delimited(1, [alias.encode()]))


@functools.lru_cache(maxsize=1024)
def _model_spec_field(name: str, signature_name: str, version: int) -> bytes:
    """PredictResponse.model_spec (field 2), encoded: the same for every answer of a version."""
    from tensorflow_serving.apis import model_pb2

    spec = model_pb2.ModelSpec(name=name, signature_name=signature_name)
    spec.version.value = version
    return b"".join(length_delimited(2, [spec.SerializeToString()]))


def _request_inputs(servable: Servable, request: Any) -> tuple[str, dict[str, np.ndarray]]:
    """A PredictRequest's signature name (checked first, as TF Serving) and its inputs as arrays."""
    signature_name = request.model_spec.signature_name
    servable.signature(signature_name)
    return signature_name, {alias: to_ndarray(tensor, alias) for alias, tensor in request.inputs.items()}


def _fail_if_asked(servable: Servable) -> None:
    """The ``server:predict:<model>:<version>`` failpoint (tests: a slow or failing candidate)."""
    if failpoint(f"server:predict:{servable.name}:{servable.version}"):
        raise ServingError(f"failpoint server:predict:{servable.name}:{servable.version}", "UNAVAILABLE")


def _request_ref(request: Any) -> ModelRef:
    if not request.HasField("model_spec"):
        raise InvalidArgument("Missing ModelSpec")
    return model_ref(request.model_spec)


def fill_status_proto(proto: Any, error: LifecycleError | None) -> None:
    """Write an error (None = OK) into a tensorflow.serving.StatusProto."""
    from tensorflow.core.protobuf import error_codes_pb2

    if error is None:
        proto.error_code = error_codes_pb2.OK
        proto.error_message = ""
    else:
        proto.error_code = error_codes_pb2.Code.Value(error.grpc_code)
        proto.error_message = error.message
