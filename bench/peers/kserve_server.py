"""KServe's Python model server for bench/bench_peers.py: run in .bench-venv-kserve, never in mlc's.

It serves each SavedModel named on the command line (``NAME=DIR``, DIR a version folder) with
``kserve.ModelServer`` through a ``kserve.Model`` whose ``predict`` calls the SavedModel's
``serving_default`` signature, as KServe's docs write a custom model: the v1 REST protocol
(``POST /v1/models/NAME:predict`` with ``{"instances": ...}``) and the v2 gRPC one
(``ModelInfer``). Latency logging is off (a log line per request would cost KServe time that
mlc's server does not spend).

    .bench-venv-kserve/bin/python bench/peers/kserve_server.py --http_port 8080 --grpc_port 8081 \\
        half_plus_two=/tmp/x/half_plus_two/1 segmenter=/tmp/x/segmenter/1
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    """Parse NAME=DIR pairs and the two ports, load the models and serve until killed."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--http_port", type=int, required=True)
    parser.add_argument("--grpc_port", type=int, required=True)
    parser.add_argument("models", nargs="+")
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # kserve parses sys.argv at import: give it none of ours

    import numpy as np
    import tensorflow as tf
    from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer

    class SavedModelModel(Model):  # type: ignore[misc] - kserve ships no types
        """One SavedModel's serving_default signature behind KServe's v1 and v2 protocols."""

        def __init__(self, name: str, path: str) -> None:
            super().__init__(name)
            self.path = path
            self.signature: Any = None
            self.input_name = ""
            self.input_dtype: Any = None

        def load(self) -> bool:
            """Load the SavedModel and find its single input."""
            self.signature = tf.saved_model.load(self.path).signatures["serving_default"]
            spec = self.signature.structured_input_signature[1]
            self.input_name = next(iter(spec))
            self.input_dtype = spec[self.input_name].dtype.as_numpy_dtype
            self.ready = True
            return True

        def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
            """v1: ``{"instances": [...]}`` -> ``{"predictions": [...]}``; v2: InferRequest -> InferResponse."""
            if isinstance(payload, InferRequest):
                batch = payload.inputs[0].as_numpy().astype(self.input_dtype, copy=False)
            else:
                batch = np.asarray(payload["instances"], dtype=self.input_dtype)
            outputs = self.signature(**{self.input_name: tf.constant(batch)})
            if not isinstance(payload, InferRequest):  # TF Serving's row format, as mlc answers
                arrays = {k: v.numpy() for k, v in outputs.items()}
                if len(arrays) == 1:
                    return {"predictions": next(iter(arrays.values())).tolist()}
                rows = len(next(iter(arrays.values())))
                return {"predictions": [{k: a[i].tolist() for k, a in arrays.items()} for i in range(rows)]}
            name, tensor = sorted(outputs.items())[0]  # the segmenter's "classes", as mlc's output_filter
            result = tensor.numpy()
            out = InferOutput(name=name, shape=list(result.shape), datatype="")
            out._datatype = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64",
                             np.dtype(np.int32): "INT32"}[result.dtype]
            out.set_data_from_numpy(result, binary_data=True)
            return InferResponse(response_id=payload.id or "", model_name=self.name, infer_outputs=[out])

    models = []
    for item in args.models:
        name, path = item.split("=", 1)
        model = SavedModelModel(name, path)
        model.load()
        models.append(model)
    ModelServer(http_port=args.http_port, grpc_port=args.grpc_port, workers=1,
                enable_latency_logging=False).start(models)


if __name__ == "__main__":
    main()
