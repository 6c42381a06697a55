"""mlc beside the tools a user would pick instead: KServe's Python server and MLflow's registry.

Serving: the two SavedModels of bench_server.py (half_plus_two and the 513x513 segmenter) are
served in the same run by ``mlc-model-server`` and by ``kserve.ModelServer`` (0.21, through a
``kserve.Model`` calling the signature: bench/peers/kserve_server.py, in .bench-venv-kserve),
each in a child process, and at 1, 4 and 16 client threads (one client process) it measures
throughput and p50/p99 of:

- ``rest``: mlc's TF Serving ``POST /v1/models/M:predict`` against KServe's v1
  ``POST /v1/models/M:predict``, the same ``{"instances": ...}`` JSON body to both;
- ``grpc``: TF Serving ``Predict`` (output ``classes`` for the segmenter) against KServe's v2
  ``ModelInfer`` (raw tensor contents; the model answers ``classes``).

Both clients send a request encoded once and leave the answer as bytes (a keep-alive
http.client connection or a raw grpc call per thread), so the figures are the servers' own,
not this client's JSON or protobuf work. The targets are interleaved cell by cell, in the
opposite order every other repetition.

Registry: bench/peers/registry.py, mlc's Store on a local folder against MLflow's SQLite
registry through MlflowClient (in .bench-venv-mlflow) at 100 and 10,000 versions.

Build the peers' environments first: ``bench/peers/setup.sh``. The last line is
``peers: serving min X.XX (goal >= 1.5), registry min Y.YY (goal >= 1)``.

    python bench/bench_peers.py                                   # ~10 minutes
    python bench/bench_peers.py --seconds 1 --concurrency 1,4 --sizes 100,1000   # quicker
    python bench/bench_peers.py --skip-registry   # or --skip-serving
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench_server import build_bench_models, free_port, measure_child, wait_for_port  # noqa: E402

KSERVE_PY = REPO / ".bench-venv-kserve" / "bin" / "python"
MLFLOW_PY = REPO / ".bench-venv-mlflow" / "bin" / "python"
CHANNEL_OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


def need(python: Path, what: str) -> None:
    """Stop with one line when a peer's environment is missing."""
    if not python.exists():
        raise SystemExit(f"{what}'s environment {python.parent.parent} is missing: run bench/peers/setup.sh")


def v2_messages() -> Any:
    """KServe's generated v2 protocol messages (protobuf 5 gencode; they load under protobuf 7 too)."""
    found = list((REPO / ".bench-venv-kserve" / "lib").glob("python3*/site-packages/kserve/protocol/grpc/grpc_predict_v2_pb2.py"))
    if not found:
        raise SystemExit("kserve's grpc_predict_v2_pb2.py is not in .bench-venv-kserve: run bench/peers/setup.sh")
    spec = importlib.util.spec_from_file_location("grpc_predict_v2_pb2", found[0])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rest_caller(port: int, path: str, body: bytes) -> Callable[[], Callable[[], object]]:
    """A factory of per-thread callers: one keep-alive connection each, POSTing ``body``."""
    def make() -> Callable[[], object]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        headers = {"Content-Type": "application/json"}

        def call() -> object:
            connection.request("POST", path, body, headers)
            response = connection.getresponse()
            data = response.read()
            if response.status != 200:
                raise SystemExit(f"POST {path} on port {port}: HTTP {response.status}: {data[:200]!r}")
            return data
        return call
    return make


def grpc_caller(port: int, method: str, request: bytes) -> Callable[[], Callable[[], object]]:
    """A factory of per-thread callers: one channel each, calling ``method`` with ``request`` bytes."""
    import grpc

    def make() -> Callable[[], object]:
        call = grpc.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS).unary_unary(method)
        return lambda: call(request, timeout=120)
    return make


