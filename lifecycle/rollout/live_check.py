"""The golden live check: a version's warmup request replayed on a server, its output digest
compared with the golden digest that register recorded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lifecycle.errors import ConfigError, ModelNotFound, StepFailed
from lifecycle.register.validate import read_warmup_requests
from lifecycle.serving.client import ServingClient
from lifecycle.store.config import Paths, load_definition
from lifecycle.store.registry import ModelRecord

RPC_TIMEOUT_S = 10.0


@dataclass
class LiveCheck:
    """The warmup request of one version and the digest its output must have."""

    version: int
    requests: list[Any]  # PredictRequest (mlc's wire messages, lifecycle.serving.wire)
    golden: str | None
    output: str | None

    @classmethod
    def of(cls, paths: Paths, rec: ModelRecord, version: int) -> LiveCheck:
        """Read the version's warmup records and golden digest."""
        vrec = rec.version(version)
        golden = vrec.report.get("golden") or {}
        requests = read_warmup_requests(paths.store.version_path(rec.name, version))
        output = golden.get("output")
        if output is None:
            try:
                outputs = load_definition(paths, rec.name).signature.outputs
                output = outputs[0].name if len(outputs) == 1 else None
            except (ModelNotFound, ConfigError):
                output = None
        return cls(version, requests, golden.get("digest"), output)

    def request(self, model: str, version: int | None = None, label: str | None = None) -> Any:
        """The first warmup request addressed to ``version`` or ``label``."""
        request = type(self.requests[0])()
        request.CopyFrom(self.requests[0])
        request.model_spec.name = model
        if version is not None:
            request.model_spec.version.value = version
        elif label is not None:
            request.model_spec.version_label = label
        return request

    def run(self, client: ServingClient, model: str, version: int | None = None, label: str | None = None,
            timeout: float = RPC_TIMEOUT_S) -> int:
        """Replay the request; return the version that answered.

        When that version is this check's version, its output must have the golden digest
        (another version answering, e.g. a label not moved yet, is for the caller to judge).
        """
        from lifecycle.register.validate import output_digest
        from lifecycle.server.models.tensors import to_ndarray  # numpy only: no TensorFlow here

        if not self.requests:
            return version if version is not None else -1
        response = client.predict(self.request(model, version, label), timeout=timeout)
        answered = response.model_spec.version.value
        if self.golden and answered == self.version:
            name = self.output if self.output in response.outputs else (
                next(iter(response.outputs)) if len(response.outputs) == 1 else None
            )
            if name is None:
                raise StepFailed("verify", f"server {client.grpc_address}: the response of {model} has no output {self.output!r}")
            digest = output_digest(to_ndarray(response.outputs[name], name))
            if digest != self.golden:
                raise StepFailed(
                    "verify",
                    f"server {client.grpc_address}: version {answered} of {model} answered the test request with "
                    f"digest {digest[:19]}..., expected the golden {self.golden[:19]}...",
                )
        return answered
