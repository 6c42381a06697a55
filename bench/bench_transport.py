"""The gRPC transport decision: mlc-model-server on ``--mlc_grpc_transport=asyncio`` against ``threads``.

Two servers run side by side as child processes, one per transport, on the same
models.config (half_plus_two and the 513x513 segmenter of bench_server.py), with a bare grpcio echo
server (the transport floor) and the in-process signature call (the model's own cost) beside
them. For each model at 1, 4 and 16 client threads, every repetition measures the in-process
call, the echo, and both servers' Predict, the two transports in the opposite order on each
repetition, so that neither is always first. Clients send the PredictRequest serialized once and
keep the answer as bytes (as the echo's client does), so the figures are the servers' own work.

Printed per cell: req/s, p50, p99 and the server's CPU per request (from /proc), the median over
repetitions of each repetition's asyncio ÷ threads throughput ratio, then the geometric mean of
the six cells and the decision by issue 25's rule: adopt asyncio as the default if the geometric
mean is >= 1.10 and no cell is below 0.95, else keep threads as the default and asyncio behind
the flag. For the transport that rule picks it also prints the standing goals: server ÷ echo
>= 0.75 for half_plus_two, and (in-process + echo) ÷ server >= 0.90 for the segmenter (times
from throughput; 1.0 = the server adds nothing). The last line holds every figure and the
decision.

    TF_CPP_MIN_LOG_LEVEL=2 python bench/bench_transport.py          # 3 reps x 2 s per target: ~6 minutes
    python bench/bench_transport.py --seconds 1 --reps 2             # quicker, noisier
    python bench/bench_transport.py --models half_plus_two --concurrency 1,16
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from statistics import median

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench_server import (  # noqa: E402
    ECHO_METHOD,
    build_bench_models,
    free_port,
    measure,
    measure_child,
    predict_request,
    wait_for_port,
)

TRANSPORTS = ("threads", "asyncio")
ADOPT_GEOMEAN, ADOPT_FLOOR = 1.10, 0.95  # issue 25's rule
ECHO_GOAL, OVERHEAD_GOAL = 0.75, 0.90
CHANNEL_OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


def start_server(transport: str, port: int, config_file: Path, threads: int) -> subprocess.Popen[bytes]:
    """mlc-model-server on ``transport`` in a child process (the same command line otherwise)."""
    command = [sys.executable, "-m", "lifecycle.server.main", f"--port={port}", f"--model_config_file={config_file}",
               "--file_system_poll_wait_seconds=0", f"--mlc_grpc_transport={transport}"]
    if threads:
        command.append(f"--grpc_max_threads={threads}")
    return subprocess.Popen(command, env=dict(os.environ, PYTHONPATH=str(REPO)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def raw_caller(port: int, method: str, payload: bytes) -> Callable[[], Callable[[], object]]:
    """A factory of one client thread's call: its own channel, bytes in, bytes out, a deadline."""

    def make() -> Callable[[], object]:
        import grpc

        call = grpc.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS).unary_unary(method)
        return lambda: call(payload, timeout=60)

    return make


