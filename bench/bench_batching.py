"""Benchmark server-side batching: Predict throughput at 16 concurrent small requests, with and
without ``--enable_batching``, printed as a ratio measured in the same run.

The model is a 4-layer 2048-wide MLP (one row in, one row out: a "small request"); one row
costs a pass over 64 MB of weights, so merging rows into one run is what batching buys. Each
configuration runs ``mlc-model-server`` in a child process; the client threads (official
stubs, one channel each) live in this process, the same for both configurations.

    TF_CPP_MIN_LOG_LEVEL=2 python bench/bench_batching.py                 # ~1 minute
    python bench/bench_batching.py --seconds 5 --concurrency 16 --width 1024
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_dir: Path, port: int, batching_file: Path | None) -> subprocess.Popen:
    args = [sys.executable, "-m", "lifecycle.server.main", f"--port={port}", "--model_name=mlp",
            f"--model_base_path={model_dir}", "--file_system_poll_wait_seconds=0"]
    if batching_file is not None:
        args += ["--enable_batching", f"--batching_parameters_file={batching_file}"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_ready(port: int, timeout: float = 120) -> None:
    import grpc
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "mlp"
    deadline = time.monotonic() + timeout
    while True:
        try:
            stub.GetModelStatus(request, timeout=2)
            channel.close()
            return
        except grpc.RpcError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def measure(port: int, concurrency: int, seconds: float, width: int) -> tuple[float, float]:
    """(requests per second, p50 latency ms) of ``concurrency`` closed-loop clients."""
    import grpc
    import numpy as np
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from lifecycle.tf_import import import_tensorflow

    tf = import_tensorflow()  # quietly (no CUDA probe, no deprecations)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "mlp"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.random.default_rng(1).normal(size=(1, width)).astype(np.float32)))
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    start_gate = threading.Barrier(concurrency + 1)
    stop_at = [0.0]

    def client(i: int) -> None:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        stub.Predict(request, timeout=30)  # connect and warm up
        start_gate.wait()
        while time.monotonic() < stop_at[0]:
            t0 = time.perf_counter()
            stub.Predict(request, timeout=30)
            latencies[i].append(time.perf_counter() - t0)
        channel.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    stop_at[0] = time.monotonic() + 1e9
    start_gate.wait()
    began = time.monotonic()
    stop_at[0] = began + seconds
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began
    flat = sorted(x for xs in latencies for x in xs)
    return len(flat) / elapsed, flat[len(flat) // 2] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--batch_timeout_micros", type=int, default=2000)
    parser.add_argument("--num_batch_threads", type=int, default=2)
    args = parser.parse_args()

    from tests.support.savedmodels import build_mlp

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_mlp(root / "mlp" / "1", width=args.width, depth=args.depth)
        batching_file = root / "batching.config"
        batching_file.write_text(
            f"max_batch_size {{ value: {args.concurrency} }}\n"
            f"batch_timeout_micros {{ value: {args.batch_timeout_micros} }}\n"
            f"num_batch_threads {{ value: {args.num_batch_threads} }}\n"
            f"max_enqueued_batches {{ value: 100 }}\n"
        )
        results = {}
        for label, config in (("unbatched", None), ("batched", batching_file)):
            port = free_port()
            server = start_server(root / "mlp", port, config)
            try:
                wait_ready(port)
                results[label] = measure(port, args.concurrency, args.seconds, args.width)
            finally:
                server.terminate()
                server.wait(timeout=30)
        print(f"Predict, {args.concurrency} concurrent clients, 1 row each, MLP {args.depth}x{args.width} "
              f"({args.seconds:g} s per configuration, {os.cpu_count()} CPUs)")
        for label, (rps, p50) in results.items():
            print(f"  {label:10s} {rps:8.1f} req/s   p50 {p50:7.2f} ms")
        ratio = results["batched"][0] / results["unbatched"][0]
        print(f"  batching throughput ratio: {ratio:.2f}x")


if __name__ == "__main__":
    main()
