"""Benchmark mlc-model-server's Predict against two baselines measured in the same run.

For (a) half_plus_two (one float in, one float out) and (b) a small DeepLab-shaped conv net
on a 513x513 RGB image (class map out), at 1, 4 and 16 concurrent clients, it measures
throughput and p50/p99 latency of:

- ``in-process``: the same signature called directly (lifecycle.server.models.loader.Servable.run);
- ``server``: Predict through the official stub against ``mlc-model-server`` in a child process;
- ``server-raw``: the same Predict, its request serialized once and its response left as
  bytes, as the echo's client does: the server's own time, without the client's protobuf work
  (parsing a 513x513 class map from ``int64_val`` costs the client about 0.8 ms per answer);
- ``echo``: a bare grpcio server in a child process answering bytes of the Predict response's
  size to a request of the Predict request's size (the transport floor).

and prints the server's figures as ratios to both baselines, and the issue-15 figure
``(in-process + echo) / server``: the time per request of the signature alone plus that of the
transport alone, over the server's (times from throughput; 1.0 = the server adds nothing). Client threads share one
process (and its GIL) for every target, so the ratios compare like with like.

Wall-clock figures move with whatever else runs on the machine; the CPU time the server and
echo processes spend per request (``cpu us/req``, from /proc) moves much less, so it is printed
for both child processes too. ``--py-spy DIR`` records the server with py-spy (GIL-holding
samples) during each server cell, as ``DIR/<model>-<clients>.txt`` in py-spy's
raw (collapsed stack) format; sampling slows the server, so figures of such a run are not
comparable with others.

    TF_CPP_MIN_LOG_LEVEL=2 python bench/bench_server.py            # ~3 minutes
    python bench/bench_server.py --seconds 1 --concurrency 1,4     # quicker
    python bench/bench_server.py --models half_plus_two --repeat 5  # steadier: median of 5 interleaved runs,
                                                                     # and each run's ratios beside it
    python bench/bench_server.py --grpc-transport asyncio           # the server on the asyncio transport
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ECHO_METHOD = "/bench.Echo/Call"


# --- the echo server (child process) -----------------------------------------------------------


def run_echo_server(port: int, threads: int) -> None:
    """A bare grpcio server: the first 8 bytes of a request name the size of the reply."""
    import grpc

    replies: dict[int, bytes] = {}

    def call(request: bytes, context: object) -> bytes:
        size = int.from_bytes(request[:8], "little")
        reply = replies.get(size)
        if reply is None:
            reply = replies.setdefault(size, bytes(size))
        return reply

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Call": grpc.unary_unary_rpc_method_handler(call)}
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=threads),
        options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)],
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


# --- measurement -------------------------------------------------------------------------------


def build_bench_models(work: Path) -> Path:
    """half_plus_two and the 513x513 segmenter under ``work``, and the models.config naming both."""
    from google.protobuf import text_format

    from tests.support.savedmodels import build_half_plus_two_tf1, build_segmenter
    from tests.support.server_support import model_config, server_config

    build_half_plus_two_tf1(work / "half_plus_two" / "1")
    build_segmenter(work / "segmenter" / "1", num_classes=21, width=16)
    config_file = work / "models.config"
    config_file.write_text(text_format.MessageToString(server_config(
        model_config("half_plus_two", work / "half_plus_two"), model_config("segmenter", work / "segmenter"))))
    return config_file


def predict_request(name: str, inputs: dict[str, Any], output_filter: list[str]) -> Any:
    """A PredictRequest of model ``name`` on ``inputs`` (arrays, by tf.make_tensor_proto), asking for ``output_filter``."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.output_filter.extend(output_filter)
    for alias, value in inputs.items():
        request.inputs[alias].CopyFrom(tf.make_tensor_proto(value))
    return request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(make_call: Callable[[], Callable[[], object]], clients: int, seconds: float) -> dict[str, float]:
    """Run ``clients`` threads calling for ``seconds``; throughput and latency percentiles."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    start_barrier = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def worker(index: int) -> None:
        call = make_call()
        call()  # warm the connection / session
        start_barrier.wait()
        own = latencies[index]
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at[0]:
                return
            call()
            own.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    stop_at[0] = float("inf")
    start_barrier.wait()
    began = time.perf_counter()
    stop_at[0] = began + seconds
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    import numpy as np

    flat = np.array([x for own in latencies for x in own])
    return {
        "rps": len(flat) / elapsed,
        "p50": float(np.percentile(flat, 50) * 1000) if len(flat) else float("nan"),
        "p99": float(np.percentile(flat, 99) * 1000) if len(flat) else float("nan"),
        "n": float(len(flat)),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_child(pid: int, make_call: Callable[[], Callable[[], object]], clients: int, seconds: float,
                  spy_to: Path | None = None) -> dict[str, float]:
    """:func:`measure` against a child process, adding the CPU it spent per request (us)."""
    spy = None
    if spy_to is not None:
        beside = Path(sys.executable).with_name("py-spy")  # the venv's, also when it is not activated
        spy = subprocess.Popen([str(beside) if beside.exists() else "py-spy", "record", "-p", str(pid), "-o", str(spy_to), "-f", "raw", "--gil",
                                "--nonblocking", "-t", "-r", "200"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # let it attach before the cell starts
    before = cpu_seconds(pid)
    result = measure(make_call, clients, seconds)
    result["cpu_us"] = (cpu_seconds(pid) - before) / max(result["n"], 1) * 1e6
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)
    return result


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"child exited with {process.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"port {port} did not open")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="measurement time per cell")
    parser.add_argument("--concurrency", default="1,4,16", help="comma-separated client counts")
    parser.add_argument("--py-spy", metavar="DIR", default="",
                        help="record the server with py-spy during each server cell into DIR (collapsed stacks)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="measure each cell this many times, interleaved, and report the median run (by req/s)")
    parser.add_argument("--models", default="half_plus_two,segmenter", help="comma-separated: half_plus_two, segmenter")
    parser.add_argument("--grpc-transport", default="", choices=["", "threads", "asyncio"],
                        help="the server's --mlc_grpc_transport (default: the server's default); "
                             "bench/bench_transport.py compares the two")
    parser.add_argument("--echo-server", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo_server:
        run_echo_server(args.echo_server, 32)
        return

    import grpc
    import numpy as np

    from lifecycle.tf_import import import_tensorflow

    import_tensorflow()
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from lifecycle.server.models.loader import Servable

    concurrency = [int(c) for c in args.concurrency.split(",")]
    spy_dir = Path(args.py_spy) if args.py_spy else None
    if spy_dir is not None:
        spy_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="mlc-bench-"))
    config_file = build_bench_models(work)

    grpc_port, echo_port = free_port(), free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    server = subprocess.Popen(
        [sys.executable, "-m", "lifecycle.server.main", f"--port={grpc_port}",
         f"--model_config_file={config_file}", "--file_system_poll_wait_seconds=0",
         *([f"--mlc_grpc_transport={args.grpc_transport}"] if args.grpc_transport else [])],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    echo = subprocess.Popen([sys.executable, __file__, f"--echo-server={echo_port}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    channel_options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    try:
        wait_for_port(grpc_port, server)
        wait_for_port(echo_port, echo)
        rng = np.random.default_rng(0)
        cases = {
            "half_plus_two": ({"x": np.array([[1.0]], np.float32)}, []),
            "segmenter 513x513": ({"images": rng.integers(0, 255, (1, 513, 513, 3)).astype(np.uint8)}, ["classes"]),
        }
        print(f"# mlc-model-server Predict benchmark, {args.seconds:.1f} s per cell, {os.cpu_count()} CPUs")
        print(f"{'model':<18} {'clients':>7} {'target':<10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}"
              f" {'cpu us/req':>10}   {'server/in-proc':>14} {'server/echo':>11}   {'(in+echo)/server':>16}")
        wanted = set(args.models.split(","))
        for label, (inputs, output_filter) in cases.items():
            name = label.split()[0]
            if name not in wanted:
                continue
            servable = Servable(name, 1, work / name / "1", ["serve"])
            request = predict_request(name, inputs, output_filter)
            probe = prediction_service_pb2_grpc.PredictionServiceStub(
                grpc.insecure_channel(f"127.0.0.1:{grpc_port}", options=channel_options)).Predict(request, timeout=60)
            request_size, response_size = request.ByteSize(), probe.ByteSize()
            echo_payload = response_size.to_bytes(8, "little") + bytes(max(0, request_size - 8))

            # The factories and cells bind this case's values as defaults: each is called
            # within this iteration, but a default says so without the reader checking.
            def in_process(servable: Servable = servable, inputs: dict[str, np.ndarray] = inputs,
                           output_filter: list[str] = output_filter) -> Callable[[], object]:
                return lambda: servable.run("serving_default", inputs, output_filter)

            def via_server(request: predict_pb2.PredictRequest = request) -> Callable[[], object]:
                stub = prediction_service_pb2_grpc.PredictionServiceStub(
                    grpc.insecure_channel(f"127.0.0.1:{grpc_port}", options=channel_options))
                return lambda: stub.Predict(request, timeout=60)

            request_bytes = request.SerializeToString()

            def via_server_raw(request_bytes: bytes = request_bytes) -> Callable[[], object]:
                channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}", options=channel_options)
                call = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
                return lambda: call(request_bytes, timeout=60)

            def via_echo(echo_payload: bytes = echo_payload) -> Callable[[], object]:
                channel = grpc.insecure_channel(f"127.0.0.1:{echo_port}", options=channel_options)
                call = channel.unary_unary(ECHO_METHOD)
                return lambda: call(echo_payload, timeout=60)

            cells: dict[str, Callable[[int], dict[str, float]]] = {  # clients -> one measurement
                "in-proc": lambda n: measure(in_process, n, args.seconds),
                "server": lambda n, name=name: measure_child(server.pid, via_server, n, args.seconds,
                                                             spy_dir / f"{name}-{n}.txt" if spy_dir else None),
                "server-raw": lambda n: measure_child(server.pid, via_server_raw, n, args.seconds),
                "echo": lambda n: measure_child(echo.pid, via_echo, n, args.seconds),
            }
            for clients in concurrency:
                runs: dict[str, list[dict[str, float]]] = {target: [] for target in cells}
                for rep in range(args.repeat):
                    # Interleaved, so every target sees the same machine load, and in the opposite
                    # order every other time, so that none is always measured first or last.
                    for target in (list(cells) if rep % 2 == 0 else list(cells)[::-1]):
                        runs[target].append(cells[target](clients))
                results = {target: sorted(rs, key=lambda r: r["rps"])[len(rs) // 2] for target, rs in runs.items()}
                for target, r in results.items():
                    ratio = ""
                    if target.startswith("server"):
                        base, floor = results["in-proc"], results["echo"]
                        ratio = (f"   thr {r['rps'] / base['rps']:5.2f}x p50 {r['p50'] / base['p50']:6.1f}x"
                                 f"   thr {r['rps'] / floor['rps']:5.2f}x p50 {r['p50'] / floor['p50']:5.1f}x"
                                 f"   {(1 / base['rps'] + 1 / floor['rps']) * r['rps']:8.2f}")
                    cpu = f"{r['cpu_us']:>10.0f}" if "cpu_us" in r else " " * 10
                    print(f"{label:<18} {clients:>7} {target:<10} {r['rps']:>9.1f} {r['p50']:>8.2f} {r['p99']:>8.2f} {cpu}{ratio}")
                if args.repeat > 1:  # the figure of each run alone (its targets measured together)
                    for target in ("server", "server-raw"):
                        each = sorted((1 / b["rps"] + 1 / f["rps"]) * r["rps"]
                                      for b, r, f in zip(runs["in-proc"], runs[target], runs["echo"], strict=True))
                        print(f"{'':<18} {'':>7} {target:<10} (in+echo)/server of each run: "
                              + " ".join(f"{x:.2f}" for x in each) + "; server/echo: " + " ".join(
                                  f"{x:.2f}" for x in sorted(r["rps"] / f["rps"] for r, f in zip(runs[target], runs["echo"], strict=True))))
            print(f"# {label}: request {request_size} B, response {response_size} B")
            servable.close()
    finally:
        for child in (server, echo):
            child.terminate()
            child.wait(timeout=30)


if __name__ == "__main__":
    main()