def geomean(values: list[float]) -> float:
    """The geometric mean of positive ratios."""
    return math.exp(sum(math.log(v) for v in values) / len(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="measurement time per target in each repetition")
    parser.add_argument("--reps", type=int, default=3, help="repetitions per cell (interleaved, alternating order)")
    parser.add_argument("--concurrency", default="1,4,16", help="comma-separated client counts")
    parser.add_argument("--models", default="half_plus_two,segmenter", help="comma-separated: half_plus_two, segmenter")
    parser.add_argument("--grpc-max-threads", type=int, default=0, help="the servers' --grpc_max_threads (0: its default, 32)")
    args = parser.parse_args()

    import numpy as np

    from lifecycle.tf_import import import_tensorflow

    import_tensorflow()
    from tensorflow_serving.apis import predict_pb2

    from lifecycle.server.models.loader import Servable

    concurrency = [int(c) for c in args.concurrency.split(",")]
    work = Path(tempfile.mkdtemp(prefix="mlc-bench-transport-"))
    config_file = build_bench_models(work)
    ports = {t: free_port() for t in TRANSPORTS}
    servers = {t: start_server(t, ports[t], config_file, args.grpc_max_threads) for t in TRANSPORTS}
    echo_port = free_port()
    echo = subprocess.Popen([sys.executable, str(Path(__file__).with_name("bench_server.py")), f"--echo-server={echo_port}"],
                            env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rng = np.random.default_rng(0)
    cases = {
        "half_plus_two": ({"x": np.array([[1.0]], np.float32)}, []),
        "segmenter": ({"images": rng.integers(0, 255, (1, 513, 513, 3)).astype(np.uint8)}, ["classes"]),
    }
    wanted = args.models.split(",")
    ratios: dict[tuple[str, int], float] = {}
    goals: dict[tuple[str, str, int], float] = {}  # (transport, model, clients) -> its goal figure
    try:
        for t in TRANSPORTS:
            wait_for_port(ports[t], servers[t])
        wait_for_port(echo_port, echo)
        print(f"# gRPC transports, {args.reps} reps x {args.seconds:.1f} s per target, {os.cpu_count()} CPUs, "
              f"load {os.getloadavg()[0]:.1f}")
        print(f"{'model':<14} {'clients':>7} {'target':<9} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'cpu us/req':>10}"
              f"   {'asyncio/threads of each rep':<28}")
        for name in [m for m in cases if m in wanted]:
            inputs, output_filter = cases[name]
            servable = Servable(name, 1, work / name / "1", ["serve"])
            request = predict_request(name, inputs, output_filter)
            payload = request.SerializeToString()
            probe = predict_pb2.PredictResponse.FromString(
                raw_caller(ports["threads"], "/tensorflow.serving.PredictionService/Predict", payload)()())
            echo_payload = probe.ByteSize().to_bytes(8, "little") + bytes(max(0, len(payload) - 8))

            def in_process(servable: Servable = servable, inputs: dict[str, np.ndarray] = inputs,
                           output_filter: list[str] = output_filter) -> Callable[[], object]:
                return lambda: servable.run("serving_default", inputs, output_filter)

            for clients in concurrency:
                runs: dict[str, list[dict[str, float]]] = {t: [] for t in ("in-proc", "echo", *TRANSPORTS)}
                for rep in range(args.reps):
                    runs["in-proc"].append(measure(in_process, clients, args.seconds))
                    runs["echo"].append(measure_child(echo.pid, raw_caller(echo_port, ECHO_METHOD, echo_payload),
                                                      clients, args.seconds))
                    for t in (TRANSPORTS if rep % 2 == 0 else TRANSPORTS[::-1]):
                        call = raw_caller(ports[t], "/tensorflow.serving.PredictionService/Predict", payload)
                        runs[t].append(measure_child(servers[t].pid, call, clients, args.seconds))
                each = sorted(a["rps"] / b["rps"] for a, b in zip(runs["asyncio"], runs["threads"], strict=True))
                ratios[(name, clients)] = median(each)
                for t in TRANSPORTS:
                    if name == "half_plus_two":
                        goals[(t, name, clients)] = median(r["rps"] / e["rps"] for r, e in zip(runs[t], runs["echo"], strict=True))
                    else:
                        goals[(t, name, clients)] = median((1 / i["rps"] + 1 / e["rps"]) * r["rps"] for i, r, e
                                                           in zip(runs["in-proc"], runs[t], runs["echo"], strict=True))
                for target, rs in runs.items():
                    r = sorted(rs, key=lambda x: x["rps"])[len(rs) // 2]
                    cpu = f"{r['cpu_us']:>10.0f}" if "cpu_us" in r else " " * 10
                    note = "   " + " ".join(f"{x:.2f}" for x in each) + f" -> {ratios[(name, clients)]:.2f}" if target == "asyncio" else ""
                    print(f"{name:<14} {clients:>7} {target:<9} {r['rps']:>9.1f} {r['p50']:>8.2f} {r['p99']:>8.2f} {cpu}{note}",
                          flush=True)
            servable.close()
    finally:
        for child in (*servers.values(), echo):
            child.terminate()
            child.wait(timeout=30)
    print_decision(ratios, goals, concurrency)


def print_decision(ratios: dict[tuple[str, int], float], goals: dict[tuple[str, str, int], float],
                   concurrency: list[int]) -> None:
    """The geometric mean, the rule's decision, the goals of the chosen transport, and the last line."""
    mean = geomean(list(ratios.values()))
    worst = min(ratios.values())
    complete = len(ratios) == 6
    adopt = complete and mean >= ADOPT_GEOMEAN and worst >= ADOPT_FLOOR
    chosen = "asyncio" if adopt else "threads"
    decision = ("adopt asyncio as the default" if adopt else
                "keep threads as the default, asyncio behind --mlc_grpc_transport"
                + ("" if complete else " (not all six cells measured: no decision)"))
    cells = ", ".join(f"{m} {c}: {r:.2f}" for (m, c), r in ratios.items())
    print(f"# asyncio / threads: {cells}; geomean {mean:.2f} (adopt if >= {ADOPT_GEOMEAN} and no cell < {ADOPT_FLOOR})")

    def figures(model: str) -> str:
        return "/".join(f"{goals[(chosen, model, c)]:.2f}" for c in concurrency if (chosen, model, c) in goals)

    for t in TRANSPORTS:
        for model, what, goal in (("half_plus_two", "server/echo", ECHO_GOAL), ("segmenter", "(in+echo)/server", OVERHEAD_GOAL)):
            shown = "/".join(f"{goals[(t, model, c)]:.2f}" for c in concurrency if (t, model, c) in goals)
            if shown:
                print(f"# {t:<8} {model} {what} at {'/'.join(map(str, concurrency))} clients: {shown} (goal >= {goal})")
    print(f"transport: asyncio/threads geomean {mean:.2f}, min {worst:.2f} ({cells}) -> {decision}; "
          f"{chosen}: half_plus_two server/echo {figures('half_plus_two') or '-'} (goal >= {ECHO_GOAL}), "
          f"segmenter (in+echo)/server {figures('segmenter') or '-'} (goal >= {OVERHEAD_GOAL})")


if __name__ == "__main__":
    main()