def serving(args: argparse.Namespace, work: Path) -> float:
    """Measure every cell, print the table; the smallest mlc / KServe throughput ratio."""
    import numpy as np

    from lifecycle.tf_import import import_tensorflow

    tf = import_tensorflow()
    from tensorflow_serving.apis import predict_pb2


    v2 = v2_messages()
    config_file = build_bench_models(work)
    mlc_grpc, mlc_rest, ks_http, ks_grpc = (free_port() for _ in range(4))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    mlc = subprocess.Popen([sys.executable, "-m", "lifecycle.server.main", f"--port={mlc_grpc}", f"--rest_api_port={mlc_rest}",
                            f"--model_config_file={config_file}", "--file_system_poll_wait_seconds=0", *args.mlc_flag],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ks_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    kserve = subprocess.Popen([str(KSERVE_PY), str(Path(__file__).parent / "peers" / "kserve_server.py"),
                               "--http_port", str(ks_http), "--grpc_port", str(ks_grpc),
                               f"half_plus_two={work / 'half_plus_two' / '1'}", f"segmenter={work / 'segmenter' / '1'}"],
                              env=ks_env, stdout=subprocess.DEVNULL, stderr=None if args.verbose else subprocess.DEVNULL)
    rng = np.random.default_rng(0)
    cases = {"half_plus_two": ("x", np.array([[1.0]], np.float32), "FP32", []),
             "segmenter": ("images", rng.integers(0, 255, (1, 513, 513, 3)).astype(np.uint8), "UINT8", ["classes"])}
    worst = float("inf")
    try:
        for port, child in ((mlc_grpc, mlc), (mlc_rest, mlc), (ks_http, kserve), (ks_grpc, kserve)):
            wait_for_port(port, child, timeout=300)
        print(f"# serving: {args.seconds:.1f} s per cell, {os.cpu_count()} CPUs, median of {args.repeat} interleaved runs")
        print(f"{'model':<14} {'proto':<5} {'clients':>7} {'target':<7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}"
              f" {'cpu us/req':>10}   {'mlc/KServe':>10} {'p99 ratio':>9}")
        for name, (alias, value, v2_type, output_filter) in cases.items():
            if name not in args.models.split(","):
                continue
            body = json.dumps({"instances": value.tolist()}).encode()
            predict = predict_pb2.PredictRequest()
            predict.model_spec.name = name
            predict.output_filter.extend(output_filter)
            predict.inputs[alias].CopyFrom(tf.make_tensor_proto(value))
            infer = v2.ModelInferRequest(model_name=name)
            tensor = infer.inputs.add(name=alias, datatype=v2_type)
            tensor.shape.extend(value.shape)
            infer.raw_input_contents.append(value.tobytes())
            pairs = {
                "rest": {"mlc": rest_caller(mlc_rest, f"/v1/models/{name}:predict", body),
                         "KServe": rest_caller(ks_http, f"/v1/models/{name}:predict", body)},
                "grpc": {"mlc": grpc_caller(mlc_grpc, "/tensorflow.serving.PredictionService/Predict", predict.SerializeToString()),
                         "KServe": grpc_caller(ks_grpc, "/inference.GRPCInferenceService/ModelInfer", infer.SerializeToString())},
            }
            pids = {"mlc": mlc.pid, "KServe": kserve.pid}
            for proto in args.protocols.split(","):
                for clients in [int(c) for c in args.concurrency.split(",")]:
                    if name == "segmenter" and proto == "rest" and clients > args.segmenter_rest_clients:
                        print(f"{name:<14} {proto:<5} {clients:>7} (skipped: above --segmenter-rest-clients)")
                        continue
                    runs: dict[str, list[dict[str, float]]] = {"mlc": [], "KServe": []}
                    for rep in range(args.repeat):
                        for target in (("mlc", "KServe") if rep % 2 == 0 else ("KServe", "mlc")):
                            runs[target].append(measure_child(pids[target], pairs[proto][target], clients, args.seconds))
                    res = {t: sorted(rs, key=lambda r: r["rps"])[len(rs) // 2] for t, rs in runs.items()}
                    ratio = statistics.median(m["rps"] / k["rps"] for m, k in zip(runs["mlc"], runs["KServe"], strict=True))
                    worst = min(worst, ratio)
                    for target, r in res.items():
                        extra = (f"   {ratio:>10.2f} {r['p99'] / res['KServe']['p99']:>9.2f}" if target == "mlc" else "")
                        print(f"{name:<14} {proto:<5} {clients:>7} {target:<7} {r['rps']:>9.1f} {r['p50']:>8.2f}"
                              f" {r['p99']:>8.2f} {r['cpu_us']:>10.0f}{extra}", flush=True)
    finally:
        for child in (mlc, kserve):
            child.terminate()
            child.wait(timeout=60)
    return worst


def main() -> None:
    """Parse the options, run the serving and registry comparisons, print the last line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="measurement time per serving cell")
    parser.add_argument("--concurrency", default="1,4,16", help="comma-separated client counts")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs per serving cell (the median is reported)")
    parser.add_argument("--models", default="half_plus_two,segmenter", help="comma-separated: half_plus_two, segmenter")
    parser.add_argument("--protocols", default="rest,grpc", help="comma-separated: rest, grpc")
    parser.add_argument("--segmenter-rest-clients", type=int, default=1,
                        help="most clients for the segmenter over REST (each answer is 5.5 M floats of JSON, seconds apiece)")
    parser.add_argument("--mlc-flag", action="append", default=[], help="an extra mlc-model-server flag (repeatable)")
    parser.add_argument("--sizes", default="100,10000", help="registry sizes (versions of one model)")
    parser.add_argument("--reps", type=int, default=5, help="registry calls per operation per round")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved registry rounds per operation and size")
    parser.add_argument("--skip-serving", action="store_true")
    parser.add_argument("--skip-registry", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="show KServe's log")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mlc-bench-peers-"))
    serving_min = registry_min = float("nan")
    if not args.skip_serving:
        need(KSERVE_PY, "KServe")
        serving_min = serving(args, work)
    if not args.skip_registry:
        need(MLFLOW_PY, "MLflow")
        from peers import registry as peer_registry

        rows = peer_registry.compare(work, MLFLOW_PY, [int(s) for s in args.sizes.split(",")], args.reps, args.rounds)
        registry_min = peer_registry.report(rows)
    print(f"peers: serving min {serving_min:.2f} (goal >= 1.5), registry min {registry_min:.2f} (goal >= 1)")


if __name__ == "__main__":
    main()
